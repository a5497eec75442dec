package letter_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/letter"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// padesSealer seals at B-LT with a seal of the platform's own CA hierarchy, as the
// composition root's adapter does through the sealing service.
type padesSealer struct{ env *signingtest.Env }

var _ letter.Sealer = padesSealer{}

func (s padesSealer) SealPDF(ctx context.Context, pdf []byte) ([]byte, error) {
	var out bytes.Buffer
	err := pades.Sign(ctx, bytes.NewReader(pdf), int64(len(pdf)), &out, s.env.Seal,
		pades.Options{Level: signing.LevelLT, Timestamper: s.env.TSA, Revocation: s.env.PKI})
	return out.Bytes(), err
}

// failingSealer is a sealing service that is down.
type failingSealer struct{}

var errDown = errors.New("the sealing service is down")

func (failingSealer) SealPDF(context.Context, []byte) ([]byte, error) { return nil, errDown }

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (test/deps.sh installs it): %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return string(out)
}

var people = map[string]letter.Data{
	"sq": {GivenName: "Arbër", FamilyName: "Çela", PersonalNumber: "1234567890", Code: "ABCD-EFGH-IJKL-MNOP-QRST-UVW2"},
	"sr": {GivenName: "Dragiša", FamilyName: "Đorđević-Žužić", PersonalNumber: "2345678901", Code: "Z7Y6-XWVU-TSRQ-PONM-LKJI-HGFE"},
	"en": {GivenName: "Ana", FamilyName: "Smith", PersonalNumber: "3456789012", Code: "QQQQ-RRRR-SSSS-TTTT-2345-6777"},
}

// TestRender: in each language, the page's text (pdftotext) has the names with their
// diacritics, the personal number, the code, its expiry and the address, and the QR code
// (zbarimg, on the page rendered by pdftoppm) reads as the activation address with the code.
func TestRender(t *testing.T) {
	need(t, "pdftotext", "pdftoppm", "zbarimg", "qpdf")
	l := letter.New(letter.Config{AgencyName: "Agjencia për Shoqërinë e Informacionit", BaseURL: "https://eid.example.org/"}, failingSealer{})
	expires := time.Date(2027, 1, 5, 14, 3, 0, 0, time.UTC)
	want := map[string][]string{
		"sq": {"Letër aktivizimi", "Numri personal: 1234567890", "I vlefshëm deri më: 2027-01-05 14:03 UTC", "çelës kalimi"},
		"sr": {"Pismo za aktivaciju", "Lični broj: 2345678901", "Važi do: 2027-01-05 14:03 UTC", "dođite", "šalter", "pomoću"},
		"en": {"Activation letter", "Personal number: 3456789012", "Valid until: 2027-01-05 14:03 UTC"},
	}
	for _, lang := range letter.Languages {
		t.Run(lang, func(t *testing.T) {
			d := people[lang]
			d.Expires = expires
			pdf, err := l.Render(d, lang)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			f := filepath.Join(dir, "letter.pdf")
			if err := os.WriteFile(f, pdf, 0o600); err != nil {
				t.Fatal(err)
			}
			if out := run(t, "qpdf", "--check", f); !strings.Contains(out, "No syntax or stream encoding errors") {
				t.Errorf("qpdf --check:\n%s", out)
			}
			if out := run(t, "pdfinfo", f); !strings.Contains(strings.Join(strings.Fields(out), " "), "Pages: 1") || !strings.Contains(out, "(A4)") {
				t.Errorf("pdfinfo: want one A4 page:\n%s", out)
			}
			text := run(t, "pdftotext", "-layout", f, "-")
			for _, s := range append(want[lang], "Agjencia për Shoqërinë e Informacionit", d.GivenName+" "+d.FamilyName, d.Code,
				"https://eid.example.org/activate") {
				if !strings.Contains(text, s) {
					t.Errorf("the letter's text has no %q:\n%s", s, text)
				}
			}
			run(t, "pdftoppm", "-r", "150", "-png", "-singlefile", f, filepath.Join(dir, "page"))
			got := strings.TrimSpace(run(t, "zbarimg", "-q", "--raw", filepath.Join(dir, "page.png")))
			if wantURL := "https://eid.example.org/activate?code=" + d.Code + "&lang=" + lang; got != wantURL {
				t.Errorf("the QR code reads %q, want %q", got, wantURL)
			}
		})
	}
}

// TestRenderRefuses: what cannot make a letter is refused, naming why.
func TestRenderRefuses(t *testing.T) {
	l := letter.New(letter.Config{AgencyName: "Agency", BaseURL: "https://eid.example.org"}, failingSealer{})
	ok := people["en"]
	ok.Expires = time.Now().Add(time.Hour)
	for _, c := range []struct {
		name, lang, want string
		edit             func(*letter.Data)
	}{
		{"language", "de", `language "de"`, func(*letter.Data) {}},
		{"no code", "en", "code is missing", func(d *letter.Data) { d.Code = " " }},
		{"no name", "sq", "given name is missing", func(d *letter.Data) { d.GivenName = "" }},
		{"no expiry", "sr", "expiry is missing", func(d *letter.Data) { d.Expires = time.Time{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := ok
			c.edit(&d)
			_, err := l.Print(context.Background(), d, c.lang)
			if !errors.Is(err, letter.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want ErrInvalid naming %q", err, c.want)
			}
		})
	}
	if _, err := letter.New(letter.Config{BaseURL: "https://eid.example.org"}, failingSealer{}).Render(ok, "en"); !errors.Is(err, letter.ErrInvalid) {
		t.Errorf("no agency name: %v", err)
	}
}

// TestPrintSealed: Print returns the letter sealed at B-LT (a DSS with the chain's revocation
// data), which pdfsig finds valid and trusted; a sealing service that fails gives no letter.
func TestPrintSealed(t *testing.T) {
	need(t, "pdfsig", "certutil", "pdftotext")
	env := signingtest.New(t, signingtest.Options{})
	d := people["sr"]
	d.Expires = time.Now().Add(30 * 24 * time.Hour)
	cfg := letter.Config{AgencyName: "Agencija za eID", BaseURL: "https://eid.example.org"}
	pdf, err := letter.New(cfg, padesSealer{env}).Print(context.Background(), d, "sr")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "letter.pdf")
	if err := os.WriteFile(f, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	nss := filepath.Join(dir, "nss")
	if err := os.Mkdir(nss, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "certutil", "-N", "-d", "sql:"+nss, "--empty-password")
	run(t, "certutil", "-A", "-d", "sql:"+nss, "-n", "root", "-t", "CT,C,C", "-i", env.RootPEM)
	out, _ := exec.Command("pdfsig", "-nssdir", "sql:"+nss, f).CombinedOutput()
	if !strings.Contains(string(out), "Signature is Valid.") || !strings.Contains(string(out), "Certificate is Trusted.") ||
		!strings.Contains(string(out), "ETSI.CAdES.detached") {
		t.Errorf("pdfsig:\n%s", out)
	}
	if !bytes.Contains(pdf, []byte("/DSS")) {
		t.Error("the sealed letter has no DSS: not B-LT")
	}
	if text := run(t, "pdftotext", f, "-"); !strings.Contains(text, d.Code) || !strings.Contains(text, "Đorđević-Žužić") {
		t.Errorf("the sealed letter's text:\n%s", text)
	}

	if pdf, err := letter.New(cfg, failingSealer{}).Print(context.Background(), d, "sr"); !errors.Is(err, errDown) || pdf != nil {
		t.Errorf("a sealing service that is down: %d bytes, %v", len(pdf), err)
	}
}

// BenchmarkRender: one letter's page, fonts subset and embedded, unsealed.
func BenchmarkRender(b *testing.B) {
	l := letter.New(letter.Config{AgencyName: "Agjencia për Shoqërinë e Informacionit", BaseURL: "https://eid.example.org"}, failingSealer{})
	d := people["sr"]
	d.Expires = time.Now().Add(time.Hour)
	for b.Loop() {
		if _, err := l.Render(d, "sr"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrint: one letter rendered and sealed at B-LT (signature, timestamp, OCSP and the
// DSS) with signingtest's software keys.
func BenchmarkPrint(b *testing.B) {
	env := signingtest.New(b, signingtest.Options{})
	l := letter.New(letter.Config{AgencyName: "Agencija za eID", BaseURL: "https://eid.example.org"}, padesSealer{env})
	d := people["sr"]
	d.Expires = time.Now().Add(time.Hour)
	for b.Loop() {
		if _, err := l.Print(context.Background(), d, "sr"); err != nil {
			b.Fatal(err)
		}
	}
}
