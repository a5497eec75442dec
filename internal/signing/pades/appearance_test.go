package pades_test

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// sealBox is where the tests put a visible signature on makePDF's A4 page.
var sealBox = [4]float64{72, 500, 372, 580}

// TestAppearanceScripts: a visible signature's text in Serbian Cyrillic, Albanian, Serbian
// Latin and Greek is drawn by poppler (pdftoppm) and Ghostscript, each differently from the
// '?' of a font without the letters, and pdftotext gives the text back. pdffonts sees the font
// embedded, subset and mapped to Unicode, and the embedded program holds only the glyphs used.
func TestAppearanceScripts(t *testing.T) {
	need(t, "pdftoppm", "pdftotext", "pdffonts", "qpdf", "gs")
	env := signingtest.New(t, signingtest.Options{})
	in := pdfBytes(t, pdfOpts{})
	for _, tc := range []struct{ name, text string }{
		{"cyrillic", "Оверено печатом — Пореска управа\nЉиљана Ђурђевић, Шабац"},
		{"albanian", "Vulosur nga Administrata Tatimore e Kosovës\nçështje, Çakorr, Ëndërr"},
		{"serbian-latin", "Đorđe Čolić, Šećer Žiža\nĆuprija, Ždrelo, Đakovica"},
		{"greek", "Σφραγίδα — Φορολογική Αρχή"},
		// A letter and its combining accent are drawn as the letter with it (composed form).
		{"decomposed", "Kosove\u0308s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := pades.Options{Level: signing.LevelB, Visible: &pades.Appearance{Page: 1, Rect: sealBox, Text: tc.text}}
			signed := signBytes(t, env.Seal, in, o)
			p := writeTemp(t, "signed.pdf", signed)
			if out, err := run(t, "qpdf", "--check", p); err != nil {
				t.Fatalf("qpdf --check: %v\n%s", err, out)
			}
			want := strings.Join(strings.Fields(strings.ReplaceAll(tc.text, "e\u0308", "ë")), " ")
			if got := pdfText(t, p); got != want {
				t.Errorf("pdftotext gives %q, want %q", got, want)
			}
			marks := strings.Map(func(r rune) rune {
				if r == ' ' || r == '\n' || r < 0x80 {
					return r
				}
				return '?'
			}, tc.text)
			q := writeTemp(t, "marks.pdf", signBytes(t, env.Seal, in, pades.Options{Level: signing.LevelB,
				Visible: &pades.Appearance{Page: 1, Rect: sealBox, Text: marks}}))
			for _, r := range renderers {
				letters, qs := r.render(t, p), r.render(t, q)
				if changed := changedIn(t, r.render(t, writeTemp(t, "in.pdf", in)), letters, sealBox); changed < 0.01 {
					t.Errorf("%s: the seal changes %.2f%% of its box's pixels", r.name, 100*changed)
				}
				if changed := changedIn(t, qs, letters, sealBox); changed < 0.002 {
					t.Errorf("%s: the letters render as question marks (%.3f%% of pixels differ)", r.name, 100*changed)
				}
			}
			if dir := os.Getenv("PADES_KEEP_RENDER"); dir != "" { // to look at it
				os.WriteFile(filepath.Join(dir, tc.name+".pdf"), signed, 0o644)
			}
			checkFonts(t, p)
			// The subset has the outlines of a few dozen glyphs of the font's 1,572: about 20 KB
			// (most of it the metrics of all glyphs and the names with the licence), not 105.
			m := regexp.MustCompile(`/Length1 (\d+)`).FindSubmatch(signed)
			if m == nil {
				t.Fatal("no font program")
			}
			if n, _ := strconv.Atoi(string(m[1])); n > 30000 {
				t.Errorf("the embedded font program has %d bytes; a subset of the glyphs used is smaller", n)
			}
		})
	}
}

// TestAppearanceCertificateName: the default text names the signer from its certificate, in
// whatever script the certificate has it.
func TestAppearanceCertificateName(t *testing.T) {
	need(t, "pdftotext")
	env := signingtest.New(t, signingtest.Options{})
	seal := env.NewSeal(t, "poreska", "Пореска управа Србије")
	o := pades.Options{Level: signing.LevelB, Reason: "Оверено", Visible: &pades.Appearance{Page: 1, Rect: sealBox}}
	p := writeTemp(t, "signed.pdf", signBytes(t, seal, pdfBytes(t, pdfOpts{}), o))
	got := pdfText(t, p)
	for _, want := range []string{"Signed by: Пореска управа Србије", "Reason: Оверено"} {
		if !strings.Contains(got, want) {
			t.Errorf("pdftotext gives %q, want it to hold %q", got, want)
		}
	}
}

// TestAppearanceRefusesUndrawable: text with a character the font lacks is refused as invalid
// input naming the character, before anything is signed; it is never drawn as '?'.
func TestAppearanceRefusesUndrawable(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	in := pdfBytes(t, pdfOpts{})
	for _, text := range []string{"Печат 印章", "seal \U0001F600", "tab\there"} {
		var out bytes.Buffer
		err := pades.Sign(t.Context(), bytes.NewReader(in), int64(len(in)), &out, env.Seal,
			pades.Options{Level: signing.LevelB, Visible: &pades.Appearance{Page: 1, Rect: sealBox, Text: text}})
		if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), "cannot draw") {
			t.Errorf("%q: Sign: %v, want ErrInvalid naming the character", text, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: %d bytes written", text, out.Len())
		}
		if err := pades.CheckText(text); !errors.Is(err, signing.ErrInvalid) {
			t.Errorf("%q: CheckText: %v, want ErrInvalid", text, err)
		}
	}
	if err := pades.CheckText("Оверено печатом — Пореска управа\r\nKosovës, Ελλάδα"); err != nil {
		t.Errorf("CheckText: %v", err)
	}
}

// pdfText is the text pdftotext finds on page 1 beyond makePDF's own line, with runs of space
// made one.
func pdfText(t *testing.T, p string) string {
	t.Helper()
	out, err := run(t, "pdftotext", "-f", "1", "-l", "1", "-enc", "UTF-8", p, "-")
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	out = strings.Replace(out, "Vula test page 1", "", 1)
	return strings.Join(strings.Fields(out), " ")
}

func checkFonts(t *testing.T, p string) {
	t.Helper()
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
	if f := strings.Fields(line); len(f) < 8 || !regexp.MustCompile(`^[A-Z]{6}\+DejaVuSans$`).MatchString(f[0]) ||
		strings.Join(f[len(f)-5:len(f)-2], " ") != "yes yes yes" {
		t.Errorf("pdffonts: the font is not embedded, subset and mapped to Unicode:\n%s", out)
	}
}

// A renderer draws page 1 of a PDF at 72 dpi (one pixel a point) as a PNG.
type renderer struct {
	name   string
	render func(t *testing.T, pdf string) []byte
}

var renderers = []renderer{
	{"pdftoppm", func(t *testing.T, pdf string) []byte {
		t.Helper()
		out := filepath.Join(t.TempDir(), "page")
		if msg, err := run(t, "pdftoppm", "-r", "72", "-f", "1", "-l", "1", "-singlefile", "-png", pdf, out); err != nil {
			t.Fatalf("pdftoppm: %v\n%s", err, msg)
		}
		return readFile(t, out+".png")
	}},
	{"ghostscript", func(t *testing.T, pdf string) []byte {
		t.Helper()
		out := filepath.Join(t.TempDir(), "page.png")
		if msg, err := run(t, "gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=png16m", "-r72",
			"-dFirstPage=1", "-dLastPage=1", "-o", out, pdf); err != nil {
			t.Fatalf("gs: %v\n%s", err, msg)
		}
		return readFile(t, out)
	}},
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// changedIn is the share of the pixels in box (points, PDF's y axis up) that differ between
// two renderings of an A4 page at 72 dpi.
func changedIn(t *testing.T, a, b []byte, box [4]float64) float64 {
	t.Helper()
	ia, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	h := ia.Bounds().Dy()
	r := image.Rect(int(box[0]), h-int(box[3]), int(box[2]), h-int(box[1])).Intersect(ia.Bounds()).Intersect(ib.Bounds())
	diff := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := ia.At(x, y).RGBA()
			r2, g2, b2, _ := ib.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				diff++
			}
		}
	}
	return float64(diff) / float64(r.Dx()*r.Dy())
}

// TestAppearanceNeedAppearances: on a form that asks the viewer to redraw its fields
// (/NeedAppearances true), the seal is still drawn, by poppler (which redraws every widget
// of such a form) and by Ghostscript, and the form's own fields still show.
func TestAppearanceNeedAppearances(t *testing.T) {
	need(t, "pdftoppm", "gs", "qpdf")
	env := signingtest.New(t, signingtest.Options{})
	in := pdfBytes(t, pdfOpts{form: true, needAppearances: true})
	signed := signBytes(t, env.Seal, in, pades.Options{Level: signing.LevelB,
		Visible: &pades.Appearance{Page: 1, Rect: sealBox, Text: "Оверено печатом — Пореска управа\nVulosur nga Administrata Tatimore"}})
	p := writeTemp(t, "signed.pdf", signed)
	if out, err := run(t, "qpdf", "--check", p); err != nil {
		t.Fatalf("qpdf --check: %v\n%s", err, out)
	}
	unsigned := writeTemp(t, "in.pdf", in)
	nameField := [4]float64{72, 600, 300, 624} // makePDF's text field, value "Arta"
	for _, r := range renderers {
		before, after := r.render(t, unsigned), r.render(t, p)
		if changed := changedIn(t, before, after, sealBox); changed < 0.01 {
			t.Errorf("%s: the seal changes %.2f%% of its box's pixels", r.name, 100*changed)
		}
		if changed := changedIn(t, before, after, nameField); changed != 0 {
			t.Errorf("%s: the text field looks different after signing (%.2f%% of its pixels)", r.name, 100*changed)
		}
	}
}
