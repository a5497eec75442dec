package pades

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/pdfsafe"
	"github.com/vula-eid/vula/internal/signing"
)

// document is what the updates need to know of the PDF being signed. The objects an update
// writes (catalog, AcroForm, pages, fields) are kept in objs, newest version, so that a later
// update of the same Sign builds on them and not on the original.
type document struct {
	size       int64
	xrefStream bool
	startxref  int64 // of the newest xref section: /Prev of the next one
	nextNum    int   // the first unused object number
	root       ref
	info       any // the trailer's /Info reference, or nil
	id         any // the trailer's /ID array, or nil
	endsInEOL  bool

	objs map[int]any // objects written by this Sign's updates, newest version
	// raws holds, for each reference met while reading, digitorus/pdf's own value of it: the
	// only thing its Resolve takes, as its reference type is unexported.
	raws    map[int]any
	resolve func(raw any) pdf.Value
	// read caches the original's objects as converted: Sign asks for the catalog and the
	// page tree many times, and each resolve by digitorus/pdf re-parses (and, for an object
	// in an object stream, re-inflates the stream). The values are shared: callers clone
	// before changing one.
	read map[int]any
}

// openDocument reads the structure of the PDF in r: the trailer, the catalog and the first
// page. It reads lazily: only the cross-reference sections and the objects it asks for.
//
// digitorus/pdf reports much malformed input by panicking (its lexer and resolver call panic
// on unexpected tokens, bad offsets and unknown filters), so every call into it is under
// recover: a panic there is bad input and becomes signing.ErrInvalid. Only reading runs in
// those calls, so a recovered panic cannot hide a half-written output.
func openDocument(r io.ReaderAt, size int64) (d *document, err error) {
	defer recoverInvalid(&err)
	// pdfsafe refuses what digitorus/pdf would loop on or allocate without bound for.
	pr, err := pdfsafe.Open(r, size)
	if errors.Is(err, pdfsafe.ErrEncrypted) {
		return nil, errEncrypted
	}
	if err != nil {
		return nil, fmt.Errorf("pades: %w", err)
	}
	tr := pr.Trailer()
	parent := tr.GetPtr()
	d = &document{size: size, objs: map[int]any{}, raws: map[int]any{}, read: map[int]any{},
		resolve:    func(raw any) pdf.Value { return pr.Resolve(parent, raw) },
		xrefStream: pr.XrefInformation.Type == "stream", startxref: pr.XrefInformation.StartPos}
	m, err := d.toModel(tr)
	if err != nil {
		return nil, err
	}
	trailer, _ := m.(dict)
	if trailer["Encrypt"] != nil {
		return nil, errEncrypted
	}
	root, ok := trailer["Root"].(ref)
	if !ok {
		return nil, fmt.Errorf("%w: pades: the trailer has no /Root reference", signing.ErrInvalid)
	}
	d.root = root
	if info, ok := trailer["Info"].(ref); ok {
		d.info = info
	}
	if id, ok := trailer["ID"].(array); ok {
		d.id = id
	}
	size64, _ := trailer["Size"].(int64)
	d.nextNum = max(int(size64), len(pr.Xref()))
	if d.nextNum <= d.root.num {
		return nil, fmt.Errorf("%w: pades: the trailer's /Size is not above its /Root", signing.ErrInvalid)
	}
	cat, err := d.dictAt(d.root)
	if err != nil {
		return nil, fmt.Errorf("%w (the catalog: is the cross-reference table broken?)", err)
	}
	if _, ok := cat["Pages"].(ref); !ok {
		return nil, fmt.Errorf("%w: pades: the catalog has no /Pages", signing.ErrInvalid)
	}
	// The first page must resolve: a cheap check that the cross-reference data points at the
	// objects it names.
	if _, _, err := d.page(1); err != nil {
		return nil, err
	}
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, size-1); err != nil {
		return nil, fmt.Errorf("%w: pades: reading the PDF: %v", signing.ErrInvalid, err)
	}
	d.endsInEOL = last[0] == '\n' || last[0] == '\r'
	return d, nil
}

// errEncrypted refuses an encrypted PDF: a signature would have to be made over the decrypted
// objects and written encrypted, which this writer does not do.
var errEncrypted = fmt.Errorf("%w: pades: encrypted PDFs cannot be sealed or signed; remove the encryption first", signing.ErrUnsupported)

func recoverInvalid(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: pades: malformed PDF: %v", signing.ErrInvalid, p)
	}
}

// get returns the newest version of the object at r: this Sign's own, else the original's.
// A reference to nothing is null, as in PDF.
func (d *document) get(r ref) (out any, err error) {
	if o, ok := d.objs[r.num]; ok {
		return o, nil
	}
	if o, ok := d.read[r.num]; ok {
		return o, nil
	}
	raw, ok := d.raws[r.num]
	if !ok {
		return nil, fmt.Errorf("pades: object %v was not met while reading", r) // a bug here
	}
	defer recoverInvalid(&err)
	v := d.resolve(raw)
	if v.Kind() == pdf.Stream {
		return nil, fmt.Errorf("%w: pades: object %v is a stream, not a dictionary or array", signing.ErrInvalid, r)
	}
	o, err := d.toModel(v)
	if err == nil {
		d.read[r.num] = o
	}
	return o, err
}

// deref returns o, or the object it refers to.
func (d *document) deref(o any) (any, error) {
	if r, ok := o.(ref); ok {
		return d.get(r)
	}
	return o, nil
}

// dictAt returns the dictionary at r.
func (d *document) dictAt(r ref) (dict, error) {
	o, err := d.get(r)
	if err != nil {
		return nil, err
	}
	m, ok := o.(dict)
	if !ok {
		return nil, fmt.Errorf("%w: pades: object %v is not a dictionary", signing.ErrInvalid, r)
	}
	return m, nil
}

// arrayOf returns o (an array or a reference to one) as an array; null is empty.
func (d *document) arrayOf(o any) (array, error) {
	o, err := d.deref(o)
	if err != nil {
		return nil, err
	}
	switch a := o.(type) {
	case nil:
		return nil, nil
	case array:
		return a, nil
	}
	return nil, fmt.Errorf("%w: pades: %T where an array belongs", signing.ErrInvalid, o)
}

// dictOf returns o (a dictionary or a reference to one); null is nil.
func (d *document) dictOf(o any) (dict, error) {
	o, err := d.deref(o)
	if err != nil {
		return nil, err
	}
	switch m := o.(type) {
	case nil:
		return nil, nil
	case dict:
		return m, nil
	}
	return nil, fmt.Errorf("%w: pades: %T where a dictionary belongs", signing.ErrInvalid, o)
}

// page returns page n (1-based) of the page tree, by walking /Kids with /Count.
func (d *document) page(n int) (ref, dict, error) {
	cat, err := d.dictAt(d.root)
	if err != nil {
		return ref{}, nil, err
	}
	node, _ := cat["Pages"].(ref)
	seen := map[int]bool{}
	for depth := 0; depth < 64; depth++ {
		if seen[node.num] {
			return ref{}, nil, fmt.Errorf("%w: pades: the page tree has a loop", signing.ErrInvalid)
		}
		seen[node.num] = true
		m, err := d.dictAt(node)
		if err != nil {
			return ref{}, nil, err
		}
		if t, _ := m["Type"].(name); t == "Page" || m["Kids"] == nil {
			if n == 1 {
				return node, m, nil
			}
			return ref{}, nil, fmt.Errorf("%w: pades: page tree: a page where a subtree of %d pages belongs", signing.ErrInvalid, n)
		}
		kids, err := d.arrayOf(m["Kids"])
		if err != nil {
			return ref{}, nil, err
		}
		found := false
		for _, k := range kids {
			kr, ok := k.(ref)
			if !ok {
				return ref{}, nil, fmt.Errorf("%w: pades: page tree: a kid that is not a reference", signing.ErrInvalid)
			}
			km, err := d.dictAt(kr)
			if err != nil {
				return ref{}, nil, err
			}
			count := 1
			if t, _ := km["Type"].(name); t != "Page" && km["Kids"] != nil {
				c, _ := km["Count"].(int64)
				count = int(c)
			}
			if n <= count {
				node, found = kr, true
				break
			}
			n -= count
		}
		if !found {
			return ref{}, nil, fmt.Errorf("%w: pades: no such page", signing.ErrInvalid)
		}
	}
	return ref{}, nil, fmt.Errorf("%w: pades: the page tree is too deep", signing.ErrInvalid)
}

// pageCount is the catalog's /Pages /Count.
func (d *document) pageCount() (int, error) {
	cat, err := d.dictAt(d.root)
	if err != nil {
		return 0, err
	}
	pages, err := d.dictOf(cat["Pages"])
	if err != nil {
		return 0, err
	}
	c, _ := pages["Count"].(int64)
	return int(c), nil
}

// toModel converts a value read by digitorus/pdf into this package's objects, references
// kept as references (and remembered, for get). digitorus/pdf exposes its parsed values only
// as unexported types behind RawData, and its Key/Index accessors resolve references away,
// which would copy shared objects into the rewritten catalog; reading the raw values by
// reflection keeps them exact. Should that representation change, the tests here fail and
// Sign returns ErrInvalid, never a wrong object.
func (d *document) toModel(v pdf.Value) (any, error) {
	return d.convert(reflect.ValueOf(v.RawData()), 0)
}

func (d *document) convert(v reflect.Value, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("%w: pades: objects nested too deep", signing.ErrInvalid)
	}
	if !v.IsValid() {
		return nil, nil
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		return d.convert(v.Elem(), depth)
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.Int64:
		return v.Int(), nil
	case reflect.Float64:
		return v.Float(), nil
	case reflect.String:
		switch v.Type().Name() {
		case "name":
			return name(v.String()), nil
		case "string":
			return pdfStr(v.String()), nil
		}
	case reflect.Map:
		out := dict{}
		it := v.MapRange()
		for it.Next() {
			e, err := d.convert(it.Value(), depth+1)
			if err != nil {
				return nil, err
			}
			out[name(it.Key().String())] = e
		}
		return out, nil
	case reflect.Slice:
		out := make(array, v.Len())
		for i := range v.Len() {
			e, err := d.convert(v.Index(i), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case reflect.Struct:
		if v.Type().Name() == "objptr" && v.NumField() == 2 {
			r := ref{int(v.Field(0).Uint()), int(v.Field(1).Uint())}
			if _, ok := d.raws[r.num]; !ok && v.CanInterface() {
				d.raws[r.num] = v.Interface()
			}
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: pades: unexpected PDF value of type %s", signing.ErrInvalid, v.Type())
}

// catalog returns the newest version of the catalog.
func (d *document) catalog() (dict, error) { return d.dictAt(d.root) }
