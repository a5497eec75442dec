package pades_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// serbianAlbanian holds the letters of Albanian and Serbian Latin beyond ASCII.
const serbianAlbanian = "ë ç č ć š ž đ\nË Ç Č Ć Š Ž Đ"

// TestAppearanceLetters: a visible signature shows Albanian and Serbian Latin letters with
// its embedded font. pdffonts sees the font embedded, subset and with a ToUnicode map;
// poppler renders the letters differently from the '?' a font without them would show.
func TestAppearanceLetters(t *testing.T) {
	need(t, "pdftoppm", "pdffonts", "qpdf")
	env := signingtest.New(t, signingtest.Options{})
	in := pdfBytes(t, pdfOpts{})
	render := func(text string) (string, []byte) {
		o := pades.Options{Level: signing.LevelB, Visible: &pades.Appearance{Page: 1, Rect: [4]float64{72, 500, 372, 580}, Text: text}}
		p := writeTemp(t, "signed.pdf", signBytes(t, env.Seal, in, o))
		if out, err := run(t, "qpdf", "--check", p); err != nil {
			t.Fatalf("qpdf --check: %v\n%s", err, out)
		}
		png := filepath.Join(t.TempDir(), "page")
		if out, err := run(t, "pdftoppm", "-r", "100", "-f", "1", "-l", "1", "-singlefile", "-png", p, png); err != nil {
			t.Fatalf("pdftoppm: %v\n%s", err, out)
		}
		b, err := os.ReadFile(png + ".png")
		if err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	p, letters := render(serbianAlbanian)
	if dir := os.Getenv("PADES_KEEP_RENDER"); dir != "" { // to look at it
		os.WriteFile(filepath.Join(dir, "letters.png"), letters, 0o644)
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(dir, "letters.pdf"), b, 0o644)
	}
	_, marks := render(strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' {
			return r
		}
		return '?'
	}, serbianAlbanian))
	if bytes.Equal(letters, marks) {
		t.Error("the letters render as question marks")
	}
	out, err := run(t, "pdffonts", p)
	if err != nil {
		t.Fatalf("pdffonts: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "DejaVuSans") {
			line = l
		}
	}
	// name, type, encoding, then emb sub uni: yes yes yes.
	if f := strings.Fields(line); len(f) < 8 || !strings.HasPrefix(f[0], "VULADJ+") || strings.Join(f[len(f)-5:len(f)-2], " ") != "yes yes yes" {
		t.Errorf("pdffonts: the font is not embedded, subset and mapped to Unicode:\n%s", out)
	}
}
