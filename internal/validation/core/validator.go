package core

import (
	"context"
	"crypto/x509"
	"io"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/trustlist"
)

// Options says what to validate against.
type Options struct {
	// TrustAnchors are the roots a chain must end at. Required unless TrustedLists is given.
	TrustAnchors []*x509.Certificate
	// TrustedLists add the certificates of their services in a positive status at the
	// signature's proof of existence as anchors (CA services for signatures, TSA services for
	// timestamps) and decide whether a signature is qualified; optional.
	TrustedLists *trustlist.Set
	// Time is the clock of the validation (the "current time" of EN 319 102-1); time.Now when nil.
	Time func() time.Time
	// Fetch gets revocation data online when the document embeds none; nil: embedded data only.
	Fetch Fetcher
	// Content is the signed content of a detached CMS signature, or the data a standalone
	// timestamp is over; optional.
	Content io.ReaderAt
	// ContentSize is the size of Content.
	ContentSize int64
	// MaxSize bounds the document (signing.ErrTooLarge above it); 0: no bound.
	MaxSize int64
	// RevocationFreshness is the revocation freshness constraint (EN 319 102-1 §5.2.5): the
	// OCSP response or CRL that shows a certificate good must have been issued (thisUpdate)
	// after, or at most this long before, the best-signature-time of what the certificate
	// signed: the signature's proof of existence, a timestamp's own time. Older data is not
	// fresh: fresher data is fetched when Fetch is set, else the result is INDETERMINATE /
	// TRY_LATER. 0: not checked.
	RevocationFreshness time.Duration
}

// Fetcher gets revocation data online.
type Fetcher interface {
	// OCSP returns a DER OCSPResponse on cert from the responder of issuer.
	OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error)
	// CRL returns the DER CRL of the CA that issued cert.
	CRL(ctx context.Context, cert *x509.Certificate) ([]byte, error)
}

// RevocationFetcher adapts a signing.Revocation (the platform's CA in process) to a Fetcher.
type RevocationFetcher struct{ R signing.Revocation }

var _ Fetcher = RevocationFetcher{}

func (f RevocationFetcher) OCSP(ctx context.Context, cert, _ *x509.Certificate) ([]byte, error) {
	return f.R.OCSP(ctx, cert)
}

func (f RevocationFetcher) CRL(ctx context.Context, cert *x509.Certificate) ([]byte, error) {
	return f.R.CRLOf(ctx, cert)
}

// Evidence is validation data embedded beside the signatures rather than in them: a PDF's
// DSS for all its signatures, or one XAdES signature's CertificateValues and RevocationValues.
type Evidence struct {
	Source string // where it comes from, as reports name it: DSS, XAdES
	Certs  []*x509.Certificate
	OCSPs  [][]byte
	CRLs   [][]byte
}

// Validator is one validation of one document: its options, its validation time, the
// evidence beside the signature being validated, and the revocation checks already made.
type Validator struct {
	ctx      context.Context
	opts     Options
	vtime    time.Time
	evidence Evidence
	memos    map[string]memoEntry // shared by every copy With makes
}

// New starts a validation at opts.Time (time.Now when nil).
func New(ctx context.Context, opts Options) *Validator {
	now := time.Now
	if opts.Time != nil {
		now = opts.Time
	}
	return &Validator{ctx: ctx, opts: opts, vtime: now().UTC(), memos: map[string]memoEntry{}}
}

// With is the validator with e as the evidence beside the signature: a copy, so that one
// signature's embedded data never reaches another's; the checks made are shared.
func (v *Validator) With(e Evidence) *Validator {
	w := *v
	w.evidence = e
	return &w
}

// Time is the validation time.
func (v *Validator) Time() time.Time { return v.vtime }

// Evidence is the evidence beside the signature being validated.
func (v *Validator) Evidence() Evidence { return v.evidence }

// Content is Options.Content and its size: the detached content (nil when none was given).
func (v *Validator) Content() (io.ReaderAt, int64) { return v.opts.Content, v.opts.ContentSize }

// Proof is a proof of existence (EN 319 102-1 §5.6.2.3, POE) of an object at a time: a verified
// timestamp over it, named by its report's ID. The zero Proof is none.
type Proof struct {
	At time.Time
	By string
}

// OK reports whether p is a proof.
func (p Proof) OK() bool { return p.By != "" }

// Earlier returns the earlier of two proofs (a missing one loses).
func (p Proof) Earlier(q Proof) Proof {
	if !p.OK() || q.OK() && q.At.Before(p.At) {
		return q
	}
	return p
}
