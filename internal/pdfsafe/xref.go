package pdfsafe

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"github.com/vula-eid/vula/internal/signing"
)

// maxObjects is PDF's own limit on object numbers (ISO 32000-1, annex C).
const maxObjects = 8388607

// maxDict is how long the newest cross-reference stream's dictionary may be; real ones take a
// few hundred bytes.
const maxDict = 64 << 10

var rePrev = regexp.MustCompile(`/Prev\s+(\d{1,15})`)

// checkXref bounds what the cross-reference sections make digitorus/pdf allocate before it
// reads them: it sizes its table from /Size and from each subsection's first number, and a
// buffer from /W, without a limit, so a few bytes of garbage could make it allocate gigabytes
// (no recover helps there). No real file numbers more objects than it has bytes. Every section
// reachable through /Prev is checked (at most 1024 of them, each once, so a loop ends).
// Sections it cannot make out are left to digitorus/pdf, which refuses them. The newest
// section, when a stream, must not name /Encrypt (see the package comment).
func checkXref(r io.ReaderAt, size, off int64) error {
	limit := min(size, maxObjects)
	tooMany := func(n int64) error {
		return fmt.Errorf("%w: the cross-reference data declares %d objects in a file of %d bytes", signing.ErrInvalid, n, size)
	}
	seen := map[int64]bool{}
	for i := 0; i < 1024 && off > 0 && off < size && !seen[off]; i++ {
		seen[off] = true
		head := make([]byte, min(maxDict, size-off))
		n, _ := r.ReadAt(head, off)
		head = head[:n]
		var dictText []byte
		if bytes.HasPrefix(head, []byte("xref")) {
			// A table: walk its tokens, checking each subsection header and skipping entries,
			// up to the trailer, however far on it is; count what the scanner consumes so as to
			// know where that is.
			var consumed int64
			sc := bufio.NewScanner(io.NewSectionReader(r, off+4, size-off-4))
			sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
				adv, tok, err := bufio.ScanWords(data, atEOF)
				consumed += int64(adv)
				return adv, tok, err
			})
			trailerAt := int64(-1)
			for sc.Scan() {
				if sc.Text() == "trailer" {
					// The token and at most one space after it were consumed.
					trailerAt = off + 4 + consumed - int64(len("trailer")) - 1
					break
				}
				start, err1 := strconv.ParseInt(sc.Text(), 10, 64)
				if !sc.Scan() {
					break
				}
				count, err2 := strconv.ParseInt(sc.Text(), 10, 64)
				if err1 != nil || err2 != nil || start < 0 || count < 0 {
					break
				}
				if start+count > limit {
					return tooMany(start + count)
				}
				for j := int64(0); j < 3*count && sc.Scan(); j++ {
				}
			}
			if trailerAt >= 0 {
				rest := make([]byte, min(4096, size-trailerAt))
				k, _ := r.ReadAt(rest, trailerAt)
				dictText = rest[:k]
				if e := bytes.Index(dictText, []byte("startxref")); e >= 0 {
					dictText = dictText[:e] // this trailer's /Prev, not a later section's
				}
			}
			pm := rePrev.FindSubmatch(dictText)
			if pm == nil {
				break
			}
			off, _ = strconv.ParseInt(string(pm[1]), 10, 64)
			continue
		}
		// A cross-reference stream ("n g obj <<"), its dictionary read with the same token
		// boundaries as digitorus/pdf; anything else digitorus/pdf refuses.
		if !isObjectStart(head) {
			break
		}
		entries, ok := dictionary(head)
		if !ok {
			if i == 0 {
				return fmt.Errorf("%w: the cross-reference stream's dictionary does not end within %d bytes", signing.ErrInvalid, maxDict)
			}
			break
		}
		if i == 0 && entries["Encrypt"] != nil {
			return ErrEncrypted
		}
		ints := func(key string) (out []int64) {
			for _, t := range entries[key] {
				if v, ok := parseInt(t.text); ok && t.kind == tokWord {
					out = append(out, v)
				}
			}
			return out
		}
		if s := ints("Size"); len(s) > 0 && (s[0] > limit || s[0] < 0) {
			return tooMany(s[0])
		}
		idx := ints("Index")
		for j := 0; j+1 < len(idx); j += 2 {
			if a, c := idx[j], idx[j+1]; a < 0 || c < 0 || a+c > limit {
				return tooMany(a + c)
			}
		}
		var wsum int64
		for _, w := range ints("W") {
			if w < 0 || w > 8 {
				return fmt.Errorf("%w: a cross-reference stream with a field of %d bytes", signing.ErrInvalid, w)
			}
			wsum += w
		}
		// /DecodeParms /Columns sizes the PNG predictor's buffers.
		for j, t := range entries["DecodeParms"] {
			if t.kind == tokName && string(t.text) == "Columns" && j+1 < len(entries["DecodeParms"]) {
				if c, ok := parseInt(entries["DecodeParms"][j+1].text); ok && (c < 0 || c > maxColumns) {
					return fmt.Errorf("%w: a predictor of %d columns", signing.ErrInvalid, c)
				}
			}
		}
		p := ints("Prev")
		if len(p) == 0 {
			break
		}
		off = p[0]
	}
	return nil
}

// maxColumns bounds a PNG predictor's /Columns: digitorus/pdf allocates that many bytes.
const maxColumns = 1 << 20

// isObjectStart tells whether data starts with "n g obj".
func isObjectStart(data []byte) bool {
	l := newLexer(data)
	for _, want := range []string{"", "", "obj"} {
		t, ok := l.next()
		if !ok || t.kind != tokWord {
			return false
		}
		if _, isInt := parseInt(t.text); want == "" && !isInt || want != "" && string(t.text) != want {
			return false
		}
	}
	return true
}
