package pdfsafe_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// stored places object id as object index of an object stream.
type stored struct{ stream, index int }

// buildPDF writes a PDF with a cross-reference stream: the direct objects (bodies without
// "n 0 obj"), the objects stored in object streams, and the trailer's extra entries. Object 1
// is the catalog wherever it is; gen, when given, holds the direct objects' generations other
// than 0. This is how the hostile inputs below are made.
func buildPDF(direct map[int]string, inStm map[int]stored, trailer string, gen ...map[int]int) []byte {
	gens := map[int]int{}
	if len(gen) > 0 {
		gens = gen[0]
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offsets := map[int]int{}
	size := 0
	ids := make([]int, 0, len(direct))
	for id := range direct {
		ids = append(ids, id)
		size = max(size, id+1)
	}
	for id := range inStm {
		size = max(size, id+1)
	}
	sort.Ints(ids)
	for _, id := range ids {
		offsets[id] = b.Len()
		fmt.Fprintf(&b, "%d %d obj\n%s\nendobj\n", id, gens[id], direct[id])
	}
	xrefID := size
	size++
	offsets[xrefID] = b.Len()
	var data bytes.Buffer
	for id := range size {
		e := make([]byte, 7)
		switch s, ok := inStm[id]; {
		case ok:
			e[0] = 2
			binary.BigEndian.PutUint32(e[1:], uint32(s.stream))
			binary.BigEndian.PutUint16(e[5:], uint16(s.index))
		case offsets[id] > 0:
			e[0] = 1
			binary.BigEndian.PutUint32(e[1:], uint32(offsets[id]))
			binary.BigEndian.PutUint16(e[5:], uint16(gens[id]))
		default:
			binary.BigEndian.PutUint16(e[5:], 65535)
		}
		data.Write(e)
	}
	fmt.Fprintf(&b, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R %s /Length %d >>\nstream\n",
		xrefID, size, trailer, data.Len())
	b.Write(data.Bytes())
	fmt.Fprintf(&b, "\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n", offsets[xrefID])
	return b.Bytes()
}

// objStm is an object stream's body: header pairs, then the objects; /N and /Length are
// written unless extra gives them.
func objStm(extra string, n int, pairs string, objects string) string {
	data := pairs + objects
	if !strings.Contains(extra, "/N ") {
		extra += fmt.Sprintf(" /N %d", n)
	}
	if !strings.Contains(extra, "/Length ") {
		extra += fmt.Sprintf(" /Length %d", len(data))
	}
	return fmt.Sprintf("<< /Type /ObjStm /First %d %s >>\nstream\n%s\nendstream", len(pairs), extra, data)
}

const (
	catalog = "<< /Type /Catalog /Pages 2 0 R >>"
	pages   = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
	page    = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"
)

// hostile are inputs on which digitorus/pdf v0.1.2 loops, recurses or allocates without end
// (each named after the place it does so, see the package comment), with what Open's error
// says. TestHostileInputsHang shows that each does.
var hostile = []struct {
	name, says string
	pdf        []byte
}{
	{"EOFDetect quadratic: no %%EOF", "EOF", append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("x"), 1<<20)...)},
	{"EOFDetect quadratic: %%EOF far from the end", "EOF",
		append(append([]byte("%PDF-1.4\n%%EOF\n"), bytes.Repeat([]byte(" "), 1<<20)...), "x"...)},
	{"resolve: /Extends loop", "Extends", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/Extends 4 0 R", 1, "9 0 ", "<< >>"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"resolve: /Extends loop through two streams", "Extends", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/Extends 5 0 R", 1, "9 0 ", "<< >>"),
		5: objStm("/Extends 4 0 R", 1, "8 0 ", "<< >>"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"resolve: /Extends loop through a generation other than 0", "Extends", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/Extends 5 1 R", 1, "9 0 ", "<< >>"),
		5: objStm("/Extends 4 0 R", 1, "8 0 ", "<< >>"),
	}, map[int]stored{1: {4, 0}}, "", map[int]int{5: 1})},
	{"resolve: huge /N", "/N", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/N 9223372036854775807", 1, "9 0 ", "<< >>"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"resolve: an object stream stored in itself", "itself stored", buildPDF(map[int]string{
		2: pages, 3: page,
	}, map[int]stored{1: {4, 0}, 4: {4, 1}}, "")},
	{"resolve: /Length stored in the object stream", "refers to object 5", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/Length 5 0 R", 2, "1 0 5 34 ", catalog+" 43"),
	}, map[int]stored{1: {4, 0}, 5: {4, 1}}, "")},
	{"resolve: /N stored in the object stream", "refers to object 5", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("/N 5 0 R", 2, "1 0 5 34 ", catalog+" 2"),
	}, map[int]stored{1: {4, 0}, 5: {4, 1}}, "")},
	{"lex readArray: an array open at the stream's end", "inside an array", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("", 1, "1 0 ", "[1 2"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"lex readHexString: a hex string open at the stream's end", "inside an array or a string", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("", 1, "1 0 ", "<< /A <00"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"lex readLiteralString: a string open at the stream's end", "inside an array or a string", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("", 1, "1 0 ", "(abc\\)"),
	}, map[int]stored{1: {4, 0}}, "")},
	{"lex readArray: an object placed inside a comment", "not at the start of one", buildPDF(map[int]string{
		2: pages, 3: page,
		4: objStm("", 1, "1 1 ", "%["),
	}, map[int]stored{1: {4, 0}}, "")},
	{"NewReader: /Encrypt in a looping object stream", "encrypted", buildPDF(map[int]string{
		1: catalog, 2: pages, 3: page,
		4: objStm("/Extends 4 0 R", 1, "9 0 ", "<< >>"),
	}, map[int]stored{5: {4, 0}}, "/Encrypt 5 0 R /ID [<00> <00>]")},
	{"NewReader: /Encr#79pt in a looping object stream", "encrypted", buildPDF(map[int]string{
		1: catalog, 2: pages, 3: page,
		4: objStm("/Extends 4 0 R", 1, "9 0 ", "<< >>"),
	}, map[int]stored{5: {4, 0}}, "/Encr#79pt 5 0 R /ID [<00> <00>]")},
	{"readXrefStreamData: a 2^40-byte /W field", "field of", []byte(strings.Replace(string(buildPDF(map[int]string{
		1: catalog, 2: pages, 3: page,
	}, nil, "")), "/W [1 4 2]", "/W [1099511627776 4 2]", 1))},
}
