// Package xades makes XAdES baseline signatures (ETSI EN 319 132-1) at levels B-B, B-T, B-LT and
// B-LTA, enveloped (the signature inside the root of an XML document), enveloping (the data inside
// the signature) or detached (the signature refers to files by name).
//
// The contract:
//   - SignedInfo is canonicalized with exclusive C14N 1.0 (no comments) and signed with
//     rsa-sha256 or ecdsa-sha256/384/512 (the digest from signing.HashFor); an ECDSA
//     SignatureValue is the raw r||s of XML-DSig, each half padded to the curve size.
//   - SignedInfo holds one Reference per signed data object and one, of Type
//     http://uri.etsi.org/01903#SignedProperties, to xades:SignedProperties (by Id), which carry
//     SigningTime, SigningCertificateV2 (CertDigest + IssuerSerialV2) and a DataObjectFormat with
//     the MimeType of every data Reference. KeyInfo carries the signer's certificate and chain.
//   - B-T adds a SignatureTimeStamp over the exclusive-canonicalized ds:SignatureValue; B-LT adds
//     CertificateValues (every certificate not already in KeyInfo, the TSA's included) and
//     RevocationValues (CRLs and OCSP responses from signing.Collect); B-LTA adds a
//     xadesv141:ArchiveTimeStamp whose input is built as EN 319 132-1 clause 5.5.2 defines it
//     (see archiveInput).
//   - Enveloping always carries the data base64-encoded in a ds:Object, referenced with the
//     base64 transform, so the Reference digest is over the exact bytes given, XML or not.
//   - XML input with a DOCTYPE (and so any entity declaration) is refused with signing.ErrInvalid
//     before it is parsed; no entity, external or internal, is ever resolved.
//
// The output is written without indentation, with attribute values and text escaped as
// canonical XML escapes them, so that what a verifier parses is what was canonicalized here.
package xades

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
)

// Packaging says where the signature stands to the data.
type Packaging string

const (
	Enveloped  Packaging = "enveloped"  // inside the root element of the signed XML document
	Enveloping Packaging = "enveloping" // the data inside the signature, in a ds:Object
	Detached   Packaging = "detached"   // the signature refers to the data by a relative URI
)

// Options says how to sign.
type Options struct {
	Level       signing.Level
	Packaging   Packaging
	Timestamper signing.Timestamper // from B-T on
	Revocation  signing.Revocation  // from B-LT on
	Time        time.Time           // SigningTime; time.Now() when zero
	// MimeType of the signed data in its DataObjectFormat: text/xml for enveloped, else as given,
	// application/octet-stream when empty.
	MimeType string
	FileName string // the detached Reference URI: a relative file name
	MaxSize  int64  // the most bytes read from the input (signing.ErrTooLarge above); 0 = no limit
}

// File is one file of a detached signature over several files.
type File struct {
	Name     string // its relative name, the Reference URI
	MimeType string // application/octet-stream when empty
	Open     func() (io.ReadCloser, error)
}

// Sign signs the document read from r and returns the signed XML document (enveloped,
// enveloping) or the detached signature document.
func Sign(ctx context.Context, r io.Reader, s signing.Signer, opts Options) ([]byte, error) {
	if err := check(s, &opts); err != nil {
		return nil, err
	}
	b, err := newBuilder(s, opts)
	if err != nil {
		return nil, err
	}
	switch opts.Packaging {
	case Enveloped:
		data, err := readAll(r, opts.MaxSize)
		if err != nil {
			return nil, err
		}
		doc, err := parseXML(data)
		if err != nil {
			return nil, err
		}
		if err := b.enveloped(doc); err != nil {
			return nil, err
		}
	case Enveloping:
		data, err := readAll(r, opts.MaxSize)
		if err != nil {
			return nil, err
		}
		b.enveloping(data, mimeOr(opts.MimeType))
	case Detached:
		if err := b.detached(File{Name: opts.FileName, MimeType: opts.MimeType}, r); err != nil {
			return nil, err
		}
	}
	return b.finish(ctx)
}

// SignFiles makes one detached signature over files, with a Reference to each by name, in the
// order given. Each file is opened and read once, streaming.
func SignFiles(ctx context.Context, files []File, s signing.Signer, opts Options) ([]byte, error) {
	opts.Packaging = Detached
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: xades: no files to sign", signing.ErrInvalid)
	}
	if err := check(s, &opts); err != nil {
		return nil, err
	}
	b, err := newBuilder(s, opts)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Open == nil {
			return nil, fmt.Errorf("%w: xades: file %q cannot be opened", signing.ErrInvalid, f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("xades: open %q: %w", f.Name, err)
		}
		err = b.detached(f, rc)
		_ = rc.Close() // read only
		if err != nil {
			return nil, err
		}
	}
	return b.finish(ctx)
}

// check validates what is asked before anything is read.
func check(s signing.Signer, opts *Options) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if opts.Level == "" {
		opts.Level = signing.LevelB
	}
	l, err := signing.ParseLevel(string(opts.Level))
	if err != nil {
		return fmt.Errorf("xades: %w", err)
	}
	opts.Level = l
	switch opts.Packaging {
	case Enveloped, Enveloping:
	case Detached:
		if opts.FileName != "" {
			if _, err := refURI(opts.FileName); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: xades: packaging %q (want enveloped, enveloping or detached)", signing.ErrInvalid, opts.Packaging)
	}
	if opts.Level.AtLeast(signing.LevelT) && opts.Timestamper == nil {
		return fmt.Errorf("%w: xades: level %s needs a timestamp authority", signing.ErrInvalid, opts.Level)
	}
	if opts.Level.AtLeast(signing.LevelLT) && opts.Revocation == nil {
		return fmt.Errorf("%w: xades: level %s needs a source of revocation data", signing.ErrInvalid, opts.Level)
	}
	if opts.MaxSize < 0 {
		return fmt.Errorf("%w: xades: negative MaxSize", signing.ErrInvalid)
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	return nil
}

// refURI makes the Reference URI of a detached file: a relative path, percent-encoded.
func refURI(name string) (string, error) {
	bad := name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") ||
		strings.Contains(name, ":") || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f })
	if bad {
		return "", fmt.Errorf("%w: xades: file name %q is not a plain relative name", signing.ErrInvalid, name)
	}
	return (&url.URL{Path: name}).EscapedPath(), nil
}

func mimeOr(m string) string {
	if m == "" {
		return "application/octet-stream"
	}
	return m
}

// readAll reads r whole, refusing more than max bytes (0 = no limit).
func readAll(r io.Reader, max int64) ([]byte, error) {
	if max > 0 {
		r = io.LimitReader(r, max+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("xades: read the input: %w", err)
	}
	if max > 0 && int64(len(data)) > max {
		return nil, fmt.Errorf("%w: xades: the input is above %d bytes", signing.ErrTooLarge, max)
	}
	return data, nil
}

// copyHashed streams r into the writers, refusing more than max bytes in all (0 = no limit).
func copyHashed(r io.Reader, max int64, read *int64, w ...io.Writer) error {
	lr := r
	if max > 0 {
		lr = io.LimitReader(r, max-*read+1)
	}
	n, err := io.Copy(io.MultiWriter(w...), lr)
	*read += n
	if err != nil {
		return fmt.Errorf("xades: read the input: %w", err)
	}
	if max > 0 && *read > max {
		return fmt.Errorf("%w: xades: the input is above %d bytes", signing.ErrTooLarge, max)
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func digest(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}

var errNoRoot = errors.New("no root element")

// writeDoc serializes doc the way canonical XML escapes text and attribute values, so that a
// parser reads back the very values that were canonicalized (a literal newline in an attribute
// would otherwise be normalized to a space).
func writeDoc(doc *etree.Document) ([]byte, error) {
	doc.WriteSettings = etree.WriteSettings{CanonicalAttrVal: true, CanonicalText: true}
	return doc.WriteToBytes()
}
