package validation_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// Shadow attacks (Mainka, Mladenov, Rohlmann 2021): the signed revision already holds the
// attacker's content, hidden or unused, and an update after the signature that a viewer may
// let pass reveals or swaps it in. Each must fail the signature and name the change.

// shadowBase is signingtest.PDF("Pay 900 EUR") with objects added before signing (an update
// of the unsigned file, as the attacker prepares it): page 3 redefined to body, and objs.
func shadowBase(t testing.TB, page string, objs map[int]string) []byte {
	t.Helper()
	objs[3] = page
	return appendUpdate(t, signingtest.PDF("Pay 900 EUR"), objs)
}

const (
	// cover paints a white box over the text with "Pay 100 EUR" on it.
	cover = "1 1 1 rg 60 700 300 60 re f BT 0 g /F1 24 Tf 72 720 Td (Pay 100 EUR) Tj ET"
	page  = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> %s >> %s >>"
)

func formXObject(s string) string {
	return fmt.Sprintf("<< /Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Length %d >>\nstream\n%s\nendstream", len(s), s)
}

func TestShadowHide(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}

	t.Run("an overlay annotation removed", func(t *testing.T) {
		// The signed page shows "Pay 100 EUR": a Square annotation's appearance covers the text.
		base := shadowBase(t, fmt.Sprintf(page, "", "/Annots [6 0 R]"), map[int]string{
			6: "<< /Type /Annot /Subtype /Square /Rect [0 0 595 842] /F 4 /AP << /N 7 0 R >> >>",
			7: formXObject(cover),
		})
		signed := signPDF(t, env, env.Seal, base, signing.LevelB)
		expect(t, validate(t, signed, opts), validation.TotalPassed, "")
		body := regexp.MustCompile(`/Annots \[6 0 R `).ReplaceAllString(latestObject(t, signed, "3"), "/Annots [")
		expectFailed(t, validate(t, appendUpdate(t, signed, map[int]string{3: body}), opts), "page 1 lost annotations")
		// Hidden instead of removed (/F 2).
		hidden := appendUpdate(t, signed, map[int]string{6: "<< /Type /Annot /Subtype /Square /Rect [0 0 595 842] /F 6 /AP << /N 7 0 R >> >>"})
		expectFailed(t, validate(t, hidden, opts), "annotation 1 (/Square) of page 1 changed")
	})

	t.Run("an overlay XObject emptied", func(t *testing.T) {
		// The page's content draws the text, then the XObject /Cover over it.
		content := "BT /F1 24 Tf 72 720 Td (Pay 900 EUR) Tj ET /Cover Do"
		base := shadowBase(t, fmt.Sprintf(page, "/XObject << /Cover 6 0 R >>", ""), map[int]string{
			4: stream(content),
			6: formXObject(cover),
		})
		signed := signPDF(t, env, env.Seal, base, signing.LevelB)
		expect(t, validate(t, signed, opts), validation.TotalPassed, "")
		expectFailed(t, validate(t, appendUpdate(t, signed, map[int]string{6: formXObject("")}), opts), "page 1 changed: /Resources")
	})

	t.Run("a certified form field's appearance", func(t *testing.T) {
		// P=2 permits form filling; the field's widget covers the page's text. Emptying the
		// appearance without a new value is no filling in; with a new value it is, and the
		// report says so (the relying party sees the field was filled in after certification).
		var out bytes.Buffer
		form := formPDF("Arta", "100")
		if err := pades.Sign(context.Background(), bytes.NewReader(form), int64(len(form)), &out, env.Seal, pades.Options{Certify: true}); err != nil {
			t.Fatal(err)
		}
		certified := out.Bytes()
		bare := appendUpdate(t, certified, map[int]string{9: appearance("")})
		expectFailed(t, validate(t, bare, opts), `form field "name" on page 1 changed its appearance without its value`)
		filled := appendUpdate(t, certified, map[int]string{7: textField("name", "", 600, 9), 9: appearance("")})
		rep := validate(t, filled, opts)
		if rep.Indication == validation.TotalPassed && !laterUpdate(rep.Signatures[0], `form field "name" filled in`) {
			t.Fatalf("passed with the change unreported\n%s", dump(t, rep))
		}
	})
}

func TestShadowReplace(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}

	t.Run("the page's font replaced", func(t *testing.T) {
		// A font whose encoding draws the glyph "nine" for the code of "1": the same content
		// stream then shows "Pay 900 EUR".
		signed := signPDF(t, env, env.Seal, signingtest.PDF("Pay 100 EUR"), signing.LevelB)
		font := "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding /BaseEncoding /WinAnsiEncoding /Differences [49 /nine] >> >>"
		expectFailed(t, validate(t, appendUpdate(t, signed, map[int]string{5: font}), opts), "page 1 changed: /Resources")
	})

	t.Run("the form's default font replaced after certification", func(t *testing.T) {
		var out bytes.Buffer
		form := formPDF("Arta", "100")
		if err := pades.Sign(context.Background(), bytes.NewReader(form), int64(len(form)), &out, env.Seal, pades.Options{Certify: true}); err != nil {
			t.Fatal(err)
		}
		certified := out.Bytes()
		num := regexp.MustCompile(`/AcroForm (\d+) 0 R`).FindStringSubmatch(latestObject(t, certified, "1"))
		if num == nil {
			t.Fatal("no /AcroForm")
		}
		acro := regexp.MustCompile(`/Helv 5 0 R`).ReplaceAllString(latestObject(t, certified, num[1]), "/Helv 63 0 R")
		var n int
		fmt.Sscan(num[1], &n)
		bad := appendUpdate(t, certified, map[int]string{n: acro,
			63: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding /Differences [49 /nine] >> >>"})
		expectFailed(t, validate(t, bad, opts), "the form's attributes changed: /DR")
	})

	t.Run("an unused signed XObject swapped in", func(t *testing.T) {
		// The signed page draws /Im0 (object 6, "Pay 100 EUR"); object 7 ("Pay 900 EUR") is
		// signed but unused; the update points /Im0 at it.
		base := shadowBase(t, fmt.Sprintf(page, "/XObject << /Im0 6 0 R >>", ""), map[int]string{
			4: stream("/Im0 Do"),
			6: formXObject("BT /F1 24 Tf 72 720 Td (Pay 100 EUR) Tj ET"),
			7: formXObject("BT /F1 24 Tf 72 720 Td (Pay 900 EUR) Tj ET"),
		})
		signed := signPDF(t, env, env.Seal, base, signing.LevelB)
		expect(t, validate(t, signed, opts), validation.TotalPassed, "")
		swapped := regexp.MustCompile(`/Im0 6 0 R`).ReplaceAllString(latestObject(t, signed, "3"), "/Im0 7 0 R")
		expectFailed(t, validate(t, appendUpdate(t, signed, map[int]string{3: swapped}), opts), "page 1 changed: /Resources")
	})
}
