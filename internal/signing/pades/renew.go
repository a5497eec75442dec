package pades

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"

	"github.com/vula-eid/vula/internal/signing"
)

// Renew writes to w the PDF read from r (size bytes) with one more document timestamp: a
// B-LT document becomes B-LTA, and a B-LTA document's archive is renewed before its last
// document timestamp's TSA certificate expires or its algorithms weaken (EN 319 142-1 clause
// 5.4). When the document already has a document timestamp, an update first adds to the DSS
// the certificates and fresh revocation data of the newest one's TSA (with a VRI entry for
// it), so that the new timestamp covers them; a last update adds the new timestamp's TSA's
// data when that is another TSA (or the first document timestamp), so that the result
// validates offline at once. The document must have a DSS (B-LT) and permit
// changes; what is there is copied through unchanged, as Sign does.
func Renew(ctx context.Context, r io.ReaderAt, size int64, w io.Writer, ts signing.Timestamper, rev signing.Revocation, maxSize int64) error {
	if maxSize > 0 && size > maxSize {
		return fmt.Errorf("%w: pades: the PDF has %d bytes, the limit is %d", signing.ErrTooLarge, size, maxSize)
	}
	if size <= 0 {
		return fmt.Errorf("%w: pades: not a PDF (empty)", signing.ErrInvalid)
	}
	if ts == nil || rev == nil {
		return fmt.Errorf("%w: pades: renewal needs a timestamper and a source of revocation data", signing.ErrInvalid)
	}
	hDoc := sha256.New()
	original := hashInBackground(r, size, hDoc)
	defer original.cancel()
	d, err := openDocument(r, size)
	if err != nil {
		return err
	}
	if err := d.checkPermissions(false); err != nil {
		return err
	}
	cat, err := d.catalog()
	if err != nil {
		return err
	}
	if cat["DSS"] == nil {
		return fmt.Errorf("%w: pades: the document has no DSS (it is below B-LT): a document timestamp needs its validation data first", signing.ErrInvalid)
	}
	last, err := d.lastDocTimestamp()
	if err != nil {
		return err
	}
	var updates []*update
	base := size
	var lastTSA *x509.Certificate
	if last != nil {
		tc, err := signing.TokenCerts(last)
		if err != nil {
			return err
		}
		lastTSA = tc[0]
		vd, err := signing.Collect(ctx, rev, tc)
		if err != nil {
			return fmt.Errorf("pades: validation data of the last document timestamp: %w", err)
		}
		u := d.newUpdate(size, !d.endsInEOL)
		if err := u.addDSS(vd, vriKey(last)); err != nil {
			return err
		}
		u.finish()
		updates = append(updates, u)
		base = u.end()
	}
	if err := original.wait(); err != nil {
		return fmt.Errorf("pades: reading the PDF: %w", err)
	}
	rec := &recorder{ts: ts}
	if last != nil {
		rec.token = last // sizes the new token when ts cannot say
	}
	u, token, err := d.docTimestampAfter(ctx, base, hDoc, updates, ts, rec, len(updates) == 0 && !d.endsInEOL)
	if err != nil {
		return err
	}
	updates = append(updates, u)
	// The new timestamp's TSA gets its validation data in the DSS, so that it validates
	// offline at once, unless it is the TSA whose data the first update just added.
	tc, err := signing.TokenCerts(token)
	if err != nil {
		return err
	}
	if lastTSA == nil || !lastTSA.Equal(tc[0]) {
		u2, err := d.timestampDSS(ctx, rev, token, tc, u.end())
		if err != nil {
			return err
		}
		updates = append(updates, u2)
	}
	return writeUpdated(ctx, w, r, size, updates)
}

// lastDocTimestamp is the token of the document timestamp whose byte range ends last, or nil
// when the document has none.
func (d *document) lastDocTimestamp() ([]byte, error) {
	fields, err := d.fields()
	if err != nil {
		return nil, err
	}
	var token []byte
	var end int64 = -1
	for _, f := range fields {
		if t, _ := f["FT"].(name); t != "Sig" || f["V"] == nil {
			continue
		}
		sig, err := d.dictOf(f["V"])
		if err != nil {
			return nil, err
		}
		if t, _ := sig["Type"].(name); t != "DocTimeStamp" {
			continue
		}
		br, err := d.arrayOf(sig["ByteRange"])
		if err != nil || len(br) != 4 {
			return nil, fmt.Errorf("%w: pades: a document timestamp without a /ByteRange", signing.ErrInvalid)
		}
		off, _ := br[2].(int64)
		n, _ := br[3].(int64)
		contents, _ := sig["Contents"].(pdfStr)
		s := cryptobyte.String(contents)
		var tok cryptobyte.String
		if !s.ReadASN1Element(&tok, 0x30) {
			return nil, fmt.Errorf("%w: pades: a document timestamp whose /Contents is not a token", signing.ErrInvalid)
		}
		if off+n > end {
			end, token = off+n, []byte(tok)
		}
	}
	return token, nil
}
