package pades

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/pdfsafe"
	"github.com/vula-eid/vula/internal/validation/core"
)

// laterUpdates describes the revisions after the one a signature covers and checks that they
// only add what PAdES lets come after a signature: validation data (DSS), document
// timestamps and further signatures with their fields and widgets. Anything else — a page's
// content, resources or annotations, the catalog's other entries, a form field's value —
// means the document shown is not the document signed (the incremental saving attack), and
// the check fails with FORMAT_FAILURE: the signature's own bytes still verify, but the PDF
// around it is not what the signer approved (see the package documentation).
func laterUpdates(sr *core.SignatureReport, data io.ReaderAt, size, end int64, ends []int64, sigs []pdfSig) {
	if sr.CoversWholeDocument {
		sr.Pass("modifications", "the signature covers the whole document: no later update")
		return
	}
	for i, e := range ends {
		if e <= end {
			continue
		}
		what := "other changes"
		for _, s := range sigs {
			if len(s.byteRange) == 4 && s.byteRange[2]+s.byteRange[3] == e {
				what = "a signature (" + s.field + ")"
				if s.typ == "DocTimeStamp" {
					what = "a document timestamp (" + s.field + ")"
				}
			}
		}
		prev := end
		if i > 0 {
			prev = max(prev, ends[i-1])
		}
		if what == "other changes" && findFrom(data, prev, e, reDSS) >= 0 {
			what = "validation data (DSS)"
		}
		sr.LaterUpdates = append(sr.LaterUpdates, fmt.Sprintf("revision %d: %s", i+1, what))
	}
	if e := ends; len(e) > 0 && e[len(e)-1] < size {
		if b, err := blank(data, e[len(e)-1], size, " \t\r\n\v\f"); err != nil || !b {
			sr.LaterUpdates = append(sr.LaterUpdates, "bytes after the last %%EOF")
		}
	}
	problems, notes, err := diffRevisions(io.NewSectionReader(data, 0, end), data, size)
	sr.LaterUpdates = append(sr.LaterUpdates, notes...)
	switch {
	case err != nil:
		sr.Fail("modifications", core.FormatFailure, "the revisions after the signed one could not be compared with it: %v", err)
	case len(problems) > 0:
		sr.Fail("modifications", core.FormatFailure, "the document was modified after signing: %s", joinMax(problems, 5))
	default:
		sr.Pass("modifications", "the later updates add only validation data, document timestamps and signatures%s", allowedNote(notes))
	}
}

func joinMax(list []string, n int) string {
	if len(list) > n {
		list = append(slices.Clone(list[:n]), fmt.Sprintf("and %d more", len(list)-n))
	}
	var b bytes.Buffer
	for i, s := range list {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
	}
	return b.String()
}

var errTooComplex = errors.New("too many objects to compare")

// diffRevisions compares the signed revision with the whole document and lists the changes
// that are not allowed after a signature (problems) and the allowed ones worth telling a
// relying party (notes: form fields filled in, annotations under DocMDP P=3).
//
// What may change follows the certification's DocMDP P (ISO 32000-1 §12.8.2.2) and the FieldMDP
// locks of the signatures in the signed revision (§12.8.2.4): with no certification or P=2 or 3,
// a form field not locked may be filled in — its /V (or a button's /AS) changed, with its
// appearance (/AP) — and signatures added; P=3 also lets annotations other than widgets be
// added, changed or removed; P=1 permits nothing but validation data and document timestamps.
// An appearance changed without a new value is not filling in (a shadow attack's overlay).
func diffRevisions(signed *io.SectionReader, whole io.ReaderAt, size int64) (problems, notes []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed PDF: %v", p)
		}
	}()
	rs, err := pdfsafe.Open(signed, signed.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("the signed revision does not open on its own: %v", err)
	}
	rw, err := pdfsafe.Open(whole, size)
	if err != nil {
		return nil, nil, err
	}
	c := &comparer{budget: 200000, bytesLeft: maxCompared, seen: map[[2]any]bool{}}
	catS, catW := rs.Trailer().Key("Root"), rw.Trailer().Key("Root")
	p := docMDP(catS)
	locks := fieldLocks(catS)
	// The catalog: everything but the DSS, the AcroForm (compared below) and the page tree
	// (compared page by page) must be as signed.
	for _, k := range union(catS.Keys(), catW.Keys()) {
		switch k {
		case "DSS", "AcroForm", "Pages":
			continue
		}
		if !c.equal(catS.Key(k), catW.Key(k)) {
			problems = append(problems, "the catalog's /"+k+" changed")
		}
	}
	// mayFill tells whether the field named name may be filled in, and else why not.
	mayFill := func(name string) (bool, string) {
		if p == 1 {
			return false, "on a document certified with no changes permitted (DocMDP P=1)"
		}
		if by := locks(name); by != "" {
			return false, fmt.Sprintf("locked by the FieldMDP of signature field %q", by)
		}
		return true, ""
	}
	// fill tells whether a field or widget (of the field named name) may have been filled in
	// from a to b, and else why not. The value may be the widget's or its parent field's.
	fill := func(a, b pdf.Value, name string) (bool, string) {
		if !c.equalExcept(a, b, "P", "Parent", "V", "AS", "AP") {
			return false, "beyond its value and appearance"
		}
		if c.equal(inherited(a, "V"), inherited(b, "V")) && c.equal(a.Key("AS"), b.Key("AS")) {
			return false, "its appearance without its value"
		}
		return mayFill(name)
	}
	ps, pw := pages(catS.Key("Pages")), pages(catW.Key("Pages"))
	if len(ps) != len(pw) {
		problems = append(problems, fmt.Sprintf("the page count changed from %d to %d", len(ps), len(pw)))
	} else {
		if k := c.changedKeys(catS.Key("Pages"), catW.Key("Pages"), "Kids", "Count", "Parent"); len(k) > 0 {
			problems = append(problems, "the page tree's inherited attributes changed: "+keyList(k))
		}
		for i := range ps {
			if k := c.changedKeys(ps[i], pw[i], "Annots", "Parent"); len(k) > 0 {
				problems = append(problems, fmt.Sprintf("page %d changed: %s", i+1, keyList(k)))
			}
			as, aw := ps[i].Key("Annots"), pw[i].Key("Annots")
			if aw.Len() < as.Len() {
				if p == 3 {
					notes = append(notes, fmt.Sprintf("page %d: annotations removed (DocMDP P=3 permits it)", i+1))
				} else {
					problems = append(problems, fmt.Sprintf("page %d lost annotations", i+1))
				}
				continue
			}
			for j := range as.Len() {
				a, b := as.Index(j), aw.Index(j)
				if c.equalExcept(a, b, "P", "Parent") {
					continue
				}
				switch name := fieldName(b); {
				case a.Key("Subtype").Name() == "Widget" && name != "":
					if ok, why := fill(a, b, name); !ok {
						problems = append(problems, fmt.Sprintf("the widget of form field %q on page %d changed %s", name, i+1, why))
					}
				case p == 3 && a.Key("Subtype").Name() != "Widget" && b.Key("Subtype").Name() != "Widget":
					notes = append(notes, fmt.Sprintf("page %d: annotation %d changed (DocMDP P=3 permits it)", i+1, j+1))
				default:
					problems = append(problems, fmt.Sprintf("annotation %d (/%s) of page %d changed", j+1, a.Key("Subtype").Name(), i+1))
				}
			}
			for j := as.Len(); j < aw.Len(); j++ {
				a := aw.Index(j)
				switch {
				case isSigWidget(a):
				case p == 3 && a.Key("Subtype").Name() != "Widget":
					notes = append(notes, fmt.Sprintf("page %d: a new /%s annotation (DocMDP P=3 permits it)", i+1, a.Key("Subtype").Name()))
				default:
					problems = append(problems, fmt.Sprintf("page %d has a new /%s annotation that is not a signature widget", i+1, a.Key("Subtype").Name()))
				}
			}
		}
	}
	// The form: every field as signed, except that an empty signature field may get signed and
	// a field may be filled in (above); new fields only for signatures.
	fs, fw := catS.Key("AcroForm"), catW.Key("AcroForm")
	if k := c.changedKeys(fs, fw, "Fields", "SigFlags", "NeedAppearances"); len(k) > 0 && fs.Kind() != pdf.Null {
		problems = append(problems, "the form's attributes changed: "+keyList(k))
	}
	// A later signer may clear /NeedAppearances (Vula's signer does, so that poppler keeps its
	// seal): the viewer then shows the appearances as they were signed. Setting it is a change.
	switch was, is := fs.Key("NeedAppearances").Kind() == pdf.Bool && fs.Key("NeedAppearances").Bool(),
		fw.Key("NeedAppearances").Kind() == pdf.Bool && fw.Key("NeedAppearances").Bool(); {
	case was && !is:
		notes = append(notes, "the form's /NeedAppearances was cleared (the fields show their signed appearances)")
	case !was && is:
		problems = append(problems, "the form's attributes changed: /NeedAppearances was set")
	}
	var walk func(a, b pdf.Value, name string, depth int)
	walk = func(a, b pdf.Value, name string, depth int) {
		if t := a.Key("T"); t.Kind() == pdf.String {
			if name != "" {
				name += "."
			}
			name += t.Text()
		}
		if ka, kb := a.Key("Kids"), b.Key("Kids"); ka.Kind() == pdf.Array && depth < 32 {
			if ka.Len() != kb.Len() || !c.equalExcept(a, b, "Kids", "P", "Parent", "V") {
				problems = append(problems, fmt.Sprintf("form field %q changed", name))
				return
			}
			for i := range ka.Len() {
				walk(ka.Index(i), kb.Index(i), name, depth+1)
			}
			if !c.equal(a.Key("V"), b.Key("V")) {
				if ok, why := mayFill(name); ok {
					notes = append(notes, fmt.Sprintf("form field %q filled in", name))
				} else {
					problems = append(problems, fmt.Sprintf("form field %q changed %s", name, why))
				}
			}
			return
		}
		switch {
		case c.equalExcept(a, b, "P", "Parent"):
		case a.Key("FT").Name() == "Sig" && a.Key("V").IsNull():
			if !c.equalExcept(a, b, "V", "P", "Parent") {
				problems = append(problems, fmt.Sprintf("signature field %q changed", name))
			}
		case a.Key("FT").Name() == "Sig" || fieldType(a) == "Sig":
			problems = append(problems, fmt.Sprintf("signature field %q changed", name))
		default:
			if ok, why := fill(a, b, name); ok {
				notes = append(notes, fmt.Sprintf("form field %q filled in", name))
			} else {
				problems = append(problems, fmt.Sprintf("form field %q changed %s", name, why))
			}
		}
	}
	ls, lw := fs.Key("Fields"), fw.Key("Fields")
	if lw.Len() < ls.Len() {
		problems = append(problems, "form fields were removed")
	} else {
		for j := range ls.Len() {
			walk(ls.Index(j), lw.Index(j), "", 0)
		}
		for j := ls.Len(); j < lw.Len(); j++ {
			f := lw.Index(j)
			switch {
			case f.Key("FT").Name() != "Sig":
				problems = append(problems, fmt.Sprintf("a new form field %q that is not a signature field", f.Key("T").Text()))
			case p == 1 && f.Key("V").Key("Type").Name() != "DocTimeStamp":
				// P=1 permits no change but validation data and document timestamps.
				problems = append(problems, fmt.Sprintf("a new signature %q on a document certified with no changes permitted (DocMDP P=1)", f.Key("T").Text()))
			}
		}
	}
	if c.budget < 0 {
		return nil, nil, errTooComplex
	}
	return problems, notes, nil
}

// fieldName is the fully qualified name of the field a widget belongs to ("" when it is none).
func fieldName(w pdf.Value) string {
	var parts []string
	for f, i := w, 0; f.Kind() == pdf.Dict && i < 32; f, i = f.Key("Parent"), i+1 {
		if t := f.Key("T"); t.Kind() == pdf.String {
			parts = append([]string{t.Text()}, parts...)
		}
	}
	return strings.Join(parts, ".")
}

// inherited is a field's entry key, its own or its nearest ancestor's.
func inherited(f pdf.Value, key string) pdf.Value {
	for i := 0; f.Kind() == pdf.Dict && i < 32; f, i = f.Key("Parent"), i+1 {
		if v := f.Key(key); v.Kind() != pdf.Null {
			return v
		}
	}
	return pdf.Value{}
}

// fieldType is a field's /FT, inherited from its ancestors.
func fieldType(f pdf.Value) string {
	for i := 0; f.Kind() == pdf.Dict && i < 32; f, i = f.Key("Parent"), i+1 {
		if ft := f.Key("FT"); ft.Kind() == pdf.Name {
			return ft.Name()
		}
	}
	return ""
}

// fieldLocks reads the FieldMDP locks of the signed signatures of a revision: the /Reference
// FieldMDP transforms of their signature dictionaries (what was signed) and their fields' /Lock
// dictionaries. It returns a function naming the signature field that locks a field ("": none).
func fieldLocks(cat pdf.Value) func(string) string {
	type lock struct {
		by     string
		action string
		fields []string
	}
	var locks []lock
	read := func(by string, d pdf.Value) {
		if d.Kind() != pdf.Dict {
			return
		}
		l := lock{by: by, action: d.Key("Action").Name()}
		fl := d.Key("Fields")
		for i := range min(fl.Len(), 1000) {
			l.fields = append(l.fields, fl.Index(i).Text())
		}
		locks = append(locks, l)
	}
	fields := cat.Key("AcroForm").Key("Fields")
	for i := range min(fields.Len(), 1000) {
		f := fields.Index(i)
		if f.Key("FT").Name() != "Sig" || f.Key("V").Kind() != pdf.Dict {
			continue
		}
		by := f.Key("T").Text()
		read(by, f.Key("Lock"))
		refs := f.Key("V").Key("Reference")
		for j := range min(refs.Len(), 16) {
			if r := refs.Index(j); r.Key("TransformMethod").Name() == "FieldMDP" {
				read(by, r.Key("TransformParams"))
			}
		}
	}
	return func(name string) string {
		for _, l := range locks {
			listed := slices.ContainsFunc(l.fields, func(f string) bool { return f == name || strings.HasPrefix(name, f+".") })
			switch {
			case l.action == "All", l.action == "Include" && listed, l.action == "Exclude" && !listed:
				return l.by
			}
		}
		return ""
	}
}

// changedKeys lists the keys of a and b whose values differ (skip aside); a stream's data
// counts as the key "stream data", a value of another kind as "its kind".
func (c *comparer) changedKeys(a, b pdf.Value, skip ...string) []string {
	if a.Kind() != b.Kind() {
		return []string{"its kind"}
	}
	if a.Kind() != pdf.Dict && a.Kind() != pdf.Stream {
		if c.equal(a, b) {
			return nil
		}
		return []string{"its value"}
	}
	var out []string
	for _, k := range union(a.Keys(), b.Keys()) {
		if !slices.Contains(skip, k) && !c.equal(a.Key(k), b.Key(k)) {
			out = append(out, "/"+k)
		}
	}
	if a.Kind() == pdf.Stream && !c.sameData(a, b) {
		out = append(out, "stream data")
	}
	return out
}

func keyList(k []string) string {
	return joinMax(k, 5) + " differ from the signed revision"
}

func isSigWidget(a pdf.Value) bool {
	return a.Key("Subtype").Name() == "Widget" && (a.Key("FT").Name() == "Sig" || a.Key("Parent").Key("FT").Name() == "Sig")
}

// pages lists the leaves of a page tree, in order.
func pages(root pdf.Value) []pdf.Value {
	var out []pdf.Value
	var walk func(n pdf.Value, depth int)
	walk = func(n pdf.Value, depth int) {
		if depth > 64 || len(out) > 100000 || n.Kind() != pdf.Dict {
			return
		}
		if n.Key("Type").Name() == "Pages" || n.Key("Kids").Kind() == pdf.Array {
			kids := n.Key("Kids")
			for i := range kids.Len() {
				walk(kids.Index(i), depth+1)
			}
			return
		}
		out = append(out, n)
	}
	walk(root, 0)
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, k := range b {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// comparer deep-compares values of two readers: dictionaries key by key, arrays element by
// element, streams by their decoded data. Back-pointers (/Parent, /P) are not followed;
// indirect objects are compared once per pair; the budget bounds the work.
type comparer struct {
	budget    int
	bytesLeft int64 // of decoded stream data, both sides: a flate bomb must not stall a validation
	seen      map[[2]any]bool
}

// maxCompared bounds the decoded stream bytes one comparison reads; past it the revisions are
// "too complex to compare", which fails the signature rather than passing it unchecked.
const maxCompared = 512 << 20

func (c *comparer) equalExcept(a, b pdf.Value, skip ...string) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	if a.Kind() != pdf.Dict && a.Kind() != pdf.Stream {
		return c.equal(a, b)
	}
	for _, k := range union(a.Keys(), b.Keys()) {
		if slices.Contains(skip, k) {
			continue
		}
		if !c.equal(a.Key(k), b.Key(k)) {
			return false
		}
	}
	if a.Kind() == pdf.Stream {
		return c.sameData(a, b)
	}
	return true
}

func (c *comparer) equal(a, b pdf.Value) bool {
	return c.eq(a, b, nil, nil, 0)
}

func (c *comparer) eq(a, b pdf.Value, pa, pb any, depth int) bool {
	if c.budget--; c.budget < 0 || depth > 100 {
		return false
	}
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case pdf.Dict, pdf.Stream, pdf.Array:
	default:
		return a.String() == b.String() && a.RawString() == b.RawString()
	}
	// An indirect object (its pointer differs from its container's): compared once per pair.
	key := [2]any{a.GetPtr(), b.GetPtr()}
	if depth > 0 && (a.GetPtr() != pa || b.GetPtr() != pb) {
		if c.seen[key] {
			return true
		}
		c.seen[key] = true
	}
	if a.Kind() == pdf.Array {
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !c.eq(a.Index(i), b.Index(i), a.GetPtr(), b.GetPtr(), depth+1) {
				return false
			}
		}
		return true
	}
	ka, kb := a.Keys(), b.Keys()
	if !slices.Equal(ka, kb) {
		return false
	}
	for _, k := range ka {
		if k == "Parent" || k == "P" {
			continue
		}
		if !c.eq(a.Key(k), b.Key(k), a.GetPtr(), b.GetPtr(), depth+1) {
			return false
		}
	}
	if a.Kind() == pdf.Stream {
		return c.sameData(a, b)
	}
	return true
}

// sameData compares decoded stream data a chunk at a time (a page's content may be most of
// the file); a stream that cannot be decoded is not equal to anything (a filter this reader
// lacks must not hide a change).
func (c *comparer) sameData(a, b pdf.Value) bool {
	if a.Kind() != pdf.Stream || b.Kind() != pdf.Stream {
		return false
	}
	ra, err := pdfsafe.Reader(a)
	if err != nil {
		return false
	}
	defer func() { _ = ra.Close() }() // read only
	rb, err := pdfsafe.Reader(b)
	if err != nil {
		return false
	}
	defer func() { _ = rb.Close() }() // read only
	const chunk = 64 << 10
	x, y := make([]byte, chunk), make([]byte, chunk)
	for {
		if c.bytesLeft <= 0 {
			c.budget = -1 // too much to compare: the revisions count as too complex
			return false
		}
		n, err1 := io.ReadFull(ra, x)
		m, err2 := io.ReadFull(rb, y)
		c.bytesLeft -= int64(n + m)
		if n != m || !bytes.Equal(x[:n], y[:m]) {
			return false
		}
		done1 := err1 == io.EOF || err1 == io.ErrUnexpectedEOF
		done2 := err2 == io.EOF || err2 == io.ErrUnexpectedEOF
		switch {
		case done1 && done2:
			return true
		case err1 != nil && !done1, err2 != nil && !done2, done1 != done2:
			return false
		}
	}
}

// docMDP is the P of the certification signature's DocMDP transform (2 when absent, 0 when the
// document is not certified). The certification signature is the catalog's /Perms /DocMDP;
// a signature field whose dictionary has a DocMDP reference counts too, since some signers
// (pdfsign) write no /Perms.
func docMDP(cat pdf.Value) int64 {
	sigs := []pdf.Value{cat.Key("Perms").Key("DocMDP")}
	fields := cat.Key("AcroForm").Key("Fields")
	for i := range min(fields.Len(), 1000) {
		sigs = append(sigs, fields.Index(i).Key("V"))
	}
	for _, sig := range sigs {
		if sig.Kind() != pdf.Dict {
			continue
		}
		refs := sig.Key("Reference")
		for i := range min(refs.Len(), 16) {
			r := refs.Index(i)
			if r.Key("TransformMethod").Name() != "DocMDP" {
				continue
			}
			if p := r.Key("TransformParams").Key("P"); p.Kind() == pdf.Integer {
				return p.Int64()
			}
			return 2
		}
	}
	return 0
}

func allowedNote(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return ", and changes the certification and FieldMDP permit: " + joinMax(notes, 5)
}
