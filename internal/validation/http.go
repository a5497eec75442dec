package validation

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"runtime"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/upload"
)

// DefaultMaxSize bounds a document (and a detached content) the HTTP API takes.
const DefaultMaxSize = 64 << 20

// Handler is POST /api/v1/validate: the body is the document (a PDF, a DER CMS, an RFC 3161
// token or reply), or multipart/form-data with a "signature" part and a "content" part for a
// detached signature or a timestamp over data. The answer is the JSON Report. 400 for what is
// not a signature, 413 above MaxSize, 422 for a format not validated yet. No authentication:
// validation is a public service, and the handler fetches nothing but through Fetch (the
// platform's own CA in process), never a URL named by the document.
//
// A request goes through two bounded stages. First its body is received into Spool (a
// Content-Length over the limit is refused before a byte is read; past upload.MemoryLimit the
// body waits on disk; a client sending below the spool's minimum rate is cut off with 408); at
// most MaxUploads bodies are received at once. Only then does it take one of MaxConcurrent
// validation slots, so a slow upload never holds one, and its weight (see weight) of the
// MemoryBudget. A request beyond any bound is answered 503 with Retry-After at once, not
// queued. Memory is thus bounded by MemoryBudget for the validations running, plus
// upload.MemoryLimit per body being received, whatever clients send. How many requests one client may
// have in flight is the edge's business (server.PerClient), since only the edge knows which
// proxies to believe about who the client is.
type Handler struct {
	TrustAnchors []*x509.Certificate
	TrustedLists *trustlist.Set   // optional: trust anchors and qualification from trusted lists
	Fetch        Fetcher          // optional
	MaxSize      int64            // DefaultMaxSize when 0
	Time         func() time.Time // time.Now when nil
	Log          *slog.Logger
	// Spool receives the bodies. Required.
	Spool *upload.Spool
	// MaxConcurrent bounds the validations running at once; 2 × GOMAXPROCS when 0.
	MaxConcurrent int
	// MaxUploads bounds the bodies being received at once; DefaultMaxUploads when 0.
	MaxUploads int
	// MemoryBudget bounds, in bytes, the memory of the validations running at once, each
	// counted by its weight; DefaultMemoryBudget when 0, and never less than the largest
	// request needs.
	MemoryBudget int64
	// RevocationFreshness is Options.RevocationFreshness (config validation.revocation_freshness).
	RevocationFreshness time.Duration
}

// DefaultMemoryBudget is the default bound on the memory of the validations running: what one
// multipart request of two DefaultMaxSize parts of XML needs.
const DefaultMemoryBudget = 1 << 30

// MemoryPerDocument bounds what a validation of a document read into memory (any format but
// PDF) holds, in multiples of its size: measured up to 5.3 for XML documents of 15 and 60 MB of
// text (the input, the parsed tree's strings, and the garbage the collector has not yet
// taken), with a margin. TestHTTPMemoryBound checks it.
const MemoryPerDocument = 8

// pdfShare is what a PDF's validation holds, as a share of its size: a PDF is validated where
// it lies (the spool file), so only its parse and windows are in memory (measured 2.7 MB for a
// 50 MB PDF at B-LT, BenchmarkValidateLargePDF); 1/8 leaves a wide margin.
const pdfShare = 8

// minWeight is what a validation of a small document is counted as: the report, chains,
// revocation data.
const minWeight = 1 << 20

// DefaultMaxUploads is the default bound on bodies received at once.
const DefaultMaxUploads = 64

// RetryAfter is the Retry-After (seconds) of a 503 when every validation slot is taken: a
// validation of a large PDF takes about that long.
const RetryAfter = "1"

// multipartSlack is what a multipart body may carry beyond its two parts (boundaries, headers).
const multipartSlack = 64 << 10

// Register mounts the API on mux.
func (h Handler) Register(mux *http.ServeMux) {
	if h.Spool == nil {
		panic("validation: Handler.Spool is required")
	}
	n := h.MaxConcurrent
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	u := h.MaxUploads
	if u <= 0 {
		u = DefaultMaxUploads
	}
	budget := h.MemoryBudget
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	budget = max(budget, MemoryPerDocument*(2*h.maxSize()+multipartSlack))
	mem := semaphore.NewWeighted(budget)
	slots, uploads := make(chan struct{}, n), make(chan struct{}, u)
	mux.HandleFunc("POST /api/v1/validate", func(w http.ResponseWriter, r *http.Request) {
		select {
		case uploads <- struct{}{}:
		default:
			server.CloseUnread(w)
			w.Header().Set("Retry-After", RetryAfter)
			server.WriteError(w, r, problem.Errorf(problem.Unavailable, "validation: all %d upload slots are busy", u))
			return
		}
		body, err := h.receive(w, r)
		<-uploads
		if err != nil {
			server.CloseUnread(w) // what is left of the body is not read
			h.fail(w, r, err)
			return
		}
		defer func() { _ = body.Close() }() // a spool file thrown away: its Close error does not matter
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", RetryAfter)
			server.WriteError(w, r, problem.Errorf(problem.Unavailable, "validation: all %d validation slots are busy", n))
			return
		}
		weight := weight(r, body)
		if !mem.TryAcquire(weight) {
			w.Header().Set("Retry-After", RetryAfter)
			server.WriteError(w, r, problem.Errorf(problem.Unavailable, "validation: the memory for validations is taken by others running"))
			return
		}
		defer mem.Release(weight)
		h.validate(w, r, body)
	})
}

// weight is what a validation counts against the memory budget: a PDF its share, anything
// else (and a multipart body, whose parts are read into memory) MemoryPerDocument × its size.
func weight(r *http.Request, body *upload.Body) int64 {
	size := body.Size()
	if !isMultipart(r) {
		head := make([]byte, min(size, 1024))
		if _, err := body.ReadAt(head, 0); (err == nil || err == io.EOF) && detect(head) == "pdf" {
			return max(size/pdfShare, minWeight)
		}
	}
	return max(MemoryPerDocument*size, minWeight)
}

func (h Handler) maxSize() int64 {
	if h.MaxSize > 0 {
		return h.MaxSize
	}
	return DefaultMaxSize
}

// receive takes the whole body: a document, or a multipart body of two parts.
func (h Handler) receive(w http.ResponseWriter, r *http.Request) (*upload.Body, error) {
	max := h.maxSize()
	if isMultipart(r) {
		max = 2*max + multipartSlack
	}
	return h.Spool.Receive(w, r, max)
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "multipart/form-data"
}

func (h Handler) validate(w http.ResponseWriter, r *http.Request, body *upload.Body) {
	var doc io.ReaderAt = body
	size := body.Size()
	opts := Options{TrustAnchors: h.TrustAnchors, TrustedLists: h.TrustedLists, Fetch: h.Fetch, Time: h.Time, MaxSize: h.maxSize(), RevocationFreshness: h.RevocationFreshness}
	if isMultipart(r) {
		sig, content, err := h.parts(r, body)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		doc, size = bytes.NewReader(sig), int64(len(sig))
		if content != nil {
			opts.Content, opts.ContentSize = bytes.NewReader(content), int64(len(content))
		}
	}
	if size > h.maxSize() {
		h.fail(w, r, fmt.Errorf("%w: validation: the document is over the limit of %d bytes", signing.ErrTooLarge, h.maxSize()))
		return
	}
	rep, err := Validate(r.Context(), doc, size, opts)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if h.Log != nil {
		h.Log.Info("validated", "format", rep.Format, "size", rep.Size, "signatures", len(rep.Signatures), "indication", rep.Indication)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(rep) // the status is sent: a failed write means the client left
}

// parts returns the signature and the optional detached content of a multipart body.
func (h Handler) parts(r *http.Request, body *upload.Body) (doc, content []byte, err error) {
	max := h.maxSize()
	_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	mr := multipart.NewReader(body.Reader(), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: validation: multipart body: %v", signing.ErrInvalid, err)
		}
		switch p.FormName() {
		case "signature", "document":
			if doc != nil {
				return nil, nil, fmt.Errorf("%w: validation: two signature parts", signing.ErrInvalid)
			}
			if doc, err = readLimited(p, max, "the signature"); err != nil {
				return nil, nil, err
			}
		case "content":
			if content != nil {
				return nil, nil, fmt.Errorf("%w: validation: two content parts", signing.ErrInvalid)
			}
			if content, err = readLimited(p, max, "the content"); err != nil {
				return nil, nil, err
			}
		default:
			return nil, nil, fmt.Errorf("%w: validation: unknown part %q (want signature and content)", signing.ErrInvalid, p.FormName())
		}
	}
	if doc == nil {
		return nil, nil, fmt.Errorf("%w: validation: no signature part", signing.ErrInvalid)
	}
	return doc, content, nil
}

func readLimited(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: validation: reading %s: %v", signing.ErrInvalid, what, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: validation: %s is over the limit of %d bytes", signing.ErrTooLarge, what, max)
	}
	return b, nil
}

func (h Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := server.Status(err)
	if h.Log != nil && status >= 500 {
		h.Log.Error("validation failed", "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", RetryAfter)
	}
	server.WriteError(w, r, err)
}
