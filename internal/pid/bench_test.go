package pid

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v3"
)

// BenchmarkIssue measures credentials issued per second with authorization done (Issue: claims,
// disclosures, a status slot in the store, the signature through the instrumented key layer with
// its audit record, the issuance's audit record), against the bare signature of the same key.
func BenchmarkIssue(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	_, jwk := holderKey(b)
	b.Run("credential", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.svc.Issue(ctx, Request{SubjectID: e.sub, Actor: "bench", Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "credentials/s")
	})
	b.Run("bare-signature", func(b *testing.B) {
		k, err := e.svc.issuer(ctx)
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256([]byte("x"))
		for b.Loop() {
			if _, err := k.signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signatures/s")
	})
}

// BenchmarkStatusList measures status list fetches per second over HTTP (one store query each;
// the token is signed again only when the list changed).
func BenchmarkStatusList(b *testing.B) {
	e := newEnv(b)
	_, jwk := holderKey(b)
	if _, err := e.svc.Issue(context.Background(), Request{SubjectID: e.sub, Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}}); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	Handler{S: e.svc}.Register(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Get(srv.URL + "/pid/status/1")
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
}
