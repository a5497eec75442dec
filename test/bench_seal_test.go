package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkSeal measures seals per second through the real binary's sealing API: a 100 KB PDF
// POSTed by an institution's client at concurrency 8, PAdES at B-B and at B-LT (the in-process
// TSA's token, OCSP answers and CRLs in a DSS), on the software key backend and on SoftHSM2,
// each seal with its durable audit record and transaction (SQLite). p50/p99 as for the IdP.
func BenchmarkSeal(b *testing.B) {
	vulaBinary(b)
	in := signingtest.PDF(strings.Repeat("Vendim / Rešenje / Decision. ", 3500))
	backends := []struct {
		name string
		env  func(b *testing.B) []string
	}{
		{"software", func(*testing.B) []string { return nil }},
		{"softhsm2", func(b *testing.B) []string {
			tok := testenv.SoftHSM(b)
			return []string{"SOFTHSM2_CONF=" + tok.Conf, "VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module,
				"VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label, "VULA_HSM_PKCS11_PIN_ENV=TEST_HSM_PIN", "TEST_HSM_PIN=" + tok.PIN,
				"VULA_HSM_PKCS11_POOL_SIZE=8"}
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			data := b.TempDir()
			env := append([]string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}, be.env(b)...)
			vula(b, env, "orgs", "create", "tax", "--name", "Tax Administration", "--registry-number", "810000001")
			secret := sealClient(b, env, "tax-batch", "--scope", "seal", "--organization", "tax")
			srv := startReplicaAt(b, freePort(b), data, append(env, "VULA_LOG_LEVEL=warn"))
			srv.ready(b, http.StatusOK)
			base := "http://" + srv.addr
			cc := clientcredentials.Config{ClientID: "tax-batch", ClientSecret: secret, TokenURL: base + "/oauth2/token", Scopes: []string{"seal"}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			for _, level := range []string{"B-B", "B-LT"} {
				b.Run(fmt.Sprintf("%s/c8", level), func(b *testing.B) {
					withLatency(b, 8, "seals/s", func() error {
						req, _ := http.NewRequest("POST", base+"/api/v1/seal?level="+level, bytes.NewReader(in))
						req.Header.Set("Content-Type", "application/pdf")
						req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
						resp, err := client.Do(req)
						if err != nil {
							return err
						}
						defer resp.Body.Close()
						n, _ := io.Copy(io.Discard, resp.Body)
						if resp.StatusCode != 200 || n < int64(len(in)) {
							return fmt.Errorf("seal: %d, %d bytes", resp.StatusCode, n)
						}
						return nil
					})
				})
			}
		})
	}
}
