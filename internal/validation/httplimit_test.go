package validation_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/upload"
	"github.com/vula-eid/vula/internal/validation"
)

// gatedFetcher holds every validation that fetches revocation data until the gate opens, so
// that a test can keep validation slots busy.
type gatedFetcher struct {
	validation.Fetcher
	entered chan struct{}
	gate    chan struct{}
}

func (g gatedFetcher) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Fetcher.OCSP(ctx, cert, issuer)
}

type answer struct {
	code       int
	retryAfter string
	rep        validation.Report
	err        error
}

func postTo(url string, body io.Reader) answer {
	resp, err := http.Post(url+"/api/v1/validate", "application/pdf", body)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if a.code == 200 {
		a.err = json.NewDecoder(resp.Body).Decode(&a.rep)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return a
}

// TestHTTPSlowUploadsHoldNoSlot: with MaxConcurrent 2, eight clients trickling their bodies
// (over real TCP connections) take no validation slot: a whole request is validated meanwhile,
// and the trickled ones are validated when they finish. (Before, a body was read inside the
// slot, and two slow uploads made everyone else's answer 503.)
func TestHTTPSlowUploadsHoldNoSlot(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	mux := http.NewServeMux()
	validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}, MaxConcurrent: 2}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	doc := signPDF(t, env, env.Seal, signingtest.PDF("busy"), signing.LevelB)
	var writers []*io.PipeWriter
	answers := make(chan answer, 8)
	for range 8 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() { answers <- postTo(srv.URL, pr) }()
		// A pipe's write returns once the client has taken the bytes to send them.
		if _, err := pw.Write(doc[:100]); err != nil {
			t.Fatal(err)
		}
	}
	if a := postTo(srv.URL, bytes.NewReader(doc)); a.code != 200 || a.rep.Indication != validation.TotalPassed {
		t.Fatalf("a whole request while eight trickle: %d %q %v", a.code, a.rep.Indication, a.err)
	}
	for _, pw := range writers {
		go func() {
			pw.Write(doc[100:])
			pw.Close()
		}()
	}
	for range 8 {
		a := <-answers
		// Eight finishing at once against two slots: some may be told to come back.
		if a.err != nil || (a.code != 200 && a.code != http.StatusServiceUnavailable) ||
			(a.code == 200 && a.rep.Indication != validation.TotalPassed) {
			t.Fatalf("a trickled validation: %d %v %s", a.code, a.err, a.rep.Indication)
		}
	}
}

// TestHTTPConcurrencyLimit: with MaxConcurrent 2, two validations running hold both slots; a
// third whole request gets 503 with Retry-After at once; when they finish the next is served.
func TestHTTPConcurrencyLimit(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	fetch := gatedFetcher{Fetcher: validation.RevocationFetcher{R: env.PKI}, entered: make(chan struct{}, 8), gate: make(chan struct{})}
	mux := http.NewServeMux()
	validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), Fetch: fetch, MaxConcurrent: 2}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	doc := signPDF(t, env, env.Seal, signingtest.PDF("busy"), signing.LevelB)
	answers := make(chan answer, 2)
	for range 2 {
		go func() { answers <- postTo(srv.URL, bytes.NewReader(doc)) }()
		<-fetch.entered
	}
	a := postTo(srv.URL, bytes.NewReader(doc))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("a third validation while two run: %d, Retry-After %q", a.code, a.retryAfter)
	}
	close(fetch.gate)
	for range 2 {
		if a := <-answers; a.err != nil || a.code != 200 || a.rep.Indication != validation.TotalPassed {
			t.Fatalf("a held validation: %d %v %s", a.code, a.err, a.rep.Indication)
		}
	}
	go func() {
		for range fetch.entered {
		}
	}()
	if a := postTo(srv.URL, bytes.NewReader(doc)); a.code != 200 || a.rep.Indication != validation.TotalPassed {
		t.Fatalf("after the slots were freed: %d %v", a.code, a.err)
	}
}

// TestHTTPContentLengthTooLarge: a Content-Length over the limit is answered 413 before the
// client has sent a byte of its body.
func TestHTTPContentLengthTooLarge(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	mux := http.NewServeMux()
	validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), MaxSize: 1 << 20}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, ct := range []string{"application/pdf", "multipart/form-data; boundary=x"} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /api/v1/validate HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, int64(100)<<30)
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard against hanging, not a timing check
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: no answer without the body: %v", ct, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s", ct, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestHTTPTooSlow: a client sending below the minimum rate is cut off with 408 after the grace.
func TestHTTPTooSlow(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	sp, err := upload.Open(t.TempDir(), 1<<20, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	validation.Handler{Spool: sp, TrustAnchors: anchors(env)}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		for {
			if _, err := pw.Write([]byte("%PDF-1.7\n")); err != nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	if a := postTo(srv.URL, pr); a.code != http.StatusRequestTimeout {
		t.Fatalf("a trickle far below the minimum rate: %d %v", a.code, a.err)
	}
}

// TestHTTPMemoryBound: many large bodies at once keep the heap within the bound the README
// states: bodies over the limit cost no more than upload.MemoryLimit each while received, and
// bodies within it wait on disk; only what the memory budget admits is validated at once, each
// within MemoryPerDocument × its size (checked with the costliest kind, XML of large text).
// (Before, each body over the limit was read into memory up to the limit before its 413, and
// an XML document of many empty elements took 30 times its size.)
func TestHTTPMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a gigabyte")
	}
	env := signingtest.New(t, signingtest.Options{})
	const (
		maxSize = 16 << 20
		clients = 16
		budget  = 2 * validation.MemoryPerDocument * maxSize // two of the largest at once
	)
	serve := func() *httptest.Server {
		mux := http.NewServeMux()
		validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), MaxSize: maxSize, MaxConcurrent: clients, MemoryBudget: budget}.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	// measure sends clients bodies at once (chunked: no Content-Length, so each is read until
	// it passes the limit) and returns how much the heap grew at its peak.
	measure := func(srv *httptest.Server, body func() io.Reader) (uint64, map[int]int) {
		var mu sync.Mutex
		codes := map[int]int{}
		grew := peakHeap(func() {
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := postTo(srv.URL, body())
					mu.Lock()
					codes[a.code]++
					mu.Unlock()
				}()
			}
			wg.Wait()
		})
		return grew, codes
	}
	// The clients' side of each connection is in this process too: a megabyte each is slack.
	const slack = clients << 20

	grew, codes := measure(serve(), func() io.Reader {
		return io.MultiReader(strings.NewReader("%PDF-1.7\n"), io.LimitReader(zeros{}, 3*maxSize))
	})
	t.Logf("%d bodies of %d MiB over the limit: heap grew %.1f MiB; answers %v", clients, 3*maxSize>>20, float64(grew)/(1<<20), codes)
	if codes[http.StatusRequestEntityTooLarge] != clients {
		t.Fatalf("answers %v, want all 413", codes)
	}
	if grew > slack {
		t.Fatalf("heap grew %d bytes for %d refused bodies, over %d", grew, clients, slack)
	}

	xmlDoc := []byte("<a><b>" + strings.Repeat("x", maxSize-64) + "</b></a>")
	grew, codes = measure(serve(), func() io.Reader { return bytes.NewReader(xmlDoc) })
	t.Logf("%d XML documents of %d MiB, budget %d MiB: heap grew %.1f MiB; answers %v", clients, len(xmlDoc)>>20, budget>>20, float64(grew)/(1<<20), codes)
	// 400: parsed, and holds no signature; 503: the budget was taken.
	if codes[http.StatusBadRequest]+codes[http.StatusServiceUnavailable] != clients || codes[http.StatusBadRequest] == 0 {
		t.Fatalf("answers %v, want 400 or 503", codes)
	}
	if grew > budget+slack {
		t.Fatalf("heap grew %d bytes, over the budget %d", grew, budget)
	}

	many := []byte("<a>" + strings.Repeat("<b/>", 1<<20) + "</a>")
	grew, codes = measure(serve(), func() io.Reader { return bytes.NewReader(many) })
	t.Logf("%d XML documents of %d empty elements: heap grew %.1f MiB; answers %v", clients, 1<<20, float64(grew)/(1<<20), codes)
	if codes[http.StatusRequestEntityTooLarge]+codes[http.StatusServiceUnavailable] != clients || codes[http.StatusRequestEntityTooLarge] == 0 || grew > budget+slack {
		t.Fatalf("answers %v, heap grew %d", codes, grew)
	}
}

// zeros is an endless body of zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// spool is a spool directory of the test's own.
func spool(t testing.TB) *upload.Spool {
	t.Helper()
	s, err := upload.Open(t.TempDir(), 1<<20, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
