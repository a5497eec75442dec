package audit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/internal/apitest"
)

// The endpoints answer as api/openapi.yaml says: the checkpoint, proofs, 404 on an empty log,
// 400 naming the bad parameter, and 503 with Retry-After when the database is gone.
func TestHandler(t *testing.T) {
	f := newKeys(t)
	spec := apitest.Load(t)
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	mux := http.NewServeMux()
	Handler{Store: db, Log: quiet}.Register(mux)
	get := func(path string, want int) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != want {
			t.Fatalf("GET %s: %d %s, want %d", path, w.Code, w.Body, want)
		}
		spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())
		return w
	}
	get("/audit/checkpoint", http.StatusNotFound)
	appendN(t, newLog(t, db, f, 1000), 5)
	if cp, err := OpenCheckpoint(get("/audit/checkpoint", http.StatusOK).Body.Bytes(), keyVerifiers{f.pubs}); err != nil || cp.Size != 5 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	var p Proof
	if err := json.Unmarshal(get("/audit/proof/inclusion?seq=2&size=5", http.StatusOK).Body.Bytes(), &p); err != nil || p.Seq != 2 || p.Size != 5 || len(p.Hashes) != 3 {
		t.Fatalf("inclusion proof %+v %v", p, err)
	}
	get("/audit/proof/consistency?from=3&size=5", http.StatusOK)
	for _, q := range []string{"inclusion?seq=2", "inclusion?seq=-1&size=5", "inclusion?seq=6&size=5", "inclusion?seq=1&size=6",
		"consistency?from=6&size=5", "consistency?from=1&size=99999999999999999999"} {
		get("/audit/proof/"+q, http.StatusBadRequest)
	}
	db.Close()
	for _, path := range []string{"/audit/checkpoint", "/audit/proof/inclusion?seq=1&size=5"} {
		if w := get(path, http.StatusServiceUnavailable); w.Header().Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
	}
}
