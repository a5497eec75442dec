package pades

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The PDF objects this package writes: its own small model, because digitorus/pdf only reads
// (its object types are unexported) and the update must re-emit a few of the document's
// dictionaries (the catalog, pages, the AcroForm) with their references intact.
type (
	name   string
	ref    struct{ num, gen int }
	dict   map[name]any
	array  []any
	pdfStr string // a string's bytes, written as a hex string
	// text is a text string: ASCII as a literal, anything else UTF-16BE with a BOM.
	text string
	// raw is written as it is (a placeholder, a pre-formatted number).
	raw string
)

// stream is an indirect stream object: the dictionary gets /Length.
type stream struct {
	d    dict
	data []byte
}

func (r ref) String() string { return fmt.Sprintf("%d %d R", r.num, r.gen) }

// writeObj writes o in PDF syntax. Keys of a dictionary go in sorted order, so that an update
// is the same bytes for the same input.
func writeObj(b *bytes.Buffer, o any) {
	switch v := o.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		b.WriteString(formatReal(v))
	case name:
		writeName(b, v)
	case ref:
		writeRef(b, v)
	case pdfStr:
		b.WriteByte('<')
		const hx = "0123456789ABCDEF"
		for i := range len(v) {
			b.WriteByte(hx[v[i]>>4])
			b.WriteByte(hx[v[i]&15])
		}
		b.WriteByte('>')
	case text:
		writeText(b, string(v))
	case raw:
		b.WriteString(string(v))
	case array:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeObj(b, e)
		}
		b.WriteByte(']')
	case dict:
		b.WriteString("<<")
		for _, k := range sortedKeys(v) {
			b.WriteByte(' ')
			writeName(b, k)
			b.WriteByte(' ')
			writeObj(b, v[k])
		}
		b.WriteString(" >>")
	default:
		panic(fmt.Sprintf("pades: cannot write %T", o)) // a bug here, never input
	}
}

// writeRef writes "num gen R" (without fmt: a signature writes hundreds).
func writeRef(b *bytes.Buffer, r ref) {
	var a [48]byte
	out := strconv.AppendInt(a[:0], int64(r.num), 10)
	out = append(out, ' ')
	out = strconv.AppendInt(out, int64(r.gen), 10)
	b.Write(append(out, " R"...))
}

func formatReal(f float64) string {
	s := strconv.FormatFloat(f, 'f', 4, 64)
	s = trimZeros(s)
	if s == "-0" {
		s = "0"
	}
	return s
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// writeName writes /n, escaping what a name cannot hold as #xx.
func writeName(b *bytes.Buffer, n name) {
	b.WriteByte('/')
	for i := range len(n) {
		c := n[i]
		if c < '!' || c > '~' || strings.IndexByte("#()<>[]{}/%", c) >= 0 {
			fmt.Fprintf(b, "#%02X", c)
			continue
		}
		b.WriteByte(c)
	}
}

func writeText(b *bytes.Buffer, s string) {
	ascii := true
	for i := range len(s) {
		if s[i] < ' ' || s[i] > '~' {
			ascii = false
			break
		}
	}
	if ascii {
		b.WriteByte('(')
		for i := range len(s) {
			if c := s[i]; c == '(' || c == ')' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		}
		b.WriteByte(')')
		return
	}
	u := []byte{0xFE, 0xFF}
	for _, r := range utf16.Encode([]rune(s)) {
		u = append(u, byte(r>>8), byte(r))
	}
	writeObj(b, pdfStr(u))
}

// sortedKeys returns m's keys in order. A small map's keys are ranked by counting the keys
// below each instead of sorted: the work, and so the branches a coverage-guided fuzzer
// counts, is then the same whatever order the map yields its keys in (a sort's swaps are
// not, and FuzzSign took each new order for new behaviour). A large map, which only input
// can give, is sorted: ranking is quadratic.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if len(keys) > 64 {
		slices.Sort(keys)
		return keys
	}
	out := make([]K, len(keys))
	for _, k := range keys {
		rank := 0
		for _, o := range keys {
			if o < k {
				rank++
			}
		}
		out[rank] = k
	}
	return out
}
