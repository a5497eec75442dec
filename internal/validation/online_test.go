package validation_test

import (
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestHTTPFetcher: a B-B signature embeds no revocation data; HTTPFetcher gets it at the URLs
// the certificates name (the PKI served by signingtest on 127.0.0.1).
func TestHTTPFetcher(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	doc := signPDF(t, env, env.Seal, signingtest.PDF("online"), signing.LevelB)
	rep := validate(t, doc, validation.Options{TrustAnchors: anchors(env), Fetch: validation.HTTPFetcher{}})
	expect(t, rep, validation.TotalPassed, "")
	for _, r := range rep.Signatures[0].Revocation {
		if r.Source != "fetched" || r.Status != "good" {
			t.Errorf("%+v", r)
		}
	}
	if n := len(rep.Signatures[0].Revocation); n != 2 { // the seal (OCSP) and its CA (CRL)
		t.Errorf("%d revocation entries, want 2", n)
	}
}

// TestValidationTime: three years on, the signer's two-year certificate has expired. Without
// a proof of existence from before that, the signature is INDETERMINATE/OUT_OF_BOUNDS_NO_POE;
// before the certificate's start, NOT_YET_VALID.
func TestValidationTime(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	doc := signPDF(t, env, env.Seal, signingtest.PDF("later"), signing.LevelB)
	at := func(d time.Duration) validation.Options {
		return validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI},
			Time: func() time.Time { return time.Now().Add(d) }}
	}
	expect(t, validate(t, doc, at(3*365*24*time.Hour)), validation.Indeterminate, validation.OutOfBoundsNoPOE)
	expect(t, validate(t, doc, at(-time.Hour)), validation.TotalFailed, validation.NotYetValid)
}
