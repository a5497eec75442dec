package pades

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"strings"
)

// update is one incremental update being built in memory: new objects, new versions of old
// ones, then a cross-reference section of the original's kind and the trailer.
type update struct {
	d       *document
	base    int64 // where the update starts in the output
	buf     bytes.Buffer
	offsets map[int]int64 // object number -> offset in the output
	gens    map[int]int
}

func (d *document) newUpdate(base int64, leadingEOL bool) *update {
	u := &update{d: d, base: base, offsets: map[int]int64{}, gens: map[int]int{}}
	if leadingEOL {
		u.buf.WriteByte('\n')
	}
	return u
}

func (u *update) alloc() ref {
	r := ref{num: u.d.nextNum}
	u.d.nextNum++
	return r
}

func (u *update) begin(r ref) {
	u.offsets[r.num] = u.base + int64(u.buf.Len())
	u.gens[r.num] = r.gen
	var a [48]byte
	b := strconv.AppendInt(a[:0], int64(r.num), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.gen), 10)
	u.buf.Write(append(b, " obj\n"...))
}

// put writes o as the object r; later reads of r in this Sign see o.
func (u *update) put(r ref, o any) {
	u.begin(r)
	writeObj(&u.buf, o)
	u.buf.WriteString("\nendobj\n")
	u.d.objs[r.num] = o
}

func (u *update) putStream(r ref, s stream) {
	u.begin(r)
	d := maps.Clone(s.d)
	if d == nil {
		d = dict{}
	}
	d["Length"] = len(s.data)
	writeObj(&u.buf, d)
	u.buf.WriteString("\nstream\n")
	u.buf.Write(s.data)
	u.buf.WriteString("\nendstream\nendobj\n")
}

// placeholder is where a signature dictionary's /ByteRange and /Contents are in an update.
type placeholder struct {
	byteRange      int // offset of the /ByteRange array in the update
	cStart, cEnd   int // the /Contents hex string, < and > included
	contentsLength int // bytes the hex string holds
}

// byteRangeWidth holds four numbers of up to 19 digits: the array is filled in place, so
// nothing after it moves.
const byteRangeWidth = 1 + 4*20 + 1

// putSig writes a signature dictionary with a /ByteRange and a /Contents of n bytes to fill
// in later, besides the entries of m.
func (u *update) putSig(r ref, m dict, n int) placeholder {
	u.begin(r)
	var p placeholder
	u.buf.WriteString("<< /ByteRange ")
	p.byteRange = u.buf.Len()
	u.buf.WriteString("[" + string(bytes.Repeat([]byte{' '}, byteRangeWidth-2)) + "]")
	u.buf.WriteString(" /Contents ")
	p.cStart = u.buf.Len()
	u.buf.WriteByte('<')
	// Room for the placeholder and the rest of the update at once: growing the buffer by
	// doubling, and a separate run of zeros to copy in, were a fifth of a seal's allocations.
	u.buf.Grow(2*n + 4<<10)
	zeros := u.buf.AvailableBuffer()[:2*n]
	for i := range zeros {
		zeros[i] = '0'
	}
	u.buf.Write(zeros)
	u.buf.WriteByte('>')
	p.cEnd = u.buf.Len()
	p.contentsLength = n
	rest := maps.Clone(m)
	delete(rest, "ByteRange")
	delete(rest, "Contents")
	var tail bytes.Buffer
	writeObj(&tail, rest) // "<< ... >>": keep what is between
	u.buf.Write(bytes.TrimPrefix(tail.Bytes(), []byte("<<")))
	u.buf.WriteString("\nendobj\n")
	u.d.objs[r.num] = m
	return p
}

// byteRange fills in p's /ByteRange once the update is finished: everything of the output up
// to the end of this update except the /Contents string.
func (u *update) byteRange(p placeholder) [4]int64 {
	end := u.base + int64(u.buf.Len())
	br := [4]int64{0, u.base + int64(p.cStart), u.base + int64(p.cEnd), end - (u.base + int64(p.cEnd))}
	s := fmt.Sprintf("[%d %d %d %d", br[0], br[1], br[2], br[3])
	s += string(bytes.Repeat([]byte{' '}, byteRangeWidth-1-len(s))) + "]"
	copy(u.buf.Bytes()[p.byteRange:], s)
	return br
}

// fillContents writes der into p's /Contents, zero-padded.
func (u *update) fillContents(p placeholder, der []byte) error {
	if len(der) > p.contentsLength {
		return fmt.Errorf("pades: the signature (%d bytes) outgrew its placeholder (%d bytes)", len(der), p.contentsLength)
	}
	hex.Encode(u.buf.Bytes()[p.cStart+1:], der)
	return nil
}

// finish writes the cross-reference section (a table or a stream, as the original has) and
// the trailer. The document's next update chains to it with /Prev.
func (u *update) finish() {
	d := u.d
	trailer := dict{"Size": d.nextNum, "Root": d.root, "Prev": d.startxref}
	if d.info != nil {
		trailer["Info"] = d.info
	}
	if d.id != nil {
		trailer["ID"] = d.id
	}
	var xrefAt int64
	if d.xrefStream {
		self := u.alloc()
		trailer["Size"] = d.nextNum
		xrefAt = u.base + int64(u.buf.Len())
		u.offsets[self.num] = xrefAt
		u.gens[self.num] = 0
		nums := sortedKeys(u.offsets)
		w := 1
		for _, n := range nums {
			for u.offsets[n]>>(8*w) > 0 {
				w++
			}
		}
		var data []byte
		var index array
		for _, run := range runs(nums) {
			index = append(index, run[0], len(run))
			for _, n := range run {
				data = append(data, 1)
				for i := w - 1; i >= 0; i-- {
					data = append(data, byte(u.offsets[n]>>(8*i)))
				}
				data = append(data, byte(u.gens[n]>>8), byte(u.gens[n]))
			}
		}
		trailer["Type"] = name("XRef")
		trailer["W"] = array{1, w, 2}
		trailer["Index"] = index
		u.putStream(self, stream{d: trailer, data: data})
	} else {
		xrefAt = u.base + int64(u.buf.Len())
		u.buf.WriteString("xref\n")
		nums := sortedKeys(u.offsets)
		for _, run := range runs(nums) {
			fmt.Fprintf(&u.buf, "%d %d\n", run[0], len(run))
			for _, n := range run {
				u.buf.WriteString(xrefEntry(u.offsets[n], u.gens[n]))
			}
		}
		u.buf.WriteString("trailer\n")
		writeObj(&u.buf, trailer)
		u.buf.WriteByte('\n')
	}
	u.buf.WriteString("startxref\n" + strconv.FormatInt(xrefAt, 10) + "\n%%EOF\n")
	d.startxref = xrefAt
}

// runs splits sorted numbers into runs of consecutive ones (the xref's subsections).
func runs(nums []int) [][]int {
	var out [][]int
	for i, n := range nums {
		if i == 0 || n != nums[i-1]+1 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], n)
	}
	return out
}

// xrefEntry is a table's 20-byte entry of an object in use.
func xrefEntry(off int64, gen int) string {
	var a [20]byte
	o := strconv.AppendInt(a[:0], off, 10)
	g := strconv.Itoa(gen)
	return strings.Repeat("0", max(0, 10-len(o))) + string(o) + " " + strings.Repeat("0", max(0, 5-len(g))) + g + " n\r\n"
}
