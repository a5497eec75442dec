package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
)

// issuers serves each issuer's status list.
type issuers []*issuer

func (l issuers) StatusList(ctx context.Context, uri string) ([]byte, error) {
	for _, is := range l {
		if is.listURI == uri {
			return is.StatusList(ctx, uri)
		}
	}
	return nil, fmt.Errorf("no list %s", uri)
}

// vulaIssued is a signer with a certificate of profile p from Vula's own CA, as the platform
// gives one to an organization (its seal), its services, or the PID issuer.
func vulaIssued(t *testing.T, s *Service, p certs.Profile, name string) *issuer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	leaf, err := s.pki.IssueLeaf(context.Background(), certs.Request{Profile: p, Subject: certs.LegalPersonName(name, "REG-"+name, "XK"),
		PublicKey: key.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, "test:"+name)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{key: key, leaf: leaf, listURI: "https://vula.example/pid/status/" + name, revoked: map[int]bool{}}
}

// TestOnlyThePIDIssuerUnderVulasCA: Vula's CA is trusted for its PID issuer's credentials (SD-JWT
// VC and mdoc) only. Before, the whole seal-ca was a trust anchor, so a certificate it gives any
// organization or service for digital signatures (here a verifier certificate; the TSA's and the
// OCSP responder's are alike) could sign a PID the verifier accepted; an organization's seal
// certificate, for non-repudiation only, was already refused for that.
func TestOnlyThePIDIssuerUnderVulasCA(t *testing.T) {
	var lists issuers
	s := newService(t, &lists)
	pidIssuer := vulaIssued(t, s, certs.PIDIssuer, "Vula PID issuer")
	seal := vulaIssued(t, s, certs.LegalPerson, "Tax Office")
	other := vulaIssued(t, s, certs.Verifier, "Some Relying Party")
	lists = issuers{pidIssuer, seal, other}
	for _, tc := range []struct {
		name string
		is   *issuer
		want string // "" for accepted
	}{
		{"Vula's PID issuer", pidIssuer, ""},
		{"an organization's seal", seal, "not"},
		{"another certificate for digital signatures under Vula's CA", other, "not the PID issuer's"},
	} {
		for _, format := range []string{FormatSDJWT, FormatMdoc} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				var r request
				var p string
				if format == FormatSDJWT {
					r = ask(t, s, "rp-1", DirectPost, pidQuery)
					p = present(t, tc.is.credential(t, holder, 5, time.Now().Add(time.Hour)), holder, r.clientID, r.nonce,
						"family_name", "age_equal_or_over", "18")
				} else {
					r = ask(t, s, "rp-1", DirectPost, mdocQuery)
					p = presentMdoc(t, tc.is.mdoc(t, holder, 5, time.Now().Add(time.Hour)), holder, r, r.clientID, r.nonce,
						"family_name", "age_over_18")
				}
				_, err := r.answer(t, s, map[string]any{"pid": p})
				res, _ := s.Result(context.Background(), r.id, "rp-1")
				if tc.want == "" {
					if err != nil || res.Status != Accepted {
						t.Fatalf("refused: %v %+v", err, res)
					}
					return
				}
				if err == nil || res.Status != Refused || !strings.Contains(res.Reason, tc.want) {
					t.Fatalf("result %+v (%v), want a refusal naming %q", res, err, tc.want)
				}
			})
		}
	}
}
