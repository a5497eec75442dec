package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestServeHeaders: the binary's edge sends Strict-Transport-Security when base_url is https
// outside dev mode, and never in dev mode; nosniff and no-store on every answer.
func TestServeHeaders(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		hsts bool
	}{
		{[]string{"VULA_BASE_URL=https://eid.example", "VULA_DEV=false"}, true},
		{[]string{"VULA_BASE_URL=https://eid.example"}, false}, // dev mode
		{nil, false},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		addrc := make(chan string, 1)
		done := make(chan int, 1)
		var logs bytes.Buffer
		go func() {
			done <- Run(ctx, Env{Args: []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, Environ: tc.env,
				Stdout: io.Discard, Stderr: &syncBuffer{b: &logs}, Ready: func(a string) { addrc <- a }})
		}()
		var addr string
		select {
		case addr = <-addrc:
		case code := <-done:
			t.Fatalf("%v: serve exited with %d: %s", tc.env, code, logs.String())
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if got := h.Get("Strict-Transport-Security"); (got != "") != tc.hsts {
			t.Errorf("%v: Strict-Transport-Security %q", tc.env, got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%v: %v", tc.env, h)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
}
