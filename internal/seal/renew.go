package seal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// maxInMemory bounds the signatures renewal reads into memory (a CMS or an XML document);
// PDFs and containers are streamed.
const maxInMemory = 64 << 20

// Renew adds an archive timestamp to doc, a signed document at B-LT or B-LTA, and writes the
// result to w: a further document timestamp for a PDF (pades.Renew), a further
// xadesv141:ArchiveTimeStamp for XML (xades.Renew; a detached signature's files are data, by
// name), a further archive-time-stamp-v3 for a CAdES signature (cades.AddArchiveTimestamp), the
// container's signature renewed for an ASiC-E container (asic.Renew). The format is read from
// the document's first bytes. Each renewal first adds fresh validation data of the newest
// earlier archive timestamp's TSA. The seal key is not used: only the platform's TSA signs, on
// behalf of actor for org, and the renewal is recorded as a transaction of kind "renew". As
// with Seal, whatever reached w on error must be thrown away.
func (s *Service) Renew(ctx context.Context, actor, org string, doc Document, data []Document, w io.Writer) (Result, error) {
	if doc.Size > s.cfg.MaxSize {
		return Result{}, fmt.Errorf("%w: %s is %d bytes, the limit is %d", signing.ErrTooLarge, doc.Name, doc.Size, s.cfg.MaxSize)
	}
	if doc.Size <= 0 {
		return Result{}, fmt.Errorf("%w: an empty document", signing.ErrInvalid)
	}
	head := make([]byte, min(doc.Size, 1024))
	if _, err := doc.R.ReadAt(head, 0); err != nil && err != io.EOF {
		return Result{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, doc.reader()); err != nil {
		return Result{}, err
	}
	ctx = hsm.WithActor(ctx, actor)
	var res Result
	var format Format
	var err error
	switch {
	case bytes.HasPrefix(head, []byte("%PDF-")):
		format, res = PAdES, Result{MimeType: "application/pdf", Extension: ".pdf"}
		err = pades.Renew(ctx, doc.R, doc.Size, w, s.tsa, s.pki, s.cfg.MaxSize)
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		format, res = ASiCCAdES, Result{MimeType: asic.MimeType, Extension: ".asice"}
		err = asic.Renew(ctx, doc.R, doc.Size, w, asic.Renewers{
			CAdES: func(ctx context.Context, p7s []byte) ([]byte, error) {
				return cades.AddArchiveTimestamp(ctx, p7s, s.tsa, s.pki)
			},
			XAdES: func(ctx context.Context, x []byte, open func(string) (io.ReadCloser, error)) ([]byte, error) {
				format = ASiCXAdES
				return xades.Renew(ctx, x, s.tsa, s.pki, open)
			},
		})
	case head[0] == 0x30:
		format, res = CAdES, Result{MimeType: "application/pkcs7-signature", Extension: ".p7s"}
		err = s.renewInMemory(doc, w, func(b []byte) ([]byte, error) { return cades.AddArchiveTimestamp(ctx, b, s.tsa, s.pki) })
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n\xef\xbb\xbf"), []byte("<")):
		format, res = XAdES, Result{MimeType: "application/xml", Extension: ".xml"}
		open := func(name string) (io.ReadCloser, error) {
			for _, d := range data {
				if d.Name == name {
					return io.NopCloser(d.reader()), nil
				}
			}
			return nil, fmt.Errorf("not sent (add it as a file part named %q)", name)
		}
		err = s.renewInMemory(doc, w, func(b []byte) ([]byte, error) { return xades.Renew(ctx, b, s.tsa, s.pki, open) })
	default:
		return Result{}, fmt.Errorf("%w: not a PDF, an XML document, a CMS signature or an ASiC-E container", signing.ErrInvalid)
	}
	if err != nil {
		return Result{}, err
	}
	if res.Transaction, err = s.recordKind(ctx, "renew", actor, org, [][]byte{h.Sum(nil)}, string(format), string(signing.LevelLTA)); err != nil {
		return Result{}, fmt.Errorf("seal: recording the renewal: %w", err)
	}
	return res, nil
}

// renewInMemory reads doc (at most maxInMemory bytes), renews it with f and writes the result.
func (s *Service) renewInMemory(doc Document, w io.Writer, f func([]byte) ([]byte, error)) error {
	if doc.Size > maxInMemory {
		return fmt.Errorf("%w: a signature of %d bytes, the limit is %d", signing.ErrTooLarge, doc.Size, maxInMemory)
	}
	b := make([]byte, doc.Size)
	if _, err := doc.R.ReadAt(b, 0); err != nil && err != io.EOF {
		return err
	}
	out, err := f(b)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
