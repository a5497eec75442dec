package validation_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestThreeSignersMDP: a PDF certified (DocMDP P=2) by one official and then signed by two
// more passes, each signature listing the later signatures as permitted updates. An
// annotation added after the third signature is a change P=2 does not permit: every signature
// it follows fails, the last one too, and the report names the change.
func TestThreeSignersMDP(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	var out bytes.Buffer
	doc := signingtest.PDF("three signers")
	if err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &out, env.Official,
		pades.Options{Certify: true, Level: signing.LevelT, Timestamper: env.TSA}); err != nil {
		t.Fatal(err)
	}
	third := signPDF(t, env, env.NewSeal(t, "seal-three", "Ministry of Finance"), signPDF(t, env, env.Seal, out.Bytes(), signing.LevelT), signing.LevelT)
	rep := validate(t, third, opts)
	expect(t, rep, validation.TotalPassed, "")
	if len(rep.Signatures) != 3 {
		t.Fatalf("%d signatures\n%s", len(rep.Signatures), rep.Text())
	}
	for i, want := range []int{2, 1, 0} {
		n := 0
		for _, u := range rep.Signatures[i].LaterUpdates {
			if strings.Contains(u, "signature") {
				n++
			}
		}
		if n < want {
			t.Errorf("signature %d: later updates %v, want %d signatures among them", i+1, rep.Signatures[i].LaterUpdates, want)
		}
	}

	pageObj := latestObject(t, third, "3")
	withAnnot := strings.TrimSuffix(strings.TrimSpace(pageObj), ">>") + " /Annots [60 0 R] >>"
	if strings.Contains(pageObj, "/Annots [") {
		withAnnot = regexp.MustCompile(`/Annots \[([^\]]*)\]`).ReplaceAllString(pageObj, "/Annots [$1 60 0 R]")
	}
	commented := appendUpdate(t, third, map[int]string{3: withAnnot,
		60: "<< /Type /Annot /Subtype /Text /Rect [72 700 92 720] /Contents (changed after signing) >>"})
	rep = validate(t, commented, opts)
	expectFailed(t, rep, "annotation")
	for i, s := range rep.Signatures {
		if s.Indication != validation.TotalFailed || s.SubIndication != validation.FormatFailure {
			t.Errorf("signature %d after a forbidden annotation: %s / %s", i+1, s.Indication, s.SubIndication)
		}
	}
}
