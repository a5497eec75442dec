// Package asic writes ASiC-E containers (ETSI EN 319 162-1): a ZIP whose first entry is
// "mimetype" (stored, uncompressed, no extra field, no data descriptor, content
// application/vnd.etsi.asic-e+zip), then the data files in the order given (deflated), then
// META-INF/ with the signature. Two kinds:
//
//   - CAdES (WriteCAdES): META-INF/ASiCManifest.xml lists every data file with its digest
//     (the signer's digest algorithm, signing.HashFor) and MimeType, and names the signature
//     in its SigReference; META-INF/signature.p7s is a detached CAdES signature (cades.SignDigest)
//     over the manifest's exact bytes.
//   - XAdES (WriteXAdES): META-INF/signatures.xml is an asic:XAdESSignatures element holding
//     one detached XAdES signature, made by an XMLSigner, whose References name the data files
//     relative to the container's root.
//
// Data files are streamed: each is opened, copied into the ZIP and hashed in one pass and
// closed before the next is opened, so no more than one file is open and none is held in
// memory. The XAdES signer reads the files once more to sign them (before anything is written).
// A name must be a plain relative path: not empty, not absolute, no "." or ".." segment, no
// backslash, colon or control character, not under META-INF/ and not "mimetype", and no two
// alike (ignoring case, as the file systems the containers are opened on do); anything else is
// refused with signing.ErrInvalid before anything is written. After an error later on (a file
// that cannot be read, a key that does not sign) w holds a partial container, which the caller
// discards.
package asic

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
)

// MimeType is the content of the "mimetype" entry and the container's media type.
const MimeType = "application/vnd.etsi.asic-e+zip"

// Names of the META-INF entries.
const (
	ManifestName   = "META-INF/ASiCManifest.xml"
	CAdESSigName   = "META-INF/signature.p7s"
	XAdESSigName   = "META-INF/signatures.xml"
	asicNamespace  = "http://uri.etsi.org/02918/v1.2.1#"
	dsigNamespace  = "http://www.w3.org/2000/09/xmldsig#"
	defaultMime    = "application/octet-stream"
	p7sMimeType    = "application/pkcs7-signature"
	mimetypeHeader = "mimetype"
)

// File is one data file of a container.
type File struct {
	Name     string // its path in the container, e.g. "decision.pdf" or "annexes/a.xml"
	MimeType string // application/octet-stream when empty
	// Open opens the content; it is called once by WriteCAdES (twice by WriteXAdES: once by
	// the signer, once to copy the file in) and the reader is closed before the next file.
	Open func() (io.ReadCloser, error)
}

// XMLSigner makes the detached XAdES signature of a XAdES container.
type XMLSigner interface {
	// SignFiles returns an XML document whose root element is one ds:Signature: a detached
	// XAdES signature with a Reference to each file, whose URI is the file's Name
	// (percent-encoded), relative to the container's root. It opens each file through File.Open.
	// The signature MUST be canonicalized with exclusive C14N (as internal/signing/xades does),
	// so that it stays valid once wrapped in asic:XAdESSignatures.
	SignFiles(ctx context.Context, files []File) ([]byte, error)
}

// XMLSignerFunc lets a function be an XMLSigner (e.g. a closure over xades.SignFiles).
type XMLSignerFunc func(ctx context.Context, files []File) ([]byte, error)

var _ XMLSigner = XMLSignerFunc(nil)

// SignFiles calls f.
func (f XMLSignerFunc) SignFiles(ctx context.Context, files []File) ([]byte, error) {
	return f(ctx, files)
}

// WriteCAdES writes to w an ASiC-E container of files with a CAdES signature by s over the
// ASiCManifest. opts are the signature's (opts.Timestamper set: B-T; with opts.Revocation: B-LT;
// with opts.Archive: B-LTA, the archive timestamp inside the CAdES signature, which covers the
// manifest and so every file); opts.SigningTime, when set, is also the entries' modification
// time (else the entries carry none).
func WriteCAdES(ctx context.Context, w io.Writer, s signing.Signer, files []File, opts cades.Options) error {
	if err := checkFiles(files); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	hash, err := signing.HashFor(s.Key.Public())
	if err != nil {
		return err
	}
	digestURI, ok := digestMethods[hash]
	if !ok {
		return fmt.Errorf("%w: asic: digest %v", signing.ErrUnsupported, hash)
	}
	z, err := start(w, opts.SigningTime)
	if err != nil {
		return err
	}
	digests := make([][]byte, len(files))
	for i, f := range files {
		h := hash.New()
		if err := z.copyFile(f, h); err != nil {
			return err
		}
		digests[i] = h.Sum(nil)
	}
	manifest := buildManifest(files, digests, digestURI)
	h := hash.New()
	h.Write(manifest)
	sig, err := cades.SignDigest(ctx, s, h.Sum(nil), opts)
	if err != nil {
		return err
	}
	if err := z.add(ManifestName, manifest); err != nil {
		return err
	}
	if err := z.add(CAdESSigName, sig); err != nil {
		return err
	}
	return z.close()
}

// WriteXAdES writes to w an ASiC-E container of files with the XAdES signature xs makes over
// them. at, when not zero, is the entries' modification time.
func WriteXAdES(ctx context.Context, w io.Writer, xs XMLSigner, files []File, at time.Time) error {
	if err := checkFiles(files); err != nil {
		return err
	}
	if xs == nil {
		return fmt.Errorf("%w: asic: no XML signer", signing.ErrInvalid)
	}
	sig, err := xs.SignFiles(ctx, files)
	if err != nil {
		return err
	}
	doc, err := wrapXAdES(sig)
	if err != nil {
		return err
	}
	z, err := start(w, at)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := z.copyFile(f, io.Discard); err != nil {
			return err
		}
	}
	if err := z.add(XAdESSigName, doc); err != nil {
		return err
	}
	return z.close()
}

// digestMethods are the XML-DSig identifiers of the digests in the ASiCManifest.
var digestMethods = map[crypto.Hash]string{
	crypto.SHA256: "http://www.w3.org/2001/04/xmlenc#sha256",
	crypto.SHA384: "http://www.w3.org/2001/04/xmldsig-more#sha384",
	crypto.SHA512: "http://www.w3.org/2001/04/xmlenc#sha512",
}

// buildManifest is the ASiCManifest (EN 319 162-1 clause A.4) over the files. It is written by
// hand, not by encoding/xml's Marshal, because its bytes are what the CAdES signature covers:
// a fixed, simple layout is easy to check by eye and by xmllint.
func buildManifest(files []File, digests [][]byte, digestURI string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n")
	b.WriteString(`<asic:ASiCManifest xmlns:asic="` + asicNamespace + `" xmlns:ds="` + dsigNamespace + `">` + "\n")
	b.WriteString(`  <asic:SigReference URI="` + CAdESSigName + `" MimeType="` + p7sMimeType + `"/>` + "\n")
	for i, f := range files {
		b.WriteString(`  <asic:DataObjectReference URI="` + attr(uriOf(f.Name)) + `" MimeType="` + attr(mimeOf(f)) + `">` + "\n")
		b.WriteString(`    <ds:DigestMethod Algorithm="` + digestURI + `"/>` + "\n")
		b.WriteString(`    <ds:DigestValue>` + base64.StdEncoding.EncodeToString(digests[i]) + `</ds:DigestValue>` + "\n")
		b.WriteString(`  </asic:DataObjectReference>` + "\n")
	}
	b.WriteString(`</asic:ASiCManifest>` + "\n")
	return b.Bytes()
}

// wrapXAdES puts the ds:Signature document the signer returned inside asic:XAdESSignatures
// (EN 319 162-1 clause A.5), keeping the signature's bytes as they are. A document whose root
// already is asic:XAdESSignatures is kept whole.
func wrapXAdES(sig []byte) ([]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(sig))
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: asic: the XAdES signer gave no XML signature: %v", signing.ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case t.Name.Space == asicNamespace && t.Name.Local == "XAdESSignatures":
				return sig, nil
			case t.Name.Space == dsigNamespace && t.Name.Local == "Signature":
				var b bytes.Buffer
				b.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n")
				b.WriteString(`<asic:XAdESSignatures xmlns:asic="` + asicNamespace + `">`)
				b.Write(bytes.TrimSpace(sig[off:]))
				b.WriteString(`</asic:XAdESSignatures>` + "\n")
				return b.Bytes(), nil
			}
			return nil, fmt.Errorf("%w: asic: the XAdES signer's document has root {%s}%s, want ds:Signature", signing.ErrInvalid, t.Name.Space, t.Name.Local)
		case xml.Directive:
			return nil, fmt.Errorf("%w: asic: the XAdES signer's document has a DTD", signing.ErrInvalid)
		}
	}
}

// uriOf is a file's URI in the manifest: its relative path, percent-encoded.
func uriOf(name string) string { return (&url.URL{Path: name}).EscapedPath() }

func mimeOf(f File) string {
	if f.MimeType == "" {
		return defaultMime
	}
	return f.MimeType
}

// attr escapes s for an XML attribute value in double quotes.
func attr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// checkFiles refuses what cannot go safely into a container (see the package comment).
func checkFiles(files []File) error {
	if len(files) == 0 {
		return fmt.Errorf("%w: asic: no files", signing.ErrInvalid)
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := checkName(f.Name); err != nil {
			return err
		}
		if f.Open == nil {
			return fmt.Errorf("%w: asic: file %q has no content", signing.ErrInvalid, f.Name)
		}
		if strings.ContainsFunc(f.MimeType, func(r rune) bool { return r < 0x20 || r == 0x7f }) || !utf8.ValidString(f.MimeType) {
			return fmt.Errorf("%w: asic: file %q: MIME type %q", signing.ErrInvalid, f.Name, f.MimeType)
		}
		key := strings.ToLower(f.Name)
		if seen[key] {
			return fmt.Errorf("%w: asic: file name %q given twice", signing.ErrInvalid, f.Name)
		}
		seen[key] = true
	}
	return nil
}

// checkName checks one data file name.
func checkName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: asic: file name %q: %s", signing.ErrInvalid, name, why)
	}
	switch {
	case name == "":
		return bad("empty")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return bad("a control character")
	case strings.ContainsAny(name, `\:`):
		return bad("a backslash or colon")
	case strings.HasPrefix(name, "/"):
		return bad("absolute")
	case path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../"):
		return bad(`not a clean relative path (".", ".." or an empty segment)`)
	case strings.EqualFold(name, mimetypeHeader):
		return bad("the container's own mimetype entry")
	case strings.EqualFold(name, "META-INF") || strings.HasPrefix(strings.ToUpper(name), "META-INF/"):
		return bad("under META-INF/, which holds the signature")
	case len(name) > 0xffff:
		return bad("too long for ZIP")
	}
	return nil
}

// container is a ZIP being written.
type container struct {
	z  *zip.Writer
	at time.Time
}

// start writes the mimetype entry: stored, with its CRC and sizes in the local header (no data
// descriptor) and no extra field, so that the media type is at byte 38 where EN 319 162-1
// (clause A.1) and file(1) look for it. CreateRaw is the archive/zip call that writes such a
// header; it ignores FileHeader.Modified, so the DOS time fields are set here.
func start(w io.Writer, at time.Time) (*container, error) {
	c := &container{z: zip.NewWriter(w), at: at}
	fh := &zip.FileHeader{
		Name:               mimetypeHeader,
		Method:             zip.Store,
		CRC32:              crc32.ChecksumIEEE([]byte(MimeType)),
		CompressedSize64:   uint64(len(MimeType)),
		UncompressedSize64: uint64(len(MimeType)),
	}
	if !at.IsZero() {
		//lint:ignore SA1019 CreateRaw writes only these fields, not Modified (see above)
		fh.ModifiedDate, fh.ModifiedTime = dosTime(at)
	}
	fw, err := c.z.CreateRaw(fh)
	if err != nil {
		return nil, fmt.Errorf("asic: %w", err)
	}
	if _, err := io.WriteString(fw, MimeType); err != nil {
		return nil, fmt.Errorf("asic: %w", err)
	}
	return c, nil
}

// copyFile streams f into the container, deflated, and into h.
func (c *container) copyFile(f File, h io.Writer) error {
	fw, err := c.z.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: c.at})
	if err != nil {
		return fmt.Errorf("asic: %w", err)
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("asic: open %q: %w", f.Name, err)
	}
	_, err = io.Copy(io.MultiWriter(fw, h), rc)
	cerr := rc.Close()
	if err != nil {
		return fmt.Errorf("asic: copy %q: %w", f.Name, err)
	}
	if cerr != nil {
		return fmt.Errorf("asic: close %q: %w", f.Name, cerr)
	}
	return nil
}

// add writes a META-INF entry.
func (c *container) add(name string, b []byte) error {
	fw, err := c.z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: c.at})
	if err != nil {
		return fmt.Errorf("asic: %w", err)
	}
	if _, err := fw.Write(b); err != nil {
		return fmt.Errorf("asic: %w", err)
	}
	return nil
}

func (c *container) close() error {
	if err := c.z.Close(); err != nil {
		return fmt.Errorf("asic: %w", err)
	}
	return nil
}

// dosTime is t as MS-DOS date and time fields (two-second resolution, local wall time of t as
// given; years before 1980 are clamped to 1980).
func dosTime(t time.Time) (date, tm uint16) {
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, t.Location())
	}
	date = uint16(t.Day() + int(t.Month())<<5 + (t.Year()-1980)<<9)
	tm = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, tm
}

// Renewers renew the signature of a container: each takes the signature entry's bytes and
// returns them with one more archive timestamp (cades.AddArchiveTimestamp, xades.Renew).
type Renewers struct {
	CAdES func(ctx context.Context, p7s []byte) ([]byte, error)
	// XAdES gets the container's data files through open, by their names.
	XAdES func(ctx context.Context, doc []byte, open func(name string) (io.ReadCloser, error)) ([]byte, error)
}

// The bounds of a container renewal: the signature entry is read into memory; the data files
// are streamed (a detached XAdES signature is renewed over them).
const (
	maxSignatureEntry = 64 << 20
	maxRenewEntries   = 4096
	maxRenewTotal     = 1 << 30
)

// Renew writes to w the ASiC-E container read from r (size bytes) with its signature renewed
// by rn: META-INF/signature.p7s through rn.CAdES, META-INF/signatures.xml through rn.XAdES.
// Every other entry, the mimetype first, is copied as it is (compressed bytes and headers), so
// that the manifest and the data files the signature covers do not change. A container with
// neither signature, or with entries that are not plain relative names, is refused with
// signing.ErrInvalid.
func Renew(ctx context.Context, r io.ReaderAt, size int64, w io.Writer, rn Renewers) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("%w: asic: not a ZIP container: %v", signing.ErrInvalid, err)
	}
	if len(zr.File) == 0 || zr.File[0].Name != mimetypeHeader {
		return fmt.Errorf("%w: asic: the first entry is not mimetype", signing.ErrInvalid)
	}
	if len(zr.File) > maxRenewEntries {
		return fmt.Errorf("%w: asic: %d entries, the limit is %d", signing.ErrTooLarge, len(zr.File), maxRenewEntries)
	}
	var total uint64
	for _, f := range zr.File {
		// archive/zip stops a reader at the declared size, so this bounds what is read.
		if total += f.UncompressedSize64; total > maxRenewTotal || f.UncompressedSize64 > maxRenewTotal {
			return fmt.Errorf("%w: asic: the entries hold more than %d bytes uncompressed", signing.ErrTooLarge, uint64(maxRenewTotal))
		}
	}
	byName := map[string]*zip.File{}
	var sigEntry *zip.File
	for _, f := range zr.File {
		if f.Name != mimetypeHeader && !strings.HasPrefix(f.Name, "META-INF/") {
			if err := checkName(f.Name); err != nil {
				return err
			}
		}
		if byName[f.Name] != nil {
			return fmt.Errorf("%w: asic: entry %q twice", signing.ErrInvalid, f.Name)
		}
		byName[f.Name] = f
		if f.Name == CAdESSigName || f.Name == XAdESSigName {
			if sigEntry != nil {
				return fmt.Errorf("%w: asic: both a CAdES and a XAdES signature; Vula renews the containers it makes", signing.ErrUnsupported)
			}
			sigEntry = f
		}
	}
	if sigEntry == nil {
		return fmt.Errorf("%w: asic: no %s or %s to renew", signing.ErrInvalid, CAdESSigName, XAdESSigName)
	}
	sig, err := readZipEntry(sigEntry, maxSignatureEntry)
	if err != nil {
		return err
	}
	var renewed []byte
	if sigEntry.Name == CAdESSigName {
		renewed, err = rn.CAdES(ctx, sig)
	} else {
		open := func(name string) (io.ReadCloser, error) {
			f := byName[name]
			if f == nil || name == mimetypeHeader || strings.HasPrefix(name, "META-INF/") {
				return nil, fmt.Errorf("%w: asic: no data file %q in the container", signing.ErrInvalid, name)
			}
			return f.Open()
		}
		renewed, err = rn.XAdES(ctx, sig, open)
	}
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, f := range zr.File {
		if f == sigEntry {
			fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: f.Modified})
			if err != nil {
				return fmt.Errorf("asic: %w", err)
			}
			if _, err := fw.Write(renewed); err != nil {
				return fmt.Errorf("asic: %w", err)
			}
			continue
		}
		if err := zw.Copy(f); err != nil {
			return fmt.Errorf("%w: asic: entry %q: %v", signing.ErrInvalid, f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("asic: %w", err)
	}
	return nil
}

// readZipEntry reads an entry of at most max bytes.
func readZipEntry(f *zip.File, max int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: asic: entry %q: %v", signing.ErrInvalid, f.Name, err)
	}
	defer func() { _ = rc.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: asic: entry %q: %v", signing.ErrInvalid, f.Name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: asic: entry %q is over %d bytes", signing.ErrTooLarge, f.Name, max)
	}
	return b, nil
}
