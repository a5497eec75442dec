package validation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// signPDF signs doc at level with s.
func signPDF(t testing.TB, env *signingtest.Env, s signing.Signer, doc []byte, level signing.Level) []byte {
	t.Helper()
	var out bytes.Buffer
	err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &out, s,
		pades.Options{Level: level, Timestamper: env.TSA, Revocation: env.PKI, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func validate(t testing.TB, doc []byte, opts validation.Options) validation.Report {
	t.Helper()
	rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func dump(t testing.TB, rep validation.Report) string {
	b, _ := json.MarshalIndent(rep, "", "  ")
	return string(b)
}

func anchors(env *signingtest.Env) []*x509.Certificate { return []*x509.Certificate{env.Root} }

func TestPAdESLevels(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	for _, level := range signing.Levels {
		t.Run(string(level), func(t *testing.T) {
			doc := signPDF(t, env, env.Seal, signingtest.PDF("levels"), level)
			opts := validation.Options{TrustAnchors: anchors(env)}
			if !level.AtLeast(signing.LevelLT) {
				// Below LT the document embeds no revocation data: it is fetched.
				opts.Fetch = validation.RevocationFetcher{R: env.PKI}
			}
			rep := validate(t, doc, opts)
			if rep.Indication != validation.TotalPassed {
				t.Fatalf("indication %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			sig := rep.Signatures[0]
			if sig.Kind != "signature" || sig.Format != "PAdES-BASELINE" || sig.Level != level {
				t.Fatalf("kind %s format %s level %s, want PAdES-BASELINE %s\n%s", sig.Kind, sig.Format, sig.Level, level, rep.Text())
			}
			if sig.Qualification != "QESeal" {
				t.Errorf("qualification %s, want QESeal\n%s", sig.Qualification, dump(t, rep))
			}
			if sig.Signer.Subject != "organizationIdentifier=NTRXK-810000001,CN=Tax Administration,O=Tax Administration,C=XK" || len(sig.Chain) < 2 {
				t.Errorf("signer %+v chain %d", sig.Signer, len(sig.Chain))
			}
			if level == signing.LevelLTA {
				if len(rep.Signatures) != 2 || rep.Signatures[1].Kind != "document-timestamp" || rep.Signatures[1].Indication != validation.TotalPassed {
					t.Fatalf("no passed document timestamp\n%s", rep.Text())
				}
			}
			if level.AtLeast(signing.LevelLT) {
				for _, r := range sig.Revocation {
					if r.Source != "DSS" {
						t.Errorf("revocation of %s from %s, want DSS", r.Subject, r.Source)
					}
				}
			} else if sig.CoversWholeDocument != true {
				t.Errorf("a single signature must cover the whole document")
			}
			t.Log(rep.Text())
		})
	}
}
