package seal_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// A B-LT seal of each format is renewed without the seal key (only the TSA signs), the
// renewal is recorded as a transaction of kind renew, and the output grows by an archive
// timestamp. A B-T seal, junk and a detached XAdES signature without its file are refused.
func TestRenew(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.onboard(t, "tax", "Tax Administration", "810000001")
	pdf := signingtest.PDF("Vendim 1")
	xml := []byte(`<?xml version="1.0" encoding="UTF-8"?><decision id="7"><text>Aprovohet</text></decision>`)
	for _, c := range []struct {
		format, packaging string
		in                []byte
		name              string
	}{
		{"pades", "", pdf, "d.pdf"},
		{"xades", "enveloped", xml, "d.xml"},
		{"xades", "detached", xml, "d.xml"},
		{"cades", "", pdf, "d.pdf"},
		{"asice", "", pdf, "d.pdf"},
		{"asice-xades", "", xml, "d.xml"},
	} {
		t.Run(c.format+c.packaging, func(t *testing.T) {
			p, err := seal.ParseParams(params{"format": c.format, "packaging": c.packaging}.get)
			if err != nil || p.Level != signing.LevelLT {
				t.Fatalf("params %+v, %v (want B-LT by default)", p, err)
			}
			var sealed bytes.Buffer
			if _, err := f.svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc(c.name, c.in)}, p, &sealed); err != nil {
				t.Fatal(err)
			}
			seals := f.hook.of(hsm.SealPurpose("tax"))
			var data []seal.Document
			if c.packaging == "detached" {
				data = append(data, doc(c.name, c.in))
				if _, err := f.svc.Renew(ctx, "tax-batch", "tax", doc("s.xml", sealed.Bytes()), nil, &bytes.Buffer{}); !errors.Is(err, signing.ErrInvalid) {
					t.Fatalf("renewing a detached signature without its file: %v, want ErrInvalid", err)
				}
			}
			var out bytes.Buffer
			res, err := f.svc.Renew(ctx, "tax-batch", "tax", doc("sealed", sealed.Bytes()), data, &out)
			if err != nil {
				t.Fatal(err)
			}
			if out.Len() <= sealed.Len() {
				t.Fatalf("renewed %d bytes, sealed %d", out.Len(), sealed.Len())
			}
			if n := f.hook.of(hsm.SealPurpose("tax")); n != seals {
				t.Fatalf("renewal used the seal key (%d signatures, were %d)", n, seals)
			}
			tx, err := f.env.DB.Transaction(ctx, res.Transaction)
			if err != nil || tx.Kind != "renew" || tx.OrganizationID != "tax" || tx.Level != "B-LTA" {
				t.Fatalf("transaction %+v, %v", tx, err)
			}
		})
	}
	p, _ := seal.ParseParams(params{"format": "cades", "level": "B-T"}.get)
	var bt bytes.Buffer
	if _, err := f.svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc("d.pdf", pdf)}, p, &bt); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"B-T": bt.Bytes(), "junk": []byte("junk"), "a PDF not signed": pdf} {
		if _, err := f.svc.Renew(ctx, "tax-batch", "tax", doc("x", in), nil, &bytes.Buffer{}); !errors.Is(err, signing.ErrInvalid) {
			t.Errorf("renewing %s: %v, want ErrInvalid", name, err)
		}
	}
}
