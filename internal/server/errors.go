package server

import (
	"errors"
	"net/http"

	"github.com/vula-eid/vula/hsm"
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

// Status maps an internal error to its HTTP status. Unknown errors are 500.
func Status(err error) int {
	switch {
	case errors.Is(err, hsm.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, hsm.ErrInvalid), errors.Is(err, hsm.ErrUnsupportedOp):
		return http.StatusBadRequest
	case errors.Is(err, hsm.ErrWrongPurpose), errors.Is(err, hsm.ErrKeyNotActive):
		return http.StatusForbidden
	case errors.Is(err, hsm.ErrConflict), errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// WriteError answers with the problem body for err. The detail of a 5xx stays in the log: the
// client gets only the status text and the request id, so nothing internal leaks.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	WriteProblem(w, r, Status(err), err)
}

// WriteProblem answers with the problem body for err under status, for a handler that knows
// better than Status (a domain's own validation error is a 400). As in WriteError, a 5xx keeps
// its detail in the log.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, err error) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Instance: RequestID(r.Context())}
	if status < 500 {
		p.Detail = err.Error()
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5") // a dependency is down: try again soon, not elsewhere
	}
	writeJSON(w, status, p)
}
