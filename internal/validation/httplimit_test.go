package validation_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestHTTPConcurrencyLimit: with MaxConcurrent 2, two uploads that are still sending their
// bodies hold both validation slots; a third request gets 503 with Retry-After at once; when
// the two finish they are validated, and the next request is served again.
func TestHTTPConcurrencyLimit(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	mux := http.NewServeMux()
	validation.Handler{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}, MaxConcurrent: 2}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	doc := signPDF(t, env, env.Seal, signingtest.PDF("busy"), signing.LevelB)
	type answer struct {
		code int
		rep  validation.Report
		err  error
	}
	post := func(body io.Reader) answer {
		resp, err := http.Post(srv.URL+"/api/v1/validate", "application/pdf", body)
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		a := answer{code: resp.StatusCode}
		if a.code == 200 {
			a.err = json.NewDecoder(resp.Body).Decode(&a.rep)
		}
		return a
	}
	var writers []*io.PipeWriter
	answers := make(chan answer, 2)
	for range 2 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() { answers <- post(pr) }()
		// The handler reads the body only once it holds a slot: when this write returns, the
		// slot is taken (a pipe's write waits for the reader).
		if _, err := pw.Write(doc[:100]); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(srv.URL+"/api/v1/validate", "application/pdf", bytesReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("a third validation while two run: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}
	for _, pw := range writers {
		go func() {
			pw.Write(doc[100:])
			pw.Close()
		}()
	}
	for range 2 {
		a := <-answers
		if a.err != nil || a.code != 200 || a.rep.Indication != validation.TotalPassed {
			t.Fatalf("a held validation: %d %v %s", a.code, a.err, a.rep.Indication)
		}
	}
	if a := post(bytesReader(doc)); a.code != 200 || a.rep.Indication != validation.TotalPassed {
		t.Fatalf("after the slots were freed: %d %v", a.code, a.err)
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
