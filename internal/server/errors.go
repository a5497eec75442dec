package server

import (
	"errors"
	"net/http"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/store"
)

var errInternal = errors.New("internal error")

// Problem is an RFC 9457 problem-details body.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// TypeOf is the problem type of err: the first one marked in its chain (problem.Of); else
// the key layer's and the stores' sentinels, which cannot know the catalog; else Internal.
// This is the one place an error gets its type and so its status.
func TypeOf(err error) problem.Type {
	if t, ok := problem.Of(err); ok {
		return t
	}
	switch {
	case errors.Is(err, hsm.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return problem.NotFound
	case errors.Is(err, hsm.ErrInvalid), errors.Is(err, hsm.ErrUnsupportedOp):
		return problem.InvalidRequest
	case errors.Is(err, hsm.ErrWrongPurpose), errors.Is(err, hsm.ErrKeyNotActive):
		return problem.Forbidden
	case errors.Is(err, hsm.ErrConflict), errors.Is(err, store.ErrConflict):
		return problem.Conflict
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return problem.Unavailable
	}
	return problem.Internal
}

// Status is the HTTP status of err (TypeOf's), for an answer that is not a problem body (the
// CSC and OAuth error bodies, a multipart part's status header).
func Status(err error) int { return TypeOf(err).Status }

// WriteError answers with the problem body for err. The detail of a 5xx stays in the log: the
// client gets only the type, the title and the request id, so nothing internal leaks.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	t := TypeOf(err)
	p := Problem{Type: t.URI(), Title: t.Title, Status: t.Status, Instance: RequestID(r.Context())}
	if t.Status < 500 {
		p.Detail = err.Error()
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if t.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5") // a dependency is down: try again soon, not elsewhere
	}
	writeJSON(w, t.Status, p)
}
