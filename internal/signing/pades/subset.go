package pades

import (
	"encoding/binary"
	"errors"
	"slices"
	"sort"

	"golang.org/x/image/font/sfnt"
)

// subsetFont is the TrueType font program ttf with the outlines of only the glyphs keep (and
// the glyphs their composites are made of) and of glyph 0; every other glyph is left empty.
// Glyph numbers do not change, so the Identity CIDToGIDMap and the widths stay right.
// hmtx, cmap and the other small tables are kept whole. The font is ours (font/make.sh), so
// an error here is a bug in the build, not bad input.
func subsetFont(ttf []byte, keep []sfnt.GlyphIndex) ([]byte, error) {
	tables, err := sfntTables(ttf)
	if err != nil {
		return nil, err
	}
	head, maxp, loca, glyf, post := tables["head"], tables["maxp"], tables["loca"], tables["glyf"], tables["post"]
	if len(head) < 54 || len(maxp) < 6 || glyf == nil || len(post) < 32 {
		return nil, errTTF
	}
	n := int(binary.BigEndian.Uint16(maxp[4:]))
	long := binary.BigEndian.Uint16(head[50:]) == 1
	offsets := make([]int, n+1)
	for i := range offsets {
		switch {
		case long && len(loca) >= 4*(n+1):
			offsets[i] = int(binary.BigEndian.Uint32(loca[4*i:]))
		case !long && len(loca) >= 2*(n+1):
			offsets[i] = 2 * int(binary.BigEndian.Uint16(loca[2*i:]))
		default:
			return nil, errTTF
		}
		if offsets[i] > len(glyf) || i > 0 && offsets[i] < offsets[i-1] {
			return nil, errTTF
		}
	}
	outline := func(g int) []byte { return glyf[offsets[g]:offsets[g+1]] }

	want := make([]bool, n)
	todo := append([]sfnt.GlyphIndex{0}, keep...)
	for len(todo) > 0 {
		g := int(todo[len(todo)-1])
		todo = todo[:len(todo)-1]
		if g >= n || want[g] {
			continue
		}
		want[g] = true
		parts, err := components(outline(g))
		if err != nil {
			return nil, err
		}
		todo = append(todo, parts...)
	}

	var newGlyf, newLoca []byte
	for g := range n {
		newLoca = binary.BigEndian.AppendUint32(newLoca, uint32(len(newGlyf)))
		if want[g] {
			newGlyf = append(newGlyf, outline(g)...)
			for len(newGlyf)%4 != 0 {
				newGlyf = append(newGlyf, 0)
			}
		}
	}
	newLoca = binary.BigEndian.AppendUint32(newLoca, uint32(len(newGlyf)))
	newHead := slices.Clone(head)
	binary.BigEndian.PutUint32(newHead[8:], 0) // checkSumAdjustment, set below
	binary.BigEndian.PutUint16(newHead[50:], 1)
	newPost := slices.Clone(post[:32])
	binary.BigEndian.PutUint32(newPost, 0x00030000) // no glyph names
	tables["head"], tables["loca"], tables["glyf"], tables["post"] = newHead, newLoca, newGlyf, newPost

	out := writeSFNT(tables)
	binary.BigEndian.PutUint32(out[headOffset(out):][8:], 0xB1B0AFBA-checksum(out))
	return out, nil
}

var errTTF = errors.New("pades: the embedded font is not a TrueType font the subsetter reads")

// sfntTables is the tables of a TrueType font by tag.
func sfntTables(b []byte) (map[string][]byte, error) {
	if len(b) < 12 || binary.BigEndian.Uint32(b) != 0x00010000 {
		return nil, errTTF
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	if len(b) < 12+16*n {
		return nil, errTTF
	}
	t := map[string][]byte{}
	for i := range n {
		rec := b[12+16*i:]
		off, size := int(binary.BigEndian.Uint32(rec[8:])), int(binary.BigEndian.Uint32(rec[12:]))
		if off > len(b) || size > len(b)-off {
			return nil, errTTF
		}
		t[string(rec[:4])] = b[off : off+size]
	}
	return t, nil
}

// components is the glyphs a composite glyph is drawn from; none for a simple glyph.
func components(g []byte) ([]sfnt.GlyphIndex, error) {
	if len(g) < 10 || int16(binary.BigEndian.Uint16(g)) >= 0 {
		return nil, nil
	}
	const (
		wordArgs   = 0x0001
		scale      = 0x0008
		more       = 0x0020
		xyScale    = 0x0040
		twoByTwo   = 0x0080
		recordSize = 4
	)
	var out []sfnt.GlyphIndex
	for p := 10; ; {
		if p+recordSize > len(g) {
			return nil, errTTF
		}
		flags := binary.BigEndian.Uint16(g[p:])
		out = append(out, sfnt.GlyphIndex(binary.BigEndian.Uint16(g[p+2:])))
		p += recordSize
		switch {
		case flags&wordArgs != 0:
			p += 4
		default:
			p += 2
		}
		switch {
		case flags&scale != 0:
			p += 2
		case flags&xyScale != 0:
			p += 4
		case flags&twoByTwo != 0:
			p += 8
		}
		if flags&more == 0 {
			return out, nil
		}
	}
}

// writeSFNT lays the tables out in tag order, each on a four-byte boundary, with their
// checksums (OpenType, "Organization of an OpenType font").
func writeSFNT(t map[string][]byte) []byte {
	tags := make([]string, 0, len(t))
	for k := range t {
		tags = append(tags, k)
	}
	sort.Strings(tags)
	n := len(tags)
	pow := 1
	for pow*2 <= n {
		pow *= 2
	}
	entrySelector := 0
	for 1<<(entrySelector+1) <= pow {
		entrySelector++
	}
	out := binary.BigEndian.AppendUint32(nil, 0x00010000)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	out = binary.BigEndian.AppendUint16(out, uint16(16*pow))
	out = binary.BigEndian.AppendUint16(out, uint16(entrySelector))
	out = binary.BigEndian.AppendUint16(out, uint16(16*n-16*pow))
	off := 12 + 16*n
	for _, tag := range tags {
		out = append(out, tag...)
		out = binary.BigEndian.AppendUint32(out, checksum(t[tag]))
		out = binary.BigEndian.AppendUint32(out, uint32(off))
		out = binary.BigEndian.AppendUint32(out, uint32(len(t[tag])))
		off += (len(t[tag]) + 3) &^ 3
	}
	for _, tag := range tags {
		out = append(out, t[tag]...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

func headOffset(font []byte) int {
	n := int(binary.BigEndian.Uint16(font[4:]))
	for i := range n {
		rec := font[12+16*i:]
		if string(rec[:4]) == "head" {
			return int(binary.BigEndian.Uint32(rec[8:]))
		}
	}
	return 0 // writeSFNT always writes a head
}

// checksum is the sum of b as big-endian 32-bit words, the last one padded with zeros.
func checksum(b []byte) uint32 {
	var sum uint32
	for i := 0; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		sum += binary.BigEndian.Uint32(w[:])
	}
	return sum
}
