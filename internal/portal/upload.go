package portal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/pdfsafe"
	"github.com/vula-eid/vula/internal/signing"
)

// Limits bound what one upload may hold.
type Limits struct {
	MaxFiles int   // documents in one upload; 10 when 0
	MaxFile  int64 // bytes of one document; 10 MiB when 0
	MaxTotal int64 // bytes of all documents together; 25 MiB when 0
}

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = 10
	}
	if l.MaxFile <= 0 {
		l.MaxFile = 10 << 20
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = 25 << 20
	}
	return l
}

// Upload is one document as it came in, inspected.
type Upload struct {
	Name string // the sender's file name, cleaned for display and download
	Data []byte
	Info Info
	Err  error // why this document cannot be signed; nil when it can
}

// Info is what the portal shows of a PDF and needs to place a signature.
type Info struct {
	Pages int
	// Boxes are the MediaBox and /Rotate of the first and the last page (one entry when the
	// document has one page): enough to place a box on either, and on page n the first page's
	// box is assumed when n is neither (Box).
	First, Last Box
}

// Box is a page's MediaBox (llx lly urx ury, in points) and its /Rotate (0, 90, 180, 270).
type Box struct {
	Rect   [4]float64
	Rotate int
}

// Errors of ParseUpload that concern the whole upload.
var (
	ErrTooManyFiles = errors.New("portal: too many documents in one upload")
	ErrNoFiles      = errors.New("portal: no document in the upload")
)

// ParseUpload reads a multipart/form-data body: the documents of the file fields named field
// and the other fields' values (the CSRF token; each at most 1 KiB). Bodies past the limits are
// refused whole (ErrTooManyFiles, or signing.ErrTooLarge); a document that is not a PDF Vula
// can sign is returned with its Err set, so the page can say which one and why.
func ParseUpload(mr *multipart.Reader, field string, lim Limits) (docs []Upload, values map[string]string, err error) {
	lim = lim.withDefaults()
	values = map[string]string{}
	var total int64
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: portal: the upload is not a well-formed multipart body: %v", signing.ErrInvalid, err)
		}
		if part.FormName() != field {
			v, err := io.ReadAll(io.LimitReader(part, 1<<10+1))
			if err != nil || len(v) > 1<<10 {
				return nil, nil, fmt.Errorf("%w: portal: form field %q too long or unreadable", signing.ErrInvalid, part.FormName())
			}
			values[part.FormName()] = string(v)
			continue
		}
		if part.FileName() == "" {
			// An empty file input sends a part without a name and without content.
			continue
		}
		if len(docs) == lim.MaxFiles {
			return nil, nil, fmt.Errorf("%w: at most %d", ErrTooManyFiles, lim.MaxFiles)
		}
		name := CleanName(part.FileName())
		data, err := io.ReadAll(io.LimitReader(part, lim.MaxFile+1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: portal: reading %s: %v", signing.ErrInvalid, name, err)
		}
		if int64(len(data)) > lim.MaxFile {
			return nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", signing.ErrTooLarge, name, lim.MaxFile)
		}
		if total += int64(len(data)); total > lim.MaxTotal {
			return nil, nil, fmt.Errorf("%w: the documents together are larger than %d bytes", signing.ErrTooLarge, lim.MaxTotal)
		}
		u := Upload{Name: name, Data: data}
		u.Info, u.Err = Inspect(data)
		docs = append(docs, u)
	}
	if len(docs) == 0 {
		return nil, values, ErrNoFiles
	}
	return docs, values, nil
}

// CleanName makes a sender's file name safe to show and to offer back: the base name only,
// no control or format characters, at most 120 characters; "document.pdf" when nothing is left.
func CleanName(s string) string {
	s = strings.ReplaceAll(s, "\\", "/")
	s = path.Base(s)
	var b strings.Builder
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '/' {
			continue
		}
		if n == 120 {
			break
		}
		b.WriteRune(r)
		n++
	}
	out := strings.TrimSpace(b.String())
	if out == "" || out == "." || out == ".." {
		return "document.pdf"
	}
	return out
}

// SignedName is the name of the signed copy: the original's without .pdf, plus -signed.pdf.
func SignedName(name string) string {
	if len(name) >= 4 && strings.EqualFold(name[len(name)-4:], ".pdf") {
		name = name[:len(name)-4]
	}
	return name + "-signed.pdf"
}

// Inspect reads a PDF's page count and the boxes of its first and last page. It is the parser of
// untrusted input here: anything that is not a readable, unencrypted PDF is an error wrapping
// signing.ErrInvalid or signing.ErrUnsupported (or signing.ErrTooLarge, for object streams
// that decode to more than pdfsafe takes), never a panic.
//
// Why not digitorus/pdf's Reader.Page: it walks the page tree without a bound, and a tree whose
// kids point back at an ancestor loops for ever; the walk here keeps a visited set and a depth.
// The inputs on which digitorus/pdf itself loops (FuzzInspect found one: a file without %%EOF
// near its end, which its NewReader searches in quadratic time) are refused by pdfsafe.Open
// before it reads them, so Inspect needs no timeout and leaves no goroutine behind.
func Inspect(data []byte) (info Info, err error) {
	defer func() {
		// digitorus/pdf reports much malformed input by panicking (internal/signing/pades says
		// the same); only reading runs here.
		if p := recover(); p != nil {
			info, err = Info{}, fmt.Errorf("%w: not a readable PDF (%v)", signing.ErrInvalid, p)
		}
	}()
	r, err := pdfsafe.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Info{}, err
	}
	if !r.Trailer().Key("Encrypt").IsNull() {
		return Info{}, fmt.Errorf("%w: an encrypted PDF", signing.ErrUnsupported)
	}
	root := r.Trailer().Key("Root").Key("Pages")
	n := int(root.Key("Count").Int64())
	if n < 1 || n > 1_000_000 {
		return Info{}, fmt.Errorf("%w: the page tree says %d pages", signing.ErrInvalid, n)
	}
	first, err := pageAt(root, 1)
	if err != nil {
		return Info{}, err
	}
	last := first
	if n > 1 {
		if last, err = pageAt(root, n); err != nil {
			return Info{}, err
		}
	}
	info = Info{Pages: n}
	if info.First, err = boxOf(first); err != nil {
		return Info{}, err
	}
	if info.Last, err = boxOf(last); err != nil {
		return Info{}, err
	}
	return info, nil
}

const maxDepth = 64

// pageAt finds page n (1-based) under the page tree node, by /Count, visiting no node twice.
func pageAt(node pdf.Value, n int) (pdf.Value, error) {
	seen := map[any]bool{}
	for depth := 0; depth < maxDepth; depth++ {
		if id := node.GetPtr(); id != (pdf.Value{}).GetPtr() {
			if seen[id] {
				return pdf.Value{}, fmt.Errorf("%w: the page tree has a loop", signing.ErrInvalid)
			}
			seen[id] = true
		}
		if node.Kind() != pdf.Dict {
			return pdf.Value{}, fmt.Errorf("%w: the page tree has a %v where a page belongs", signing.ErrInvalid, node.Kind())
		}
		kids := node.Key("Kids")
		if node.Key("Type").Name() == "Page" || kids.IsNull() {
			if n == 1 {
				return node, nil
			}
			return pdf.Value{}, fmt.Errorf("%w: the page tree counts more pages than it has", signing.ErrInvalid)
		}
		if kids.Len() > 1_000_000 {
			return pdf.Value{}, fmt.Errorf("%w: the page tree is too wide", signing.ErrInvalid)
		}
		found := false
		for i := 0; i < kids.Len(); i++ {
			k := kids.Index(i)
			count := 1
			if k.Key("Type").Name() != "Page" && !k.Key("Kids").IsNull() {
				count = int(k.Key("Count").Int64())
			}
			if count < 1 {
				continue
			}
			if n <= count {
				node, found = k, true
				break
			}
			n -= count
		}
		if !found {
			return pdf.Value{}, fmt.Errorf("%w: the page tree counts more pages than it has", signing.ErrInvalid)
		}
	}
	return pdf.Value{}, fmt.Errorf("%w: the page tree is too deep", signing.ErrInvalid)
}

// boxOf reads a page's MediaBox and /Rotate, inherited from its ancestors as PDF says.
func boxOf(page pdf.Value) (Box, error) {
	inherited := func(key string) pdf.Value {
		v := page
		for depth := 0; depth < maxDepth && !v.IsNull(); depth++ {
			if x := v.Key(key); !x.IsNull() {
				return x
			}
			v = v.Key("Parent")
		}
		return pdf.Value{}
	}
	mb := inherited("MediaBox")
	if mb.Kind() != pdf.Array || mb.Len() != 4 {
		return Box{}, fmt.Errorf("%w: a page without a MediaBox", signing.ErrInvalid)
	}
	var b Box
	for i := range 4 {
		v := mb.Index(i)
		if v.Kind() != pdf.Integer && v.Kind() != pdf.Real {
			return Box{}, fmt.Errorf("%w: a MediaBox with a %v", signing.ErrInvalid, v.Kind())
		}
		b.Rect[i] = v.Float64()
	}
	// The corners may be given in any order.
	b.Rect = [4]float64{min(b.Rect[0], b.Rect[2]), min(b.Rect[1], b.Rect[3]), max(b.Rect[0], b.Rect[2]), max(b.Rect[1], b.Rect[3])}
	if w, h := b.Rect[2]-b.Rect[0], b.Rect[3]-b.Rect[1]; !(w >= 72 && h >= 72 && w <= 14400 && h <= 14400) {
		return Box{}, fmt.Errorf("%w: a page of %.0f×%.0f points (want 1 to 200 inches a side)", signing.ErrInvalid, w, h)
	}
	rot := int(inherited("Rotate").Int64()) % 360
	if rot < 0 {
		rot += 360
	}
	if rot%90 != 0 {
		return Box{}, fmt.Errorf("%w: a page rotated by %d degrees", signing.ErrInvalid, rot)
	}
	b.Rotate = rot
	return b, nil
}
