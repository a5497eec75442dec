package pades

import (
	"crypto/sha256"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
	"golang.org/x/text/unicode/norm"

	"github.com/vula-eid/vula/internal/signing"
)

// The visible signature's text is set in DejaVu Sans, embedded. Helvetica, a standard font
// that needs no embedding, has no č, ć or đ in the glyph set a viewer must provide (the
// standard Latin set of ISO 32000-1 annex D), and no Cyrillic or Greek at all, which the names
// of Serbian, Albanian and Greek signers, institutions and places need.
// font/DejaVuSans-LGC.ttf is a fixed subset of fonts-dejavu-core's DejaVuSans.ttf (Latin,
// Greek, Cyrillic and common punctuation, made by font/make.sh; 105 KB); each signature embeds
// only the outlines of the glyphs it shows (subset.go). Its licence (font/LICENSE) permits
// embedding. Text with a character the font lacks is refused, never drawn as '?'.
//
//go:embed font/DejaVuSans-LGC.ttf
var dejaVuSans []byte

// textFont is the embedded font as the appearance uses it: glyphs of runes and their widths
// in thousandths of an em.
type textFont struct {
	f   *sfnt.Font
	buf sfnt.Buffer
}

func loadFont() (*textFont, error) {
	f, err := sfnt.Parse(dejaVuSans)
	if err != nil {
		return nil, fmt.Errorf("pades: the embedded font: %w", err) // a bug in the build
	}
	return &textFont{f: f}, nil
}

// CheckText returns a signing.ErrInvalid error naming the first character of s (lines of a
// visible signature's text) that the signature's font cannot draw, or nil when it can draw
// all of s.
func CheckText(s string) error {
	t, err := loadFont()
	if err != nil {
		return err
	}
	for _, l := range strings.Split(normalText(s), "\n") {
		if _, _, err := t.encode(l, map[sfnt.GlyphIndex]rune{}); err != nil {
			return err
		}
	}
	return nil
}

// normalText is s in Unicode's composed form (a letter and its combining accent become the
// one precomposed letter the font has), with CR before LF dropped.
func normalText(s string) string {
	return strings.ReplaceAll(norm.NFC.String(s), "\r\n", "\n")
}

// ppem1000 scales the font's metrics to a 1000-unit em, PDF's glyph space.
const ppem1000 = fixed.Int26_6(1000 << 6)

// glyph is the glyph of r; 0, the missing glyph, when the font has none.
func (t *textFont) glyph(r rune) sfnt.GlyphIndex {
	g, err := t.f.GlyphIndex(&t.buf, r)
	if err != nil {
		return 0
	}
	return g
}

func (t *textFont) width(g sfnt.GlyphIndex) int {
	a, err := t.f.GlyphAdvance(&t.buf, g, ppem1000, font.HintingNone)
	if err != nil {
		return 0
	}
	return (int(a) + 32) >> 6
}

// encode is s as the content stream shows it with Identity-H: two bytes per glyph.
// It fails with signing.ErrInvalid on a character the font cannot draw.
func (t *textFont) encode(s string, used map[sfnt.GlyphIndex]rune) (pdfStr, int, error) {
	var b []byte
	w := 0
	for _, r := range s {
		g := t.glyph(r)
		if g == 0 {
			return "", 0, fmt.Errorf("%w: pades: the signature's text has %q (%U), which its font (DejaVu Sans: Latin, Greek, Cyrillic) cannot draw",
				signing.ErrInvalid, r, r)
		}
		if _, ok := used[g]; !ok {
			used[g] = r
		}
		b = append(b, byte(g>>8), byte(g))
		w += t.width(g)
	}
	return pdfStr(b), w, nil
}

// objects writes the Type 0 font (CIDFontType2, Identity-H, identity CID-to-glyph map) with
// the widths of the glyphs used, its descriptor, the font program and a ToUnicode map (so
// the text can be searched and copied), and returns the font's reference.
func (t *textFont) objects(u *update, used map[sfnt.GlyphIndex]rune) (ref, error) {
	m, err := t.f.Metrics(&t.buf, ppem1000, font.HintingNone)
	if err != nil {
		return ref{}, fmt.Errorf("pades: the embedded font: %w", err)
	}
	bb, err := t.f.Bounds(&t.buf, ppem1000, font.HintingNone)
	if err != nil {
		return ref{}, fmt.Errorf("pades: the embedded font: %w", err)
	}
	i := func(x fixed.Int26_6) int { return x.Round() }
	glyphs := sortedKeys(used)
	var widths array
	for _, g := range glyphs {
		widths = append(widths, int(g), array{t.width(g)})
	}
	program, err := subsetFont(dejaVuSans, glyphs)
	if err != nil {
		return ref{}, err
	}
	fontName := name(subsetTag(glyphs) + "+DejaVuSans")
	file, desc, cid, toUni, top := u.alloc(), u.alloc(), u.alloc(), u.alloc(), u.alloc()
	u.putStream(file, stream{d: dict{"Filter": name("FlateDecode"), "Length1": len(program)}, data: deflate(program)})
	// sfnt's y axis points down: the box's top is -Min.Y, the descent is below the baseline.
	u.put(desc, dict{"Type": name("FontDescriptor"), "FontName": fontName, "Flags": 32,
		"FontBBox": array{i(bb.Min.X), i(-bb.Max.Y), i(bb.Max.X), i(-bb.Min.Y)}, "ItalicAngle": 0,
		"Ascent": i(m.Ascent), "Descent": -i(m.Descent), "CapHeight": i(m.CapHeight), "StemV": 80, "FontFile2": file})
	u.put(cid, dict{"Type": name("Font"), "Subtype": name("CIDFontType2"), "BaseFont": fontName,
		"CIDSystemInfo":  dict{"Registry": text("Adobe"), "Ordering": text("Identity"), "Supplement": 0},
		"FontDescriptor": desc, "CIDToGIDMap": name("Identity"), "W": widths})
	u.putStream(toUni, stream{data: toUnicode(glyphs, used)})
	u.put(top, dict{"Type": name("Font"), "Subtype": name("Type0"), "BaseFont": fontName,
		"Encoding": name("Identity-H"), "DescendantFonts": array{cid}, "ToUnicode": toUni})
	return top, nil
}

// subsetTag is the six capital letters before a subset font's name (ISO 32000-1, 9.6.4),
// drawn from the glyphs it holds so that different subsets get different tags.
func subsetTag(glyphs []sfnt.GlyphIndex) string {
	h := sha256.New()
	for _, g := range glyphs {
		h.Write([]byte{byte(g >> 8), byte(g)})
	}
	sum := h.Sum(nil)
	tag := make([]byte, 6)
	for i := range tag {
		tag[i] = 'A' + sum[i]%26
	}
	return string(tag)
}

// toUnicode is a CMap from the two-byte codes (glyph numbers) to the text they show.
func toUnicode(glyphs []sfnt.GlyphIndex, used map[sfnt.GlyphIndex]rune) []byte {
	var b strings.Builder
	b.WriteString("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n" +
		"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n" +
		"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n" +
		"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n")
	for chunk := range slices.Chunk(glyphs, 100) { // at most 100 entries a block
		fmt.Fprintf(&b, "%d beginbfchar\n", len(chunk))
		for _, g := range chunk {
			fmt.Fprintf(&b, "<%04X> <", int(g))
			for _, c := range utf16.Encode([]rune{used[g]}) {
				fmt.Fprintf(&b, "%04X", c)
			}
			b.WriteString(">\n")
		}
		b.WriteString("endbfchar\n")
	}
	b.WriteString("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
	return []byte(b.String())
}
