package csc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store/memstore"
)

// anOfficial authenticates every request as one official: the fuzzer aims at the bodies.
type anOfficial string

func (a anOfficial) Bearer(*http.Request, string) (auth.Caller, error) {
	return auth.Caller{ClientID: "app", Subject: string(a), Scopes: []string{Scope}, ACR: auth.LoASubstantial, AMR: []string{"pwd", "otp"}}, nil
}

var _ Authenticator = anOfficial("")

// FuzzMethods sends arbitrary bodies to every CSC method of a real service: the answer is a
// JSON object, never a 5xx, and a refusal names a CSC error code.
func FuzzMethods(f *testing.F) {
	e := newEnv(f)
	s := e.replica(memstore.New(e.now))
	o := e.official(f, s, "1100000001")
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		// The seeds name credential 1f; with the official's real one the fuzzer starts past the
		// credential check, at the SAD and the documents.
		real := bytes.ReplaceAll(b, []byte(`"1f"`), []byte(`"`+o.cred.ID+`"`))
		for m := range len(Handler{}.Methods()) {
			f.Add(uint8(m), b)
			f.Add(uint8(m), real)
		}
	}
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial(o.sub), Issuer: "http://vula.test", Log: e.log}.Register(mux)
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		fuzzOnce(t, mux, m, body)
	})
}

func fuzzOnce(t *testing.T, h http.Handler, m uint8, body []byte) {
	methods := Handler{}.Methods()
	path := "/csc/v2/" + methods[int(m)%len(methods)]
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	if w.Code >= 500 {
		t.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: not a JSON object: %s", path, w.Body)
	}
	if w.Code != 200 && out["error"] == nil {
		t.Fatalf("%s: %d without an error code: %s", path, w.Code, w.Body)
	}
}
