package asic

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation/cades"
	"github.com/vula-eid/vula/internal/validation/core"
	"github.com/vula-eid/vula/internal/validation/xmlsig"
)

// ASiC-E containers (EN 319 162-1) are validated thus:
//
//   - The ZIP's first entry is "mimetype", stored, holding application/vnd.etsi.asic-e+zip;
//     anything else is not an ASiC-E container (ErrInvalid; ASiC-S is ErrUnsupported).
//   - Every entry name must be a clean relative UTF-8 path (no "..", no leading "/", no
//     backslash, colon or control character) and no two may differ only in case; the container
//     has at most maxASiCEntries entries and at most maxASiCTotal bytes uncompressed, as the
//     entries declare (archive/zip refuses to read past a declared size). Else ErrInvalid /
//     ErrTooLarge before any signature is looked at.
//   - XAdES: each META-INF/*signatures*.xml is an asic:XAdESSignatures whose ds:Signature
//     References name data entries by URI, relative to the container's root.
//   - CAdES: each META-INF/*ASiCManifest*.xml names its signature (SigReference) and lists
//     DataObjectReferences with digests; the CAdES signature is detached over the manifest's
//     exact bytes, and each listed digest must match its entry (else HASH_FAILURE).
//   - The rule for what is signed: a data entry (outside META-INF/ and not mimetype) is
//     covered by a signature when a Reference or a DataObjectReference of it verified. The
//     report lists every entry with the signatures covering it, and the container's conclusion
//     is TOTAL-FAILED (FORMAT_FAILURE) when a data entry is covered by none: a file added after
//     signing, or never signed, must not ride on the others' signatures. EN 319 162-1 lets a
//     container hold unsigned files; a relying party that accepts them reads the entries.

const (
	nsASiC         = "http://uri.etsi.org/02918/v1.2.1#"
	asicEMime      = "application/vnd.etsi.asic-e+zip"
	maxASiCEntries = 4096
	maxASiCTotal   = 1 << 30
)

// Validate validates an ASiC-E container.
func Validate(v *core.Validator, data []byte, rep *core.Report) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: validation: ASiC-E: %s", signing.ErrInvalid, fmt.Sprintf(format, args...))
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return bad("not a readable ZIP: %v", err)
	}
	if len(zr.File) > maxASiCEntries {
		return fmt.Errorf("%w: validation: ASiC-E: %d entries, the limit is %d", signing.ErrTooLarge, len(zr.File), maxASiCEntries)
	}
	if len(zr.File) == 0 || zr.File[0].Name != "mimetype" {
		return bad(`the first entry is not "mimetype"`)
	}
	mt := zr.File[0]
	if mt.Method != zip.Store || mt.UncompressedSize64 > 256 {
		return bad(`"mimetype" is not stored uncompressed`)
	}
	mb, err := readEntry(mt, 256)
	if err != nil {
		return bad("mimetype: %v", err)
	}
	switch string(mb) {
	case asicEMime:
	case "application/vnd.etsi.asic-s+zip":
		return fmt.Errorf("%w: validation: ASiC-S containers are not validated", signing.ErrUnsupported)
	default:
		return bad("mimetype %q is not %s", mb, asicEMime)
	}

	var total uint64
	seen := map[string]bool{}
	files := map[string]*zip.File{}
	index := map[string]int{} // name -> rep.Entries index
	for _, f := range zr.File {
		if err := entryName(f.Name); err != nil {
			return bad("%v", err)
		}
		key := strings.ToLower(f.Name)
		if seen[key] {
			return bad("entry %q appears twice (names are compared ignoring case)", f.Name)
		}
		seen[key] = true
		if f.Flags&0x1 != 0 {
			return fmt.Errorf("%w: validation: ASiC-E: entry %q is encrypted", signing.ErrUnsupported, f.Name)
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			return fmt.Errorf("%w: validation: ASiC-E: entry %q uses compression method %d", signing.ErrUnsupported, f.Name, f.Method)
		}
		if total += f.UncompressedSize64; total > maxASiCTotal || f.UncompressedSize64 > maxASiCTotal {
			return fmt.Errorf("%w: validation: ASiC-E: the entries hold more than %d bytes uncompressed", signing.ErrTooLarge, maxASiCTotal)
		}
		if strings.HasSuffix(f.Name, "/") {
			continue // a directory
		}
		files[f.Name] = f
		index[f.Name] = len(rep.Entries)
		rep.Entries = append(rep.Entries, core.ContainerEntry{Name: f.Name, Size: int64(f.UncompressedSize64), Kind: entryKind(f.Name)})
	}
	cover := func(name, sigID string) {
		if i, ok := index[name]; ok && rep.Entries[i].Kind == "data" {
			rep.Entries[i].SignedBy = append(rep.Entries[i].SignedBy, sigID)
		}
	}
	det := func(name string) (xmlsig.Detached, bool) {
		f, ok := files[name]
		if !ok || entryKind(name) != "data" {
			return xmlsig.Detached{}, false
		}
		return xmlsig.Detached{Target: "entry:" + name, Size: int64(f.UncompressedSize64), Open: func() (io.Reader, error) { return f.Open() }}, true
	}
	// Each entry may be digested by a manifest, a Reference and an archive timestamp.
	work := xmlsig.NewWorkBudget(int64(total))

	n := 0
	for _, e := range rep.Entries {
		switch {
		case e.Kind == "signature" && strings.HasSuffix(strings.ToLower(e.Name), ".xml"):
			b, err := readEntry(files[e.Name], xmlsig.MaxSize)
			if err != nil {
				return bad("%s: %v", e.Name, err)
			}
			doc, err := xmlsig.Parse(b)
			if err != nil {
				return fmt.Errorf("validation: ASiC-E %s: %w", e.Name, err)
			}
			if !xmlsig.Is(doc.Root(), nsASiC, "XAdESSignatures") {
				return bad("%s is not an asic:XAdESSignatures", e.Name)
			}
			x := xmlsig.NewDoc(doc, work)
			for _, sig := range xmlsig.Children(doc.Root(), xmlsig.NSDS, "Signature") {
				if n++; n > xmlsig.MaxSignatures {
					return fmt.Errorf("%w: validation: ASiC-E: more than %d signatures", signing.ErrTooLarge, xmlsig.MaxSignatures)
				}
				s := xmlsig.Signature(v, sig, x, det, fmt.Sprintf("sig%d", n))
				s.Info("container", "in %s", e.Name)
				for _, o := range s.SignedObjects {
					cover(strings.TrimPrefix(o.Target, "entry:"), s.ID)
				}
				rep.Signatures = append(rep.Signatures, s)
			}
		case e.Kind == "manifest":
			if n++; n > xmlsig.MaxSignatures {
				return fmt.Errorf("%w: validation: ASiC-E: more than %d signatures", signing.ErrTooLarge, xmlsig.MaxSignatures)
			}
			s, covered, err := asicManifest(v, files, e.Name, fmt.Sprintf("sig%d", n), work)
			if err != nil {
				return err
			}
			for _, c := range covered {
				cover(c, s.ID)
			}
			rep.Signatures = append(rep.Signatures, s)
		}
	}
	if len(rep.Signatures) == 0 {
		return bad("no signature in META-INF/ (signatures*.xml, or an ASiCManifest*.xml with its CAdES signature)")
	}
	return nil
}

// entryKind sorts an entry: mimetype, data, signature, manifest, metadata.
func entryKind(name string) string {
	switch {
	case name == "mimetype":
		return "mimetype"
	case !strings.HasPrefix(name, "META-INF/"):
		return "data"
	}
	base := strings.ToLower(path.Base(name))
	switch {
	case strings.Contains(base, "asicmanifest") && strings.HasSuffix(base, ".xml"):
		return "manifest"
	case strings.Contains(base, "signatures") && strings.HasSuffix(base, ".xml"), strings.HasSuffix(base, ".p7s"):
		return "signature"
	}
	return "metadata"
}

// entryName refuses a name that is not a clean relative path. The rule is asic's (the signer
// refuses the same names), written again here because a reader must also take META-INF/
// entries and directories, which the signer's check refuses as data files.
func entryName(name string) error {
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return errors.New("an entry with an empty name")
	case !utf8.ValidString(name):
		return fmt.Errorf("entry name %q is not UTF-8", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("entry name %q has a control character", name)
	case strings.ContainsAny(name, `\:`):
		return fmt.Errorf("entry name %q has a backslash or colon", name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("entry name %q is absolute", name)
	case path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../"):
		return fmt.Errorf(`entry name %q is not a clean relative path (".", ".." or an empty segment)`, name)
	}
	return nil
}

// readEntry reads an entry whole, at most max bytes.
func readEntry(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, fmt.Errorf("%w: the entry has %d bytes, the limit is %d", signing.ErrTooLarge, f.UncompressedSize64, max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: the entry is above %d bytes", signing.ErrTooLarge, max)
	}
	return b, nil
}

// asicManifest validates the CAdES signature an ASiCManifest names and the manifest's
// digests; it returns the report and the data entries whose digest matched.
func asicManifest(v *core.Validator, files map[string]*zip.File, name, id string, work *xmlsig.WorkBudget) (core.SignatureReport, []string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: validation: ASiC-E %s: %s", signing.ErrInvalid, name, fmt.Sprintf(format, args...))
	}
	s := core.SignatureReport{ID: id, Kind: "signature", Format: "CAdES-BASELINE"}
	manifest, err := readEntry(files[name], xmlsig.MaxSize)
	if err != nil {
		return s, nil, bad("%v", err)
	}
	doc, err := xmlsig.Parse(manifest)
	if err != nil {
		return s, nil, fmt.Errorf("validation: ASiC-E %s: %w", name, err)
	}
	root := doc.Root()
	if !xmlsig.Is(root, nsASiC, "ASiCManifest") {
		return s, nil, bad("not an asic:ASiCManifest")
	}
	s.Info("container", "manifest %s", name)
	sr := xmlsig.Only(root, nsASiC, "SigReference")
	if sr == nil {
		s.Fail("format", core.FormatFailure, "the manifest has no single SigReference")
		s.Conclude()
		return s, nil, nil
	}
	sigName, err := url.PathUnescape(sr.SelectAttrValue("URI", ""))
	sf, ok := files[sigName]
	if err != nil || !ok || entryKind(sigName) != "signature" {
		s.Indeterminate("format", core.SignedDataNotFound, "SigReference %q names no signature entry of the container", sr.SelectAttrValue("URI", ""))
		s.Conclude()
		return s, nil, nil
	}
	der, err := readEntry(sf, xmlsig.MaxSize)
	if err != nil {
		return s, nil, bad("%s: %v", sigName, err)
	}
	p, err := cades.Parse(der)
	if err != nil {
		s.Fail("format", core.FormatFailure, "%s: %v", sigName, err)
		s.Conclude()
		return s, nil, nil
	}
	if _, ok := p.Attrs[cms.OIDSigningCertV2.String()]; !ok {
		s.Format = "CMS"
	}
	s.Pass("format", "detached CMS %s over %s", sigName, name)

	// The manifest's digests, checked before the signature so that the report lists them.
	var covered []string
	for _, ref := range xmlsig.Children(root, nsASiC, "DataObjectReference") {
		uri := ref.SelectAttrValue("URI", "")
		obj := core.SignedObject{URI: uri}
		entry, err := url.PathUnescape(uri)
		f, ok := files[entry]
		if err != nil || !ok || entryKind(entry) != "data" {
			s.Indeterminate("manifest-reference", core.SignedDataNotFound, "DataObjectReference %q names no data entry of the container", uri)
			continue
		}
		obj.Target = "entry:" + entry
		dm, dv := xmlsig.Only(ref, xmlsig.NSDS, "DigestMethod"), xmlsig.Only(ref, xmlsig.NSDS, "DigestValue")
		if dm == nil || dv == nil {
			s.Fail("manifest-reference", core.FormatFailure, "DataObjectReference %q has no single DigestMethod and DigestValue", uri)
			continue
		}
		h, ok := xmlsig.DigestOf(dm.SelectAttrValue("Algorithm", ""))
		want, derr := xmlsig.DecodeBase64(dv.Text())
		if !ok || derr != nil {
			s.Fail("manifest-reference", core.FormatFailure, "DataObjectReference %q: digest %q, or a DigestValue that is not base64", uri, dm.SelectAttrValue("Algorithm", ""))
			continue
		}
		if err := work.Spend(int64(f.UncompressedSize64)); err != nil {
			s.Fail("manifest-reference", core.FormatFailure, "DataObjectReference %q: %v", uri, err)
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return s, nil, bad("%s: %v", entry, err)
		}
		hh := h.New()
		_, err = io.Copy(hh, rc)
		_ = rc.Close() // read only
		if err != nil {
			return s, nil, bad("%s: %v", entry, err)
		}
		if !bytes.Equal(hh.Sum(nil), want) {
			s.Fail("manifest-reference", core.HashFailure, "the %v digest of %s is not the manifest's", h, entry)
			continue
		}
		s.Pass("manifest-reference", "%s: the %v digest matches", entry, h)
		s.SignedObjects = append(s.SignedObjects, obj)
		covered = append(covered, entry)
	}
	cades.LongTerm(v, &s, p, der, cades.BytesImprint(manifest), s.Format == "CAdES-BASELINE")
	return s, covered, nil
}
