// Package pades signs PDF documents at the PAdES baseline levels of ETSI EN 319 142-1:
// B-B, B-T, B-LT and B-LTA.
//
// Sign appends to a PDF one signature as an incremental update: the original bytes are copied
// through unchanged, so earlier signatures stay valid. The signature dictionary has
// /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached, the time in /M and a /Contents that
// holds a detached CMS (internal/signing/cades) with content-type, message-digest and
// signing-certificate-v2 and no signing-time. At B-T the CMS carries a signature timestamp; at
// B-LT a second update adds the Document Security Store (/DSS with /Certs, /OCSPs, /CRLs and a
// /VRI entry for the signature); at B-LTA a third adds a document timestamp
// (/Type /DocTimeStamp, /SubFilter /ETSI.RFC3161) over everything before it. The signature is
// an approval signature, or a certification one (DocMDP, P=2); invisible, or visible on a
// page with text and an optional image.
//
// The contract: Sign reads the input as it goes (an io.ReaderAt: only the cross-reference
// sections and the few objects it rewrites are parsed) and holds only its updates in memory.
// The key signs exactly once per signature: /Contents is sized from cades.MaxSize before
// signing, never retried. Nothing is written to w unless every signature and timestamp has
// been made; then w gets the complete file in one pass. Bad input is an error wrapping
// signing.ErrInvalid (not a PDF, truncated, broken cross-reference data), ErrUnsupported
// (encrypted, a certified document that permits no change) or ErrTooLarge.
//
// Why not github.com/digitorus/pdfsign for the writing: its SignPDF builds the CMS itself
// (PKCS #7 with signingTime, /SubFilter /adbe.pkcs7.detached, which is not PAdES baseline),
// keeps the whole output in memory, takes a timestamp authority only by URL, writes no DSS,
// rebuilds the AcroForm with only its signature fields, and re-signs when its size estimate
// is short (../shared/TRAPS.md). The incremental-update writer here is small; the reading is
// github.com/digitorus/pdf, the reader pdfsign uses.
package pades

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
)

// Options says how to sign.
type Options struct {
	Level       signing.Level
	Timestamper signing.Timestamper // needed from B-T on
	Revocation  signing.Revocation  // needed from B-LT on
	// Certify makes a certification signature (DocMDP, P=2: form filling and signing allowed)
	// instead of an approval one. Only the first signature of a document can certify.
	Certify bool
	// CertifyFirst certifies a document no one has signed yet and adds an approval signature
	// to one already signed: what a signer that leaves the choice to the service (CSC's default
	// signed_envelope_property, Certification) can mean for a document others signed before.
	CertifyFirst bool
	// Reason, Location, ContactInfo and Name go in the signature dictionary when not empty.
	Reason, Location, ContactInfo, Name string
	Time                                time.Time   // /M; time.Now() when zero
	Visible                             *Appearance // nil: invisible (a /Rect [0 0 0 0] widget on page 1)
	MaxSize                             int64       // inputs above it: signing.ErrTooLarge; 0 = no limit
	// InputSHA256, when not nil, is a SHA-256 hash that has read the whole input (the caller
	// hashed it for a record of its own): a signature whose hash is SHA-256 goes on from a
	// clone of it instead of reading and hashing the input again. It is not checked: the
	// caller MUST have fed it exactly the size bytes of r.
	InputSHA256 hash.Hash
}

// Appearance is a visible signature.
type Appearance struct {
	Page  int        // 1-based
	Rect  [4]float64 // llx lly urx ury, in points of the page's user space
	Text  string     // lines; empty: signer, date and reason
	Image []byte     // optional PNG or JPEG, drawn at the left of the text
}

// Sign writes to w the PDF read from r (size bytes) with one more signature by s, at
// opts.Level. It reads r as it goes and never holds the document in memory.
func Sign(ctx context.Context, r io.ReaderAt, size int64, w io.Writer, s signing.Signer, opts Options) error {
	if opts.MaxSize > 0 && size > opts.MaxSize {
		return fmt.Errorf("%w: pades: the PDF has %d bytes, the limit is %d", signing.ErrTooLarge, size, opts.MaxSize)
	}
	if size <= 0 {
		return fmt.Errorf("%w: pades: not a PDF (empty)", signing.ErrInvalid)
	}
	level := opts.Level
	if level == "" {
		level = signing.LevelB
	}
	if _, err := signing.ParseLevel(string(level)); err != nil {
		return err
	}
	if level.AtLeast(signing.LevelT) && opts.Timestamper == nil {
		return fmt.Errorf("%w: pades: level %s needs a timestamper", signing.ErrInvalid, level)
	}
	if level.AtLeast(signing.LevelLT) && opts.Revocation == nil {
		return fmt.Errorf("%w: pades: level %s needs a source of revocation data", signing.ErrInvalid, level)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	sigHash, err := signing.HashFor(s.Key.Public())
	if err != nil {
		return err
	}
	when := opts.Time
	if when.IsZero() {
		when = time.Now()
	}

	// The original is hashed once, with each digest a signature here needs (the updates go on
	// clones of these states), in the background while its structure is read and the update
	// built: with a second core the fixed cost of a signature hides behind the hash.
	var hSig hash.Hash
	var original *hashJob
	if opts.InputSHA256 != nil && sigHash == crypto.SHA256 {
		hSig, original = clone(opts.InputSHA256), hashed()
	} else {
		hSig = sigHash.New()
	}
	hDoc := hSig
	hashers := []io.Writer{hSig}
	if level == signing.LevelLTA && sigHash != crypto.SHA256 {
		hDoc = sha256.New()
		hashers = append(hashers, hDoc)
		if opts.InputSHA256 != nil {
			hDoc = clone(opts.InputSHA256)
			hashers = hashers[:1]
		}
	}
	if original == nil {
		original = hashInBackground(r, size, io.MultiWriter(hashers...))
	}
	defer original.cancel()

	d, err := openDocument(r, size)
	if err != nil {
		return err
	}
	certify := opts.Certify
	if opts.CertifyFirst && !certify {
		signed, err := d.signed()
		if err != nil {
			return err
		}
		certify = !signed
	}
	if err := d.checkPermissions(certify); err != nil {
		return err
	}

	// Update 1: the signature.
	rec := &recorder{ts: opts.Timestamper}
	copts := cades.Options{}
	if level.AtLeast(signing.LevelT) {
		copts.Timestamper = rec
	}
	maxCMS, err := cades.MaxSize(s, copts)
	if err != nil {
		return err
	}
	u1 := d.newUpdate(size, !d.endsInEOL)
	m := dict{"Type": name("Sig"), "Filter": name("Adobe.PPKLite"), "SubFilter": name("ETSI.CAdES.detached"),
		"M": text(pdfDate(when))}
	for k, v := range map[name]string{"Reason": opts.Reason, "Location": opts.Location, "ContactInfo": opts.ContactInfo, "Name": opts.Name} {
		if v != "" {
			m[k] = text(v)
		}
	}
	field := sigField{sig: m, contents: maxCMS, prefix: "Signature", certify: certify, page: 1}
	if a := opts.Visible; a != nil {
		if field.page, err = d.checkAppearance(a); err != nil {
			return err
		}
		field.rect = a.Rect
		field.lines = appearanceLines(a, s.Cert, opts, when)
		field.image = a.Image
	}
	p1, err := u1.addSignature(field)
	if err != nil {
		return err
	}
	u1.finish()
	u1.byteRange(p1)
	if err := original.wait(); err != nil {
		return fmt.Errorf("pades: reading the PDF: %w", err)
	}
	h := clone(hSig)
	h.Write(u1.buf.Bytes()[:p1.cStart])
	h.Write(u1.buf.Bytes()[p1.cEnd:])
	cms, err := cades.SignDigest(ctx, s, h.Sum(nil), copts)
	if err != nil {
		return fmt.Errorf("pades: %w", err)
	}
	if err := u1.fillContents(p1, cms); err != nil {
		return err
	}
	updates := []*update{u1}

	if level.AtLeast(signing.LevelLT) {
		// Update 2: the DSS, with what the signature and its timestamp need.
		chains := [][]*x509.Certificate{append([]*x509.Certificate{s.Cert}, s.Chain...)}
		if rec.token != nil {
			tc, err := signing.TokenCerts(rec.token)
			if err != nil {
				return err
			}
			chains = append(chains, tc)
		}
		vd, err := signing.Collect(ctx, opts.Revocation, chains...)
		if err != nil {
			return fmt.Errorf("pades: validation data: %w", err)
		}
		u2 := d.newUpdate(u1.end(), false)
		if err := u2.addDSS(vd, vriKey(cms)); err != nil {
			return err
		}
		u2.finish()
		updates = append(updates, u2)

		if level == signing.LevelLTA {
			u3, token, err := d.docTimestamp(ctx, u2.end(), hDoc, updates, opts.Timestamper, rec)
			if err != nil {
				return err
			}
			updates = append(updates, u3)
			// The document timestamp's TSA joins the DSS when the signature's data lacks it.
			tc, err := signing.TokenCerts(token)
			if err != nil {
				return err
			}
			if !covered(vd, tc) {
				u4, err := d.timestampDSS(ctx, opts.Revocation, token, tc, u3.end())
				if err != nil {
					return err
				}
				updates = append(updates, u4)
			}
		}
	}

	return writeUpdated(ctx, w, r, size, updates)
}

// end is the offset in the output just after u.
func (u *update) end() int64 { return u.base + int64(u.buf.Len()) }

// docTimestamp builds the update with a document timestamp over the output so far (the
// original, hashed into hDoc, and the updates) and returns it with its token.
func (d *document) docTimestamp(ctx context.Context, base int64, hDoc hash.Hash, before []*update, ts signing.Timestamper, rec *recorder) (*update, []byte, error) {
	return d.docTimestampAfter(ctx, base, hDoc, before, ts, rec, false)
}

// docTimestampAfter is docTimestamp with an end of line first when the update directly
// follows an original that does not end in one (renewal of such a file).
func (d *document) docTimestampAfter(ctx context.Context, base int64, hDoc hash.Hash, before []*update, ts signing.Timestamper, rec *recorder, leadingEOL bool) (*update, []byte, error) {
	n := cades.DefaultTokenReserve
	if m, ok := ts.(cades.MaxTokenSizer); ok {
		n = m.MaxTokenSize()
	} else if rec.token != nil {
		// The same TSA made the signature timestamp: its token is the size of this one
		// give or take a few bytes of serial, time and signature value.
		n = len(rec.token) + 1024
	}
	u := d.newUpdate(base, leadingEOL)
	m := dict{"Type": name("DocTimeStamp"), "Filter": name("Adobe.PPKLite"), "SubFilter": name("ETSI.RFC3161")}
	p, err := u.addSignature(sigField{sig: m, contents: n, prefix: "DocTimeStamp", page: 1})
	if err != nil {
		return nil, nil, err
	}
	u.finish()
	u.byteRange(p)
	h := clone(hDoc)
	for _, b := range before {
		h.Write(b.buf.Bytes())
	}
	h.Write(u.buf.Bytes()[:p.cStart])
	h.Write(u.buf.Bytes()[p.cEnd:])
	token, err := ts.Timestamp(ctx, crypto.SHA256, h.Sum(nil))
	if err != nil {
		return nil, nil, fmt.Errorf("pades: document timestamp: %w", err)
	}
	if err := u.fillContents(p, token); err != nil {
		return nil, nil, err
	}
	return u, token, nil
}

// checkPermissions refuses what the document's earlier signatures forbid.
func (d *document) checkPermissions(certify bool) error {
	cert, err := d.certification()
	if err != nil {
		return err
	}
	if cert != nil {
		if certify {
			return fmt.Errorf("%w: pades: the document is already certified; only the first signature can certify", signing.ErrUnsupported)
		}
		if p, err := d.docMDPPermission(cert); err != nil {
			return err
		} else if p == 1 {
			return fmt.Errorf("%w: pades: the document is certified with no changes permitted (DocMDP P=1)", signing.ErrUnsupported)
		}
	}
	if certify {
		signed, err := d.signed()
		if err != nil {
			return err
		}
		if signed {
			return fmt.Errorf("%w: pades: the document is already signed; a certification signature must be the first", signing.ErrUnsupported)
		}
	}
	return nil
}

// certification is the certifying signature (a reference to its dictionary): the catalog's
// /Perms /DocMDP, or else a signature whose /Reference has the DocMDP transform — some signers
// (digitorus/pdfsign) write only that, and validators (poppler, Vula's) honour it. nil when the
// document is not certified.
func (d *document) certification() (any, error) {
	cat, err := d.catalog()
	if err != nil {
		return nil, err
	}
	perms, err := d.dictOf(cat["Perms"])
	if err != nil {
		return nil, err
	}
	if perms != nil && perms["DocMDP"] != nil {
		return perms["DocMDP"], nil
	}
	fields, err := d.fields()
	if err != nil {
		return nil, err
	}
	for _, f := range fields {
		if t, _ := f["FT"].(name); t != "Sig" || f["V"] == nil {
			continue
		}
		sig, err := d.dictOf(f["V"])
		if err != nil {
			return nil, err
		}
		refs, err := d.arrayOf(sig["Reference"])
		if err != nil {
			return nil, err
		}
		for _, x := range refs {
			sr, err := d.dictOf(x)
			if err != nil {
				return nil, err
			}
			if m, _ := sr["TransformMethod"].(name); m == "DocMDP" {
				return f["V"], nil
			}
		}
	}
	return nil, nil
}

// signed reports whether a signature field of the document holds a signature.
func (d *document) signed() (bool, error) {
	fields, err := d.fields()
	if err != nil {
		return false, err
	}
	for _, f := range fields {
		if t, _ := f["FT"].(name); t == "Sig" && f["V"] != nil {
			return true, nil
		}
	}
	return false, nil
}

func (d *document) docMDPPermission(sigRef any) (int64, error) {
	sig, err := d.dictOf(sigRef)
	if err != nil {
		return 0, err
	}
	refs, err := d.arrayOf(sig["Reference"])
	if err != nil {
		return 0, err
	}
	for _, x := range refs {
		sr, err := d.dictOf(x)
		if err != nil {
			return 0, err
		}
		if m, _ := sr["TransformMethod"].(name); m != "DocMDP" {
			continue
		}
		tp, err := d.dictOf(sr["TransformParams"])
		if err != nil {
			return 0, err
		}
		if p, ok := tp["P"].(int64); ok {
			return p, nil
		}
		return 2, nil // the default
	}
	return 2, nil
}

// fields returns the AcroForm's top-level fields.
func (d *document) fields() ([]dict, error) {
	cat, err := d.catalog()
	if err != nil {
		return nil, err
	}
	acro, err := d.dictOf(cat["AcroForm"])
	if err != nil {
		return nil, err
	}
	list, err := d.arrayOf(acro["Fields"])
	if err != nil {
		return nil, err
	}
	var out []dict
	for _, x := range list {
		f, err := d.dictOf(x)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// sigField is a signature field to add: its signature dictionary (less /ByteRange and
// /Contents), room for contents bytes, and where and how it shows.
type sigField struct {
	sig      dict
	contents int
	prefix   string // of the field's name: Signature1, DocTimeStamp1, ...
	certify  bool
	page     int
	rect     [4]float64 // zero: invisible
	lines    []string
	image    []byte
}

// addSignature writes the signature dictionary, its field and widget, the page with the
// widget among its /Annots, the AcroForm with the field appended to its /Fields (every
// existing field kept) and, when the AcroForm was not its own object or the signature
// certifies, the catalog.
func (u *update) addSignature(f sigField) (placeholder, error) {
	d := u.d
	existing, err := d.fields()
	if err != nil {
		return placeholder{}, err
	}
	names := map[string]bool{}
	for _, x := range existing {
		switch t := x["T"].(type) {
		case pdfStr:
			names[string(t)] = true
		case text:
			names[string(t)] = true
		}
	}
	fieldName := ""
	for i := 1; ; i++ {
		if fieldName = fmt.Sprintf("%s%d", f.prefix, i); !names[fieldName] {
			break
		}
	}
	sigRef, widgetRef := u.alloc(), u.alloc()

	pageRef, page, err := d.page(f.page)
	if err != nil {
		return placeholder{}, err
	}
	page = maps.Clone(page)
	annots, err := d.arrayOf(page["Annots"])
	if err != nil {
		return placeholder{}, err
	}
	page["Annots"] = append(slices.Clone(annots), widgetRef)
	u.put(pageRef, page)

	cat, err := d.catalog()
	if err != nil {
		return placeholder{}, err
	}
	cat = maps.Clone(cat)
	catChanged := false
	acro, err := d.dictOf(cat["AcroForm"])
	if err != nil {
		return placeholder{}, err
	}
	acro = maps.Clone(acro)
	if acro == nil {
		acro = dict{}
	}
	fields, err := d.arrayOf(acro["Fields"])
	if err != nil {
		return placeholder{}, err
	}
	acro["Fields"] = append(slices.Clone(fields), widgetRef)
	acro["SigFlags"] = 3 // signatures exist; append only
	// /NeedAppearances true asks the viewer to redraw every field, and poppler redraws a
	// signature widget without its appearance (the seal vanishes). A signed form's looks
	// should not be left to the viewer anyway (PDF 2.0 deprecates the flag), so it goes, as
	// other signers clear it; poppler and Ghostscript still draw a field that has no
	// appearance (TestAppearanceNeedAppearances). The validator reports the cleared flag.
	delete(acro, "NeedAppearances")
	acroRef, ok := cat["AcroForm"].(ref)
	if !ok {
		acroRef = u.alloc()
		cat["AcroForm"] = acroRef
		catChanged = true
	}
	u.put(acroRef, acro)

	if f.certify {
		f.sig = maps.Clone(f.sig)
		f.sig["Reference"] = array{dict{"Type": name("SigRef"), "TransformMethod": name("DocMDP"),
			"TransformParams": dict{"Type": name("TransformParams"), "P": 2, "V": name("1.2")}}}
		cat["Perms"] = dict{"DocMDP": sigRef}
		catChanged = true
	}
	if catChanged {
		u.put(d.root, cat)
	}

	ap, err := u.appearance(f)
	if err != nil {
		return placeholder{}, err
	}
	u.put(widgetRef, dict{"Type": name("Annot"), "Subtype": name("Widget"), "FT": name("Sig"),
		"T": text(fieldName), "V": sigRef, "F": 132, "P": pageRef, // 132: print, locked
		"Rect": array{f.rect[0], f.rect[1], f.rect[2], f.rect[3]}, "AP": dict{"N": ap}})
	return u.putSig(sigRef, f.sig, f.contents), nil
}

// addDSS writes the DSS with vd added (what an earlier DSS holds is kept) and a VRI entry
// under key for the signature vd belongs to, and the catalog pointing at it.
func (u *update) addDSS(vd signing.ValidationData, key string) error {
	d := u.d
	cat, err := d.catalog()
	if err != nil {
		return err
	}
	cat = maps.Clone(cat)
	dss, err := d.dictOf(cat["DSS"])
	if err != nil {
		return err
	}
	dss = maps.Clone(dss)
	if dss == nil {
		dss = dict{}
	}
	vri, err := d.dictOf(dss["VRI"])
	if err != nil {
		return err
	}
	vri = maps.Clone(vri)
	if vri == nil {
		vri = dict{}
	}
	entry := dict{}
	add := func(key name, vriKey name, items [][]byte) error {
		old, err := d.arrayOf(dss[key])
		if err != nil {
			return err
		}
		list := slices.Clone(old)
		var mine array
		for _, b := range items {
			r := u.alloc()
			u.putStream(r, stream{data: b})
			list = append(list, r)
			mine = append(mine, r)
		}
		if len(list) > 0 {
			dss[key] = list
		}
		if len(mine) > 0 {
			entry[vriKey] = mine
		}
		return nil
	}
	var certs [][]byte
	for _, c := range vd.Certs {
		certs = append(certs, c.Raw)
	}
	if err := add("Certs", "Cert", certs); err != nil {
		return err
	}
	if err := add("OCSPs", "OCSP", vd.OCSPs); err != nil {
		return err
	}
	if err := add("CRLs", "CRL", vd.CRLs); err != nil {
		return err
	}
	vri[name(key)] = entry
	dss["VRI"] = vri
	dss["Type"] = name("DSS")
	dssRef, ok := cat["DSS"].(ref)
	if !ok {
		dssRef = u.alloc()
		cat["DSS"] = dssRef
	}
	u.put(dssRef, dss)
	u.put(d.root, cat)
	return nil
}

// vriKey names a signature in the VRI: the upper-case hex SHA-1 of its /Contents (the CMS or
// the token DER, without the padding).
func vriKey(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// covered reports whether vd already holds every certificate of chain.
func covered(vd signing.ValidationData, chain []*x509.Certificate) bool {
	for _, c := range chain {
		if !slices.ContainsFunc(vd.Certs, c.Equal) {
			return false
		}
	}
	return true
}

// hashJob is the original being hashed by a goroutine of its own.
type hashJob struct {
	stop atomic.Bool
	done chan struct{}
	err  error
}

// hashInBackground writes the size bytes of r to w, in a new goroutine when the input is
// large enough for the overlap to pay (ReadAt may be called in parallel: io.ReaderAt's
// contract, so the document is read meanwhile). A small input is hashed at once: a goroutine
// would save nothing there, and this keeps the fuzzer's coverage of small inputs free of
// scheduling noise.
func hashInBackground(r io.ReaderAt, size int64, w io.Writer) *hashJob {
	j := &hashJob{done: make(chan struct{})}
	if size < backgroundHashMin {
		j.run(r, size, w)
	} else {
		go j.run(r, size, w)
	}
	return j
}

// hashed is the job of an input hashed already (Options.InputSHA256).
func hashed() *hashJob {
	j := &hashJob{done: make(chan struct{})}
	close(j.done)
	return j
}

// backgroundHashMin is where hashing (about 0.2 ms for 256 KB here) outweighs a signature's
// fixed cost of reading the document and building the update.
const backgroundHashMin = 256 << 10

func (j *hashJob) run(r io.ReaderAt, size int64, w io.Writer) {
	defer close(j.done)
	buf := make([]byte, min(size, 32<<10))
	for off := int64(0); off < size; {
		if j.stop.Load() {
			j.err = errors.New("stopped")
			return
		}
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		_, _ = w.Write(buf[:n]) // hashes never fail
		off += int64(n)
		switch {
		case err == io.EOF && off == size:
		case err == io.EOF:
			j.err = io.ErrUnexpectedEOF
			return
		case err != nil:
			j.err = err
			return
		case n == 0:
			j.err = io.ErrNoProgress
			return
		}
	}
}

// wait returns once the whole input is hashed, with the read error if any.
func (j *hashJob) wait() error {
	<-j.done
	return j.err
}

// cancel stops the hashing if it still runs and waits for the goroutine: nothing reads r
// after Sign returns.
func (j *hashJob) cancel() {
	j.stop.Store(true)
	<-j.done
}

func clone(h hash.Hash) hash.Hash {
	c, err := h.(hash.Cloner).Clone()
	if err != nil {
		panic(err) // the standard library's hashes always clone
	}
	return c
}

// pdfDate formats t as a PDF date: D:YYYYMMDDHHmmSS+HH'mm'.
func pdfDate(t time.Time) string {
	s := t.Format("D:20060102150405")
	_, off := t.Zone()
	if off == 0 {
		return s + "Z"
	}
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("%s%c%02d'%02d'", s, sign, off/3600, off%3600/60)
}

// recorder passes timestamps through and keeps the last token: the DSS needs the chain of
// the TSA that timestamped the signature.
type recorder struct {
	ts    signing.Timestamper
	token []byte
}

var (
	_ signing.Timestamper = (*recorder)(nil)
	_ cades.MaxTokenSizer = (*recorder)(nil)
)

func (r *recorder) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	t, err := r.ts.Timestamp(ctx, h, digest)
	if err == nil {
		r.token = bytes.Clone(t)
	}
	return t, err
}

func (r *recorder) MaxTokenSize() int {
	if m, ok := r.ts.(cades.MaxTokenSizer); ok {
		return m.MaxTokenSize()
	}
	return cades.DefaultTokenReserve
}

// writeUpdated writes the PDF (r, size) followed by its incremental updates, unless ctx ended.
func writeUpdated(ctx context.Context, w io.Writer, r io.ReaderAt, size int64, updates []*update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := io.Copy(w, io.NewSectionReader(r, 0, size)); err != nil {
		return fmt.Errorf("pades: writing the PDF: %w", err)
	}
	for _, u := range updates {
		if _, err := w.Write(u.buf.Bytes()); err != nil {
			return fmt.Errorf("pades: writing the PDF: %w", err)
		}
	}
	return nil
}

// timestampDSS is the update, after offset base, that adds the validation data of a document
// timestamp's TSA (its certificates tc) to the DSS, so the timestamp validates offline at once.
func (d *document) timestampDSS(ctx context.Context, rev signing.Revocation, token []byte, tc []*x509.Certificate, base int64) (*update, error) {
	vd, err := signing.Collect(ctx, rev, tc)
	if err != nil {
		return nil, fmt.Errorf("pades: validation data of the document timestamp: %w", err)
	}
	u := d.newUpdate(base, false)
	if err := u.addDSS(vd, vriKey(token)); err != nil {
		return nil, err
	}
	u.finish()
	return u, nil
}
