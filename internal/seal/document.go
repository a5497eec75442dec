package seal

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/store"
)

// Format is a signature format the service makes.
type Format string

const (
	PAdES     Format = "pades"       // a signed PDF
	XAdES     Format = "xades"       // signed XML (enveloped, enveloping or detached)
	CAdES     Format = "cades"       // a detached CMS signature (.p7s) over any file
	ASiCCAdES Format = "asice"       // an ASiC-E container with a CAdES signature over its files
	ASiCXAdES Format = "asice-xades" // an ASiC-E container with a XAdES signature over its files
)

// Params are the options of a seal request.
type Params struct {
	Format    Format
	Level     signing.Level
	Packaging xades.Packaging // XAdES only; enveloped when empty
	// PAdES only.
	Certify          bool
	Reason, Location string
	Visible          *pades.Appearance
}

// ParseParams reads the options from query-style values (the API's query string, the CLI's
// flags): format, level, packaging, certify, reason, location, and for a visible PAdES seal
// page, rect (llx,lly,urx,ury in points) and text.
func ParseParams(get func(string) string) (Params, error) {
	p := Params{Format: Format(strings.ToLower(get("format")))}
	if p.Format == "" {
		p.Format = PAdES
	}
	switch p.Format {
	case PAdES, XAdES, CAdES, ASiCCAdES, ASiCXAdES:
	default:
		return p, fmt.Errorf("%w: format %q (want pades, xades, cades, asice or asice-xades)", signing.ErrInvalid, get("format"))
	}
	// B-LT by default for every format: a seal that carries its validation data verifies
	// offline (vula verify) and after its certificates expire.
	p.Level = signing.LevelLT
	if l := get("level"); l != "" {
		var err error
		if p.Level, err = signing.ParseLevel(l); err != nil {
			return p, err
		}
	}
	switch pk := xades.Packaging(strings.ToLower(get("packaging"))); pk {
	case "", "enveloped", "enveloping", "detached":
		if p.Format == XAdES {
			p.Packaging = pk
			if pk == "" {
				p.Packaging = "enveloped"
			}
		} else if pk != "" {
			return p, fmt.Errorf("%w: packaging is for xades only", signing.ErrInvalid)
		}
	default:
		return p, fmt.Errorf("%w: packaging %q (want enveloped, enveloping or detached)", signing.ErrInvalid, pk)
	}
	var err error
	if c := get("certify"); c != "" {
		if p.Certify, err = strconv.ParseBool(c); err != nil {
			return p, fmt.Errorf("%w: certify %q (want true or false)", signing.ErrInvalid, c)
		}
	}
	p.Reason, p.Location = get("reason"), get("location")
	if len(p.Reason) > 256 || len(p.Location) > 256 {
		return p, fmt.Errorf("%w: reason and location are at most 256 bytes", signing.ErrInvalid)
	}
	if rect, page, text := get("rect"), get("page"), get("text"); rect != "" || page != "" || text != "" {
		if p.Format != PAdES {
			return p, fmt.Errorf("%w: a visible seal is for pades only", signing.ErrInvalid)
		}
		if err := pades.CheckText(text); err != nil {
			return p, err
		}
		a := &pades.Appearance{Page: 1, Text: text}
		if page != "" {
			if a.Page, err = strconv.Atoi(page); err != nil || a.Page < 1 {
				return p, fmt.Errorf("%w: page %q (want a page number from 1)", signing.ErrInvalid, page)
			}
		}
		if rect == "" {
			rect = "36,36,286,106"
		}
		parts := strings.Split(rect, ",")
		if len(parts) != 4 {
			return p, fmt.Errorf("%w: rect %q (want llx,lly,urx,ury)", signing.ErrInvalid, rect)
		}
		for i, s := range parts {
			if a.Rect[i], err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
				return p, fmt.Errorf("%w: rect %q (want four numbers)", signing.ErrInvalid, rect)
			}
		}
		if a.Rect[2] <= a.Rect[0] || a.Rect[3] <= a.Rect[1] {
			return p, fmt.Errorf("%w: rect %q is empty", signing.ErrInvalid, rect)
		}
		p.Visible = a
	}
	return p, nil
}

// Document is one input: a file the service may read more than once.
type Document struct {
	Name string
	// MimeType is the document's type (XAdES DataObjectFormat, ASiC manifests).
	MimeType string
	R        io.ReaderAt
	Size     int64
}

func (d Document) reader() io.Reader { return io.NewSectionReader(d.R, 0, d.Size) }

// Result is a seal made.
type Result struct {
	Transaction string
	MimeType    string // of the output
	Extension   string // the output's file name ending, e.g. ".pdf", ".p7s", ".asice"
}

// Seal seals docs for org at the request of actor (a client id) and writes the output to w:
// one document for every format but the containers, which take one or more. When it returns an
// error, whatever reached w is not a seal and must be thrown away: the HTTP edge writes to a
// temporary file and sends it only on success, so memory stays flat for large documents.
func (s *Service) Seal(ctx context.Context, actor, org string, docs []Document, p Params, w io.Writer) (Result, error) {
	if len(docs) == 0 {
		return Result{}, fmt.Errorf("%w: no document", signing.ErrInvalid)
	}
	if len(docs) > 1 && p.Format != ASiCCAdES && p.Format != ASiCXAdES {
		return Result{}, fmt.Errorf("%w: %d documents for %s (one, or use asice for several)", signing.ErrInvalid, len(docs), p.Format)
	}
	var digests [][]byte
	var first hash.Hash
	for _, d := range docs {
		if d.Size > s.cfg.MaxSize {
			return Result{}, fmt.Errorf("%w: %s is %d bytes, the limit is %d", signing.ErrTooLarge, d.Name, d.Size, s.cfg.MaxSize)
		}
		h := sha256.New()
		if err := hashDoc(h, d); err != nil {
			return Result{}, err
		}
		digests = append(digests, h.Sum(nil))
		if first == nil {
			first = h
		}
	}
	ctx = hsm.WithActor(ctx, actor)
	sl, err := s.sealer(ctx, org)
	if err != nil {
		return Result{}, err
	}
	// The transaction is stored with the seal signature's audit record, in its commit.
	t := s.transaction("seal", actor, org, digests, string(p.Format), string(p.Level))
	ctx, rider := audit.WithTransaction(ctx, sl.keyURI, t)
	res, err := s.make(ctx, sl.Signer, docs, p, first, w)
	if err != nil {
		if rider.Written() {
			s.failed(ctx, t.ID, err)
		}
		return Result{}, err
	}
	if !rider.Written() {
		if err := s.recs.CreateTransaction(ctx, t); err != nil {
			return Result{}, fmt.Errorf("seal: recording the transaction: %w", err)
		}
	}
	res.Transaction = t.ID
	return res, nil
}

// failed marks a transaction stored with its signature as failed: the seal went wrong after it
// was signed (a timestamp or validation data that could not be had), so no seal was handed out.
func (s *Service) failed(ctx context.Context, id string, cause error) {
	err := s.recs.UpdateTransaction(context.WithoutCancel(ctx), id, func(t store.Transaction) (store.Transaction, error) {
		t.State, t.Completed = "failed", s.now()
		return t, nil
	})
	if err != nil {
		s.log.ErrorContext(ctx, "seal: marking a transaction failed", "transaction", id, "cause", cause, "err", err)
	}
}

// copyBufs are io.Copy's buffers for hashing a document: a new 32 KiB a seal was a quarter of
// the bytes a seal allocated.
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// hashDoc writes d to h.
func hashDoc(h hash.Hash, d Document) error {
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(h, d.reader(), buf[:])
	return err
}

// make writes the seal of docs; hashed is a SHA-256 hash that has read docs[0], which PAdES
// goes on from rather than hash the document a second time (that was 3 % of a seal).
func (s *Service) make(ctx context.Context, signer signing.Signer, docs []Document, p Params, hashed hash.Hash, w io.Writer) (Result, error) {
	d := docs[0]
	var ts signing.Timestamper
	if p.Level.AtLeast(signing.LevelT) {
		ts = s.tsa
	}
	switch p.Format {
	case PAdES:
		err := pades.Sign(ctx, d.R, d.Size, w, signer, pades.Options{Level: p.Level, Timestamper: ts, Revocation: s.pki,
			Certify: p.Certify, Reason: p.Reason, Location: p.Location, Time: s.now(), Visible: p.Visible, MaxSize: s.cfg.MaxSize,
			InputSHA256: hashed})
		return Result{MimeType: "application/pdf", Extension: ".pdf"}, err
	case XAdES:
		out, err := xades.Sign(ctx, d.reader(), signer, xades.Options{Level: p.Level, Packaging: p.Packaging, Timestamper: ts,
			Revocation: s.pki, Time: s.now(), MimeType: d.MimeType, FileName: d.Name, MaxSize: s.cfg.MaxSize})
		if err == nil {
			_, err = w.Write(out)
		}
		return Result{MimeType: "application/xml", Extension: ".xml"}, err
	case CAdES:
		out, err := cades.Sign(ctx, signer, d.reader(), s.cadesOptions(p.Level, ts))
		if err == nil {
			_, err = w.Write(out)
		}
		return Result{MimeType: "application/pkcs7-signature", Extension: ".p7s"}, err
	case ASiCCAdES, ASiCXAdES:
		files := make([]asic.File, len(docs))
		for i, d := range docs {
			files[i] = asic.File{Name: d.Name, MimeType: d.MimeType, Open: func() (io.ReadCloser, error) { return io.NopCloser(d.reader()), nil }}
		}
		var err error
		if p.Format == ASiCCAdES {
			err = asic.WriteCAdES(ctx, w, signer, files, s.cadesOptions(p.Level, ts))
		} else {
			err = s.writeASiCXAdES(ctx, w, signer, files, p, ts)
		}
		return Result{MimeType: "application/vnd.etsi.asic-e+zip", Extension: ".asice"}, err
	}
	return Result{}, fmt.Errorf("%w: format %q", signing.ErrInvalid, p.Format)
}

// cadesOptions are the options of a CAdES signature (alone or in a container) at level.
func (s *Service) cadesOptions(level signing.Level, ts signing.Timestamper) cades.Options {
	o := cades.Options{SigningTime: s.now(), Timestamper: ts}
	if level.AtLeast(signing.LevelLT) {
		o.Revocation = s.pki
		o.Archive = level == signing.LevelLTA
	}
	return o
}

// writeASiCXAdES makes an ASiC-E container with one detached XAdES signature over files.
func (s *Service) writeASiCXAdES(ctx context.Context, w io.Writer, signer signing.Signer, files []asic.File, p Params, ts signing.Timestamper) error {
	at := s.now()
	xs := asic.XMLSignerFunc(func(ctx context.Context, fs []asic.File) ([]byte, error) {
		xf := make([]xades.File, len(fs))
		for i, f := range fs {
			xf[i] = xades.File{Name: f.Name, MimeType: f.MimeType, Open: f.Open}
		}
		return xades.SignFiles(ctx, xf, signer, xades.Options{Level: p.Level, Packaging: xades.Detached, Timestamper: ts,
			Revocation: s.pki, Time: at, MaxSize: s.cfg.MaxSize})
	})
	return asic.WriteXAdES(ctx, w, xs, files, at)
}
