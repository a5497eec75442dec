package validation_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// PAdES and XAdES seals renewed (pades.Renew, xades.Renew) by a second TSA whose certificate
// outlives the first's validate offline now and five years on, when the signer's and the
// first TSA's certificates have expired: the renewal's timestamp keeps the earlier ones alive.
// Unrenewed, the same seals are INDETERMINATE then.
func TestRenewedOffline(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	tsa2, _ := longTSA(t, env, 8)
	ctx := context.Background()
	const year = 365 * 24 * time.Hour
	at := func(d time.Duration) validation.Options {
		return validation.Options{TrustAnchors: anchors(env), Time: func() time.Time { return time.Now().Add(d) }}
	}
	pdf := signPDF(t, env, env.Seal, signingtest.PDF("keep me"), signing.LevelLTA)
	var renewedPDF bytes.Buffer
	if err := pades.Renew(ctx, bytes.NewReader(pdf), int64(len(pdf)), &renewedPDF, tsa2, env.PKI, 0); err != nil {
		t.Fatal(err)
	}
	xml, err := xades.Sign(ctx, bytes.NewReader([]byte(`<?xml version="1.0" encoding="UTF-8"?><a><b>keep me</b></a>`)), env.Seal,
		xades.Options{Level: signing.LevelLTA, Packaging: xades.Enveloped, Timestamper: env.TSA, Revocation: env.PKI})
	if err != nil {
		t.Fatal(err)
	}
	renewedXML, err := xades.Renew(ctx, xml, tsa2, env.PKI, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name            string
		sealed, renewed []byte
		archiveKind     string
	}{
		{"pades", pdf, renewedPDF.Bytes(), "document-timestamp"},
		{"xades", xml, renewedXML, "archive-timestamp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range []time.Duration{0, 5 * year} {
				rep := validate(t, c.renewed, at(d))
				expect(t, rep, validation.TotalPassed, "")
				if rep.Signatures[0].Level != signing.LevelLTA {
					t.Fatalf("level %s\n%s", rep.Signatures[0].Level, rep.Text())
				}
				n := 0
				for _, s := range rep.Signatures {
					for _, ts := range append([]validation.SignatureReport{s}, s.Timestamps...) {
						if ts.Kind == c.archiveKind && ts.Indication == validation.TotalPassed {
							n++
						}
					}
				}
				if n != 2 {
					t.Fatalf("%d archive timestamps passed, want 2\n%s", n, rep.Text())
				}
			}
			expect(t, validate(t, c.sealed, at(5*year)), validation.Indeterminate, validation.OutOfBoundsNoPOE)
		})
	}
}
