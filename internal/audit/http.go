package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
)

// Handler publishes the log's latest signed checkpoint and proofs over it, anonymously: they
// reveal hashes only, never a record.
type Handler struct {
	Store store.AuditLog
	Log   *slog.Logger
}

// Register adds GET /audit/checkpoint, /audit/proof/inclusion and /audit/proof/consistency.
func (h Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /audit/checkpoint", h.checkpoint)
	mux.HandleFunc("GET /audit/proof/inclusion", h.inclusion)
	mux.HandleFunc("GET /audit/proof/consistency", h.consistency)
}

// Proof is the body of a proof answer; hashes are base64, as in checkpoints.
type Proof struct {
	Seq    int64    `json:"seq,omitempty"`  // inclusion: the record (leaf seq-1)
	From   int64    `json:"from,omitempty"` // consistency: the older tree's size
	Size   int64    `json:"size"`           // the tree's size
	Hashes [][]byte `json:"hashes"`
}

func (h Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if server.Status(err) >= 500 {
		// The database or its records cannot be read now: the log itself is not at fault
		// as far as this request can tell.
		h.Log.Error("audit proof", "err", err)
		err = problem.Mark(problem.Unavailable, err) // WriteError adds Retry-After
	}
	server.WriteError(w, r, err)
}

func (h Handler) checkpoint(w http.ResponseWriter, r *http.Request) {
	_, signed, err := h.Store.AuditCheckpoint(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(signed)
}

// params reads the named positive integers of the query.
func params(r *http.Request, names ...string) ([]int64, error) {
	out := make([]int64, len(names))
	for i, n := range names {
		v, err := strconv.ParseInt(r.URL.Query().Get(n), 10, 64)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%w: query parameter %s: want a positive integer", ErrBadRequest, n)
		}
		out[i] = v
	}
	return out, nil
}

func (h Handler) inclusion(w http.ResponseWriter, r *http.Request) {
	p, err := params(r, "seq", "size")
	if err == nil {
		var proof tlog.RecordProof
		if proof, err = InclusionProof(r.Context(), h.Store, p[0], p[1]); err == nil {
			writeProof(w, Proof{Seq: p[0], Size: p[1], Hashes: hashes(proof)})
			return
		}
	}
	h.fail(w, r, err)
}

func (h Handler) consistency(w http.ResponseWriter, r *http.Request) {
	p, err := params(r, "from", "size")
	if err == nil {
		var proof tlog.TreeProof
		if proof, err = ConsistencyProof(r.Context(), h.Store, p[0], p[1]); err == nil {
			writeProof(w, Proof{From: p[0], Size: p[1], Hashes: hashes(proof)})
			return
		}
	}
	h.fail(w, r, err)
}

func hashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func writeProof(w http.ResponseWriter, p Proof) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(p) // the status is sent: a failed write means the client left
}

func toTlog(hs [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		if len(h) != tlog.HashSize {
			return nil, errors.New("a proof hash is not 32 bytes")
		}
		out[i] = tlog.Hash(h)
	}
	return out, nil
}

// WitnessState is what a witness keeps between runs: the last checkpoint it accepted.
type WitnessState struct {
	Checkpoint string `json:"checkpoint"` // the signed note, as served
}

// ErrInconsistent is a witness's finding that the log no longer extends what it saw: a
// rewrite or a truncation.
var ErrInconsistent = errors.New("audit: the log is not consistent with the checkpoint seen before")

// Witness fetches the latest checkpoint from the Vula at base, checks its signature with
// known, and that it extends the one in state (by a consistency proof from the same server),
// and returns the new state. On any inconsistency it returns an error wrapping
// ErrInconsistent, and the caller keeps the old state.
func Witness(ctx context.Context, c *http.Client, base string, known note.Verifiers, state WitnessState) (WitnessState, Checkpoint, error) {
	body, err := get(ctx, c, base, "/audit/checkpoint", nil)
	if err != nil {
		return state, Checkpoint{}, err
	}
	cp, err := OpenCheckpoint(body, known)
	if err != nil {
		return state, Checkpoint{}, err
	}
	next := WitnessState{Checkpoint: string(body)}
	if state.Checkpoint == "" {
		return next, cp, nil
	}
	old, err := OpenCheckpoint([]byte(state.Checkpoint), known)
	if err != nil {
		return state, cp, fmt.Errorf("audit: the state's checkpoint: %w", err)
	}
	switch {
	case old.Origin != cp.Origin:
		return state, cp, fmt.Errorf("%w: origin %q, was %q", ErrInconsistent, cp.Origin, old.Origin)
	case cp.Size < old.Size:
		return state, cp, fmt.Errorf("%w: truncated: the log has %d records, %d were seen before", ErrInconsistent, cp.Size, old.Size)
	case cp.Size == old.Size && cp.Root != old.Root:
		return state, cp, fmt.Errorf("%w: rewritten: the tree of %d records has another root than before", ErrInconsistent, cp.Size)
	case cp.Size == old.Size || old.Size == 0:
		return next, cp, nil
	}
	body, err = get(ctx, c, base, "/audit/proof/consistency", url.Values{"from": {fmt.Sprint(old.Size)}, "size": {fmt.Sprint(cp.Size)}})
	if err != nil {
		return state, cp, err
	}
	var p Proof
	if err := json.Unmarshal(body, &p); err != nil {
		return state, cp, fmt.Errorf("audit: consistency proof: %v", err)
	}
	proof, err := toTlog(p.Hashes)
	if err != nil {
		return state, cp, fmt.Errorf("audit: consistency proof: %v", err)
	}
	if err := tlog.CheckTree(proof, cp.Size, cp.Root, old.Size, old.Root); err != nil {
		return state, cp, fmt.Errorf("%w: the tree of %d records seen before is not a prefix of the tree of %d: %v", ErrInconsistent, old.Size, cp.Size, err)
	}
	return next, cp, nil
}

func get(ctx context.Context, c *http.Client, base, path string, q url.Values) ([]byte, error) {
	u := strings.TrimSuffix(base, "/") + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read whole or given up on
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("audit: GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// ReadWitnessState reads a state file; a file that does not exist is the empty state.
func ReadWitnessState(path string) (WitnessState, error) {
	var s WitnessState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("audit: witness state %s: %v", path, err)
	}
	return s, nil
}

// WriteWitnessState replaces the state file atomically.
func WriteWitnessState(path string, s WitnessState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, time.Now().UnixNano())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
