package seal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"path"
	"strconv"
	"strings"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/upload"
)

// Scope is the OAuth 2 scope a token needs for the sealing API.
const Scope = "seal"

// Authenticator checks a request's bearer token (the identity provider, in process).
type Authenticator = auth.Authenticator

// maxBatch bounds the documents of one batch request.
const maxBatch = 10000

// Handler is the sealing API: POST /api/v1/seal (one document as the body, or one or more as
// multipart/form-data file parts for a container) and POST /api/v1/seal/batch (many documents as
// file parts, each sealed on its own; the answer is multipart/mixed, streamed one part a
// document as each is sealed). Options are query parameters (see ParseParams). Described in
// api/openapi.yaml.
type Handler struct {
	S    *Service
	Auth Authenticator
	Log  *slog.Logger
	// Spool holds request bodies and sealed outputs while a request is handled. Required.
	Spool *upload.Spool
}

// Register mounts the API on mux.
func (h Handler) Register(mux *http.ServeMux) {
	if h.Spool == nil {
		panic("seal: Handler.Spool is required")
	}
	mux.HandleFunc("POST /api/v1/seal", h.seal)
	mux.HandleFunc("POST /api/v1/seal/batch", h.batch)
	mux.HandleFunc("POST /api/v1/renew", h.renew)
}

// begin authenticates the request, finds the organization it acts for and reads the options;
// on failure it has answered.
func (h Handler) begin(w http.ResponseWriter, r *http.Request) (actor, org string, p Params, ok bool) {
	actor, org, ok = h.caller(w, r)
	if !ok {
		return "", "", p, false
	}
	p, err := ParseParams(r.URL.Query().Get)
	if err != nil {
		writeError(w, r, err)
		return "", "", p, false
	}
	return actor, org, p, true
}

// caller authenticates the request and finds the organization it acts for; on failure it has
// answered.
func (h Handler) caller(w http.ResponseWriter, r *http.Request) (actor, org string, ok bool) {
	c, err := h.Auth.Bearer(r, Scope)
	if err != nil {
		auth.WriteBearerError(w, r, "vula-seal", Scope, err)
		return "", "", false
	}
	org, err = h.S.OrganizationOf(r.Context(), c.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("%w: client %s", ErrNotBound, c.ClientID)
	}
	if err != nil {
		writeError(w, r, err)
		return "", "", false
	}
	return c.ClientID, org, true
}

// renew answers POST /api/v1/renew: the body is a signed document (PDF, XML, CMS, ASiC-E) at
// B-LT or B-LTA, or multipart/form-data whose first file part is that document and whose
// further file parts are the data files a detached XAdES signature names. The answer is the
// document with one more archive timestamp (Service.Renew), under the same rules of caller and
// size as sealing.
func (h Handler) renew(w http.ResponseWriter, r *http.Request) {
	actor, org, ok := h.caller(w, r)
	if !ok {
		return
	}
	var docs []Document
	defer func() { h.removeAll(docs) }()
	if isMultipart(r) {
		var err error
		if docs, err = h.readParts(r, "files"); err != nil {
			writeError(w, r, err)
			return
		}
		if len(docs) == 0 {
			writeError(w, r, fmt.Errorf("%w: no file part", signing.ErrInvalid))
			return
		}
	} else {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "document" + extensionOf(r.Header.Get("Content-Type"))
		}
		d, err := h.spool(r.Body, r.ContentLength, safeName(name), mediaType(r.Header.Get("Content-Type")))
		if err != nil {
			writeError(w, r, err)
			return
		}
		docs = append(docs, d)
	}
	out := h.Spool.Buffer("renewed", outputRoom(docs))
	defer h.discard(out)
	res, err := h.S.Renew(r.Context(), actor, org, docs[0], docs[1:], out)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ext := path.Ext(docs[0].Name)
	if ext == "" {
		ext = res.Extension
	}
	name := strings.TrimSuffix(docs[0].Name, path.Ext(docs[0].Name)) + "-renewed" + ext
	w.Header().Set("Content-Type", res.MimeType)
	w.Header().Set("Content-Length", strconv.FormatInt(out.Size(), 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("X-Vula-Transaction", res.Transaction)
	if _, err := out.WriteTo(w); err != nil {
		h.Log.WarnContext(r.Context(), "sending a renewal", "err", err)
	}
}

// sealToBuffer seals docs into a buffer, which the caller closes.
func (h Handler) sealToBuffer(ctx context.Context, actor, org string, docs []Document, p Params) (Result, *upload.Buffer, error) {
	out := h.Spool.Buffer("sealed", outputRoom(docs))
	res, err := h.S.Seal(ctx, actor, org, docs, p, out)
	if err != nil {
		h.discard(out)
		return Result{}, nil, err
	}
	return res, out, nil
}

// outputRoom is the memory asked for an output made from docs: their size and room for the
// signature, its certificates and validation data; a larger output goes on in a spool file.
func outputRoom(docs []Document) int64 {
	n := int64(64 << 10)
	for _, d := range docs {
		n += d.Size
	}
	return n
}

// readParts spools the file parts of a multipart body, at most maxBatch of them; what it has
// spooled is returned with an error too, for the caller to remove.
func (h Handler) readParts(r *http.Request, what string) ([]Document, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", signing.ErrInvalid, err)
	}
	var docs []Document
	for {
		d, err := h.nextPart(mr, r.ContentLength)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, d)
		if len(docs) > maxBatch {
			return docs, fmt.Errorf("%w: more than %d %s", signing.ErrInvalid, maxBatch, what)
		}
	}
}

// discard frees a buffer (its spool file was unlinked when made, so closing it is enough); the
// Close error of a file thrown away does not matter.
func (h Handler) discard(b *upload.Buffer) { _ = b.Close() }

func (h Handler) seal(w http.ResponseWriter, r *http.Request) {
	actor, org, p, ok := h.begin(w, r)
	if !ok {
		return
	}
	var docs []Document
	defer func() { h.removeAll(docs) }()
	if isMultipart(r) {
		var err error
		if docs, err = h.readParts(r, "documents"); err != nil {
			writeError(w, r, err)
			return
		}
	} else {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "document" + extensionOf(r.Header.Get("Content-Type"))
		}
		d, err := h.spool(r.Body, r.ContentLength, safeName(name), mediaType(r.Header.Get("Content-Type")))
		if err != nil {
			writeError(w, r, err)
			return
		}
		docs = append(docs, d)
	}
	res, out, err := h.sealToBuffer(r.Context(), actor, org, docs, p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer h.discard(out)
	w.Header().Set("Content-Type", res.MimeType)
	w.Header().Set("Content-Length", strconv.FormatInt(out.Size(), 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": outputName(docs, res)}))
	w.Header().Set("X-Vula-Transaction", res.Transaction)
	if _, err := out.WriteTo(w); err != nil {
		h.Log.WarnContext(r.Context(), "sending a seal", "err", err)
	}
}

// batch seals each file part of a multipart/form-data body on its own, in order, and streams the
// outputs back as the parts of a multipart/mixed answer, each with the input's name, its
// transaction id and its status (X-Vula-Status: 200, or the 4xx of a problem+json part). A
// document that cannot be sealed does not stop the others.
func (h Handler) batch(w http.ResponseWriter, r *http.Request) {
	actor, org, p, ok := h.begin(w, r)
	if !ok {
		return
	}
	if p.Format == ASiCCAdES || p.Format == ASiCXAdES {
		writeError(w, r, fmt.Errorf("%w: a batch seals documents one by one; send a container's files to /api/v1/seal", signing.ErrInvalid))
		return
	}
	if !isMultipart(r) {
		writeError(w, r, fmt.Errorf("%w: a batch is multipart/form-data with one file part a document", signing.ErrInvalid))
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, r, fmt.Errorf("%w: %w", signing.ErrInvalid, err))
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	flusher, _ := w.(http.Flusher)
	ctx := r.Context()
	for n := 0; ; n++ {
		if n == maxBatch {
			h.problemPart(mw, r, "", fmt.Errorf("%w: more than %d documents; the rest were not read", signing.ErrInvalid, maxBatch))
			break
		}
		d, err := h.nextPart(mr, r.ContentLength)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The body itself is broken: nothing after this point can be read.
			h.problemPart(mw, r, "", err)
			break
		}
		err = h.sealPart(ctx, mw, actor, org, d, p)
		h.removeAll([]Document{d})
		if err != nil {
			h.problemPart(mw, r, d.Name, err)
		}
		if flusher != nil {
			flusher.Flush()
		}
		if ctx.Err() != nil {
			return
		}
	}
	_ = mw.Close() // the closing boundary goes to the client: a failed write means it left
}

// sealPart seals d and writes it as one part; on error it writes nothing.
func (h Handler) sealPart(ctx context.Context, mw *multipart.Writer, actor, org string, d Document, p Params) error {
	res, out, err := h.sealToBuffer(ctx, actor, org, []Document{d}, p)
	if err != nil {
		return err
	}
	defer h.discard(out)
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Type", res.MimeType)
	hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": outputName([]Document{d}, res)}))
	hdr.Set("X-Vula-Transaction", res.Transaction)
	hdr.Set("X-Vula-Status", "200")
	part, err := mw.CreatePart(hdr)
	if err != nil {
		return err
	}
	_, err = out.WriteTo(part)
	return err
}

func (h Handler) problemPart(mw *multipart.Writer, r *http.Request, name string, err error) {
	status := server.Status(err)
	if status >= 500 {
		h.Log.ErrorContext(r.Context(), "batch seal", "document", name, "err", err)
	}
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Type", "application/problem+json")
	if name != "" {
		hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	hdr.Set("X-Vula-Status", strconv.Itoa(status))
	part, perr := mw.CreatePart(hdr)
	if perr != nil {
		return
	}
	rec := &partWriter{w: part, h: http.Header{}}
	server.WriteError(rec, r, err)
}

// partWriter lets server.WriteError write a problem body into a multipart part.
type partWriter struct {
	w io.Writer
	h http.Header
}

func (p *partWriter) Header() http.Header         { return p.h }
func (p *partWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *partWriter) WriteHeader(int)             {}

// nextPart spools the next file part of mr, a body of size bytes (-1: unknown); io.EOF when
// there is none. Parts without a file name (form fields) are skipped.
func (h Handler) nextPart(mr *multipart.Reader, size int64) (Document, error) {
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return Document{}, io.EOF
		}
		if err != nil {
			return Document{}, fmt.Errorf("%w: multipart body: %w", signing.ErrInvalid, err)
		}
		// A part's Close only skips its unread rest; the next NextPart reports a broken body.
		if part.FileName() == "" {
			_ = part.Close()
			continue
		}
		// The request's length bounds a part's: the memory asked for, never more.
		d, err := h.spool(part, min(size, upload.BufferMax), safeName(part.FileName()), mediaType(part.Header.Get("Content-Type")))
		_ = part.Close()
		return d, err
	}
}

// spool reads r into a buffer (in memory for a small document whose size is announced, else a
// spool file), refusing more than the service's limit.
func (h Handler) spool(r io.Reader, size int64, name, mimeType string) (Document, error) {
	b := h.Spool.Buffer("doc", min(size, h.S.cfg.MaxSize+1))
	n, err := b.ReadFrom(io.LimitReader(r, h.S.cfg.MaxSize+1))
	switch {
	case errors.Is(err, upload.ErrSpool): // the server's disk, not the client
	case err != nil:
		err = fmt.Errorf("%w: reading %s: %w", signing.ErrInvalid, name, err)
	case n > h.S.cfg.MaxSize:
		err = fmt.Errorf("%w: %s is over the limit of %d bytes", signing.ErrTooLarge, name, h.S.cfg.MaxSize)
	}
	if err != nil {
		h.discard(b)
		return Document{}, err
	}
	return Document{Name: name, MimeType: mimeType, R: b, Size: n}, nil
}

func (h Handler) removeAll(docs []Document) {
	for _, d := range docs {
		if b, ok := d.R.(*upload.Buffer); ok {
			h.discard(b)
		}
	}
}

func isMultipart(r *http.Request) bool {
	return mediaType(r.Header.Get("Content-Type")) == "multipart/form-data"
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt == "" {
		return "application/octet-stream"
	}
	return mt
}

func extensionOf(ct string) string {
	switch mediaType(ct) {
	case "application/pdf":
		return ".pdf"
	case "application/xml", "text/xml":
		return ".xml"
	}
	return ""
}

// safeName keeps the last element of a client's file name, so that it can name a container
// entry or an output file and never a path.
func safeName(name string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "." || name == "/" || name == ".." || name == "" {
		return "document"
	}
	return name
}

// outputName is the sealed file's name: the input's with "-sealed" and the output's ending.
func outputName(docs []Document, res Result) string {
	base := docs[0].Name
	if len(docs) > 1 {
		base = "container"
	}
	if res.Extension == ".pdf" || res.Extension == ".xml" {
		base = strings.TrimSuffix(base, path.Ext(base))
		return base + "-sealed" + res.Extension
	}
	return base + res.Extension
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	server.WriteError(w, r, err)
}
