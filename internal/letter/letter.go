// Package letter prints eID activation letters: one A4 page that a registration desk hands
// to a person, with the agency's name, the person's names and personal number, the one-time
// activation code in large monospace groups, its expiry, the activation address, short
// instructions and a QR code of the address with the code, in Albanian, Serbian (Latin script)
// or English. The page is sealed before it is returned: Print never returns an unsealed letter.
//
// The fonts are the Go fonts, embedded as subsets, so that every letter of the three languages
// (ë ç č ć đ š ž) prints and can be copied out of the PDF. The package knows the sealing
// service only through Sealer.
package letter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomonobold"
	"golang.org/x/image/font/gofont/goregular"
)

// Sealer seals a PDF with the agency's seal.
type Sealer interface {
	// SealPDF returns pdf sealed at PAdES B-LT (the signing certificate's chain and its
	// revocation data in the document's DSS), or an error; never pdf unsealed.
	SealPDF(ctx context.Context, pdf []byte) ([]byte, error)
}

// Config is what every letter of one agency says.
type Config struct {
	// AgencyName is the sender, printed at the top (the organization whose seal seals it).
	AgencyName string
	// BaseURL is the identity provider's public URL; the letter sends the person to
	// BaseURL/activate.
	BaseURL string
	// Now is the clock of the PDF's creation date; time.Now when nil.
	Now func() time.Time
}

// Data is one person's letter.
type Data struct {
	GivenName, FamilyName, PersonalNumber string
	Code                                  string // the activation code, in groups (ABCD-EFGH-...)
	Expires                               time.Time
}

// Letters prints the letters of one agency.
type Letters struct {
	cfg    Config
	sealer Sealer
}

// New makes the printer.
func New(cfg Config, s Sealer) *Letters {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Letters{cfg: cfg, sealer: s}
}

// ErrInvalid is a letter that cannot be printed as asked (a language not offered, a field
// missing).
var ErrInvalid = errors.New("letter: invalid letter")

// Languages are the languages a letter is printed in.
var Languages = []string{"sq", "sr", "en"}

// Print renders d's letter in lang (sq, sr or en) and returns it sealed.
func (l *Letters) Print(ctx context.Context, d Data, lang string) ([]byte, error) {
	pdf, err := l.Render(d, lang)
	if err != nil {
		return nil, err
	}
	sealed, err := l.sealer.SealPDF(ctx, pdf)
	if err != nil {
		return nil, fmt.Errorf("letter: sealing: %w", err)
	}
	return sealed, nil
}

// ActivationURL is the address the letter's QR code holds: the activation page with the code
// (which the page puts in its form) and the letter's language.
func (l *Letters) ActivationURL(code, lang string) string {
	return l.cfg.BaseURL + "/activate?" + url.Values{"code": {code}, "lang": {lang}}.Encode()
}

// Render makes d's letter in lang, unsealed.
func (l *Letters) Render(d Data, lang string) ([]byte, error) {
	t, ok := texts[lang]
	if !ok {
		return nil, fmt.Errorf("%w: language %q (want sq, sr or en)", ErrInvalid, lang)
	}
	for what, v := range map[string]string{"given name": d.GivenName, "family name": d.FamilyName,
		"personal number": d.PersonalNumber, "code": d.Code} {
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%w: the %s is missing", ErrInvalid, what)
		}
	}
	if d.Expires.IsZero() {
		return nil, fmt.Errorf("%w: the code's expiry is missing", ErrInvalid)
	}
	if l.cfg.AgencyName == "" || l.cfg.BaseURL == "" {
		return nil, fmt.Errorf("%w: the agency's name and the base URL are required", ErrInvalid)
	}
	code, err := qr.Encode(l.ActivationURL(d.Code, lang), qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("letter: QR code: %w", err)
	}

	const left, width = 20.0, 170.0 // mm: A4 is 210 wide
	f := fpdf.New("P", "mm", "A4", "")
	f.SetCreationDate(l.cfg.Now().UTC())
	f.SetTitle(t.title, true)
	f.SetAuthor(l.cfg.AgencyName, true)
	f.SetLang(lang)
	f.SetMargins(left, 20, left)
	f.SetAutoPageBreak(false, 0)
	f.AddUTF8FontFromBytes("go", "", goregular.TTF)
	f.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	f.AddUTF8FontFromBytes("gomono", "B", gomonobold.TTF)
	f.AddPage()

	f.SetFont("go", "B", 15)
	f.MultiCell(width, 7, l.cfg.AgencyName, "", "L", false)
	f.SetFont("go", "", 11)
	f.MultiCell(width, 6, t.title, "", "L", false)
	f.Ln(10)

	f.SetFont("go", "", 12)
	f.MultiCell(width, 6, d.GivenName+" "+d.FamilyName, "", "L", false)
	f.MultiCell(width, 6, t.number+": "+d.PersonalNumber, "", "L", false)
	f.Ln(10)

	// The code, in a box, in groups a person can read out and type.
	f.SetFont("go", "B", 12)
	f.CellFormat(width, 7, t.code, "", 1, "L", false, 0, "")
	y := f.GetY()
	f.SetDrawColor(0, 0, 0)
	f.SetLineWidth(0.5)
	f.Rect(left, y, width, 20, "D")
	f.SetFont("gomono", "B", 22)
	f.SetXY(left, y+4)
	f.CellFormat(width, 12, strings.ToUpper(d.Code), "", 1, "C", false, 0, "")
	f.SetXY(left, y+22)
	f.SetFont("go", "", 11)
	f.MultiCell(width, 6, t.expires+": "+d.Expires.UTC().Format("2006-01-02 15:04")+" UTC", "", "L", false)
	f.Ln(8)

	// The instructions on the left, the QR code on the right.
	const qrSize = 45.0
	top := f.GetY()
	f.SetFont("go", "B", 12)
	f.CellFormat(width-qrSize-10, 7, t.how, "", 1, "L", false, 0, "")
	f.SetFont("go", "", 11)
	for i, s := range t.steps {
		f.SetX(left)
		f.MultiCell(width-qrSize-10, 5.5, fmt.Sprintf("%d. %s", i+1, strings.ReplaceAll(s, "{url}", l.cfg.BaseURL+"/activate")), "", "L", false)
		f.Ln(1.5)
	}
	drawQR(f, code, left+width-qrSize, top, qrSize)
	f.SetXY(left+width-qrSize, top+qrSize+1)
	f.SetFont("go", "", 8)
	f.MultiCell(qrSize, 4, t.scan, "", "C", false)

	f.SetXY(left, 297-35)
	f.SetFont("go", "", 9)
	f.MultiCell(width, 4.5, fmt.Sprintf(t.sealed, l.cfg.AgencyName), "T", "L", false)

	var b bytes.Buffer
	if err := f.Output(&b); err != nil {
		return nil, fmt.Errorf("letter: writing the PDF: %w", err)
	}
	return b.Bytes(), nil
}

// drawQR draws code's dark modules as filled squares, inside the quiet zone of four modules
// that readers need: vector, so it prints sharp at any size.
func drawQR(f *fpdf.Fpdf, code barcode.Barcode, x, y, size float64) {
	b := code.Bounds()
	n := b.Dx()
	m := size / float64(n+8)
	f.SetFillColor(0, 0, 0)
	dark := func(r, c int) bool {
		gray, _, _, _ := code.At(b.Min.X+c, b.Min.Y+r).RGBA()
		return gray < 0x8000
	}
	for r := 0; r < n; r++ {
		// One rectangle per run of dark modules: no hairlines between neighbours.
		for c := 0; c < n; {
			if !dark(r, c) {
				c++
				continue
			}
			end := c
			for end < n && dark(r, end) {
				end++
			}
			f.Rect(x+float64(c+4)*m, y+float64(r+4)*m, float64(end-c)*m, m, "F")
			c = end
		}
	}
}
