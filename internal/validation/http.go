package validation

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"runtime"
	"time"

	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/signing"
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
// At most MaxConcurrent validations run at once (from reading the body to the answer, so
// that the memory the bodies take is bounded too: MaxConcurrent × MaxSize, twice that for a
// multipart body); a request beyond that is answered 503 with Retry-After at once, not
// queued. Why a bound on concurrency rather than a per-client token bucket: a validation
// costs CPU and memory wherever it comes from, so the bound protects the replica against any
// number of clients (a per-address bucket needs the proxy's forwarded address trusted and a
// shared store across replicas, and still lets many addresses exhaust one replica), and each
// replica keeps it alone, with nothing shared. A slow upload holds its slot; the server's read
// timeout bounds how long.
type Handler struct {
	TrustAnchors []*x509.Certificate
	Fetch        Fetcher          // optional
	MaxSize      int64            // DefaultMaxSize when 0
	Time         func() time.Time // time.Now when nil
	Log          *slog.Logger
	// MaxConcurrent bounds the validations running at once; 2 × GOMAXPROCS when 0.
	MaxConcurrent int
}

// RetryAfter is the Retry-After (seconds) of a 503 when every validation slot is taken: a
// validation of a large PDF takes about that long.
const RetryAfter = "1"

// Register mounts the API on mux.
func (h Handler) Register(mux *http.ServeMux) {
	n := h.MaxConcurrent
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	slots := make(chan struct{}, n)
	mux.HandleFunc("POST /api/v1/validate", func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", RetryAfter)
			server.WriteProblem(w, r, http.StatusServiceUnavailable, fmt.Errorf("validation: all %d validation slots are busy", n))
			return
		}
		h.validate(w, r)
	})
}

func (h Handler) maxSize() int64 {
	if h.MaxSize > 0 {
		return h.MaxSize
	}
	return DefaultMaxSize
}

func (h Handler) validate(w http.ResponseWriter, r *http.Request) {
	doc, content, err := h.read(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	opts := Options{TrustAnchors: h.TrustAnchors, Fetch: h.Fetch, Time: h.Time, MaxSize: h.maxSize()}
	if content != nil {
		opts.Content, opts.ContentSize = bytes.NewReader(content), int64(len(content))
	}
	rep, err := Validate(r.Context(), bytes.NewReader(doc), int64(len(doc)), opts)
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

// read returns the document and the optional detached content.
func (h Handler) read(r *http.Request) (doc, content []byte, err error) {
	max := h.maxSize()
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		doc, err = readLimited(r.Body, max, "the document")
		return doc, content, err
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
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

// statusOf maps the package's errors to statuses at the edge.
func statusOf(err error) int {
	switch {
	case errors.Is(err, signing.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, signing.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, signing.ErrUnsupported):
		return http.StatusUnprocessableEntity
	}
	return server.Status(err)
}

func (h Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if h.Log != nil && status >= 500 {
		h.Log.Error("validation failed", "err", err)
	}
	server.WriteProblem(w, r, status, err)
}
