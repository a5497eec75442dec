package pades

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// The visible signature's text is set in DejaVu Sans, embedded. Helvetica, a standard font
// that needs no embedding, has no č, ć or đ in the glyph set a viewer must provide (the
// standard Latin set of ISO 32000-1 annex D), and the names of Serbian and Albanian signers
// and places need them. font/DejaVuSans-Latin.ttf is a fixed subset of fonts-dejavu-core's
// DejaVuSans.ttf (Basic Latin, Latin-1, Latin Extended-A, common punctuation, made by
// font/make.sh; 32 KB, 16 KB deflated in each visibly signed PDF); its licence
// (font/LICENSE) permits embedding.
//
//go:embed font/DejaVuSans-Latin.ttf
var dejaVuSans []byte

// fontName is the subset's PostScript name with a subset tag (ISO 32000-1, 9.6.4).
const fontName = "VULADJ+DejaVuSans"

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

// ppem1000 scales the font's metrics to a 1000-unit em, PDF's glyph space.
const ppem1000 = fixed.Int26_6(1000 << 6)

// glyph is the glyph of r and the rune it shows: '?' when the font has none for r.
func (t *textFont) glyph(r rune) (sfnt.GlyphIndex, rune) {
	g, err := t.f.GlyphIndex(&t.buf, r)
	if err != nil || g == 0 {
		r = '?'
		g, _ = t.f.GlyphIndex(&t.buf, r)
	}
	return g, r
}

func (t *textFont) width(g sfnt.GlyphIndex) int {
	a, err := t.f.GlyphAdvance(&t.buf, g, ppem1000, font.HintingNone)
	if err != nil {
		return 0
	}
	return (int(a) + 32) >> 6
}

// encode is s as the content stream shows it with Identity-H: two bytes per glyph.
func (t *textFont) encode(s string, used map[sfnt.GlyphIndex]rune) (pdfStr, int) {
	var b []byte
	w := 0
	for _, r := range s {
		g, r := t.glyph(r)
		if _, ok := used[g]; !ok {
			used[g] = r
		}
		b = append(b, byte(g>>8), byte(g))
		w += t.width(g)
	}
	return pdfStr(b), w
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
	file, desc, cid, toUni, top := u.alloc(), u.alloc(), u.alloc(), u.alloc(), u.alloc()
	u.putStream(file, stream{d: dict{"Filter": name("FlateDecode"), "Length1": len(dejaVuSans)}, data: deflate(dejaVuSans)})
	// sfnt's y axis points down: the box's top is -Min.Y, the descent is below the baseline.
	u.put(desc, dict{"Type": name("FontDescriptor"), "FontName": name(fontName), "Flags": 32,
		"FontBBox": array{i(bb.Min.X), i(-bb.Max.Y), i(bb.Max.X), i(-bb.Min.Y)}, "ItalicAngle": 0,
		"Ascent": i(m.Ascent), "Descent": -i(m.Descent), "CapHeight": i(m.CapHeight), "StemV": 80, "FontFile2": file})
	u.put(cid, dict{"Type": name("Font"), "Subtype": name("CIDFontType2"), "BaseFont": name(fontName),
		"CIDSystemInfo":  dict{"Registry": text("Adobe"), "Ordering": text("Identity"), "Supplement": 0},
		"FontDescriptor": desc, "CIDToGIDMap": name("Identity"), "W": widths})
	u.putStream(toUni, stream{data: toUnicode(glyphs, used)})
	u.put(top, dict{"Type": name("Font"), "Subtype": name("Type0"), "BaseFont": name(fontName),
		"Encoding": name("Identity-H"), "DescendantFonts": array{cid}, "ToUnicode": toUni})
	return top, nil
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
