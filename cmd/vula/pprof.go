//go:build pprof

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	rpprof "runtime/pprof"
	"sync"
)

// A build for profiling only (go build -tags pprof; the release build has none of this): with
// VULA_PPROF_LISTEN set to a loopback address, the process serves net/http/pprof there, and
// /cpu/start and /cpu/stop, which bracket a CPU profile around a piece of load (the benchmarks
// in test/ use them) and return it.
func init() {
	addr := os.Getenv("VULA_PPROF_LISTEN")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintln(os.Stderr, "VULA_PPROF_LISTEN must be a loopback address:port")
		os.Exit(2)
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(100_000) // a sample per 100 µs blocked
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	var mu sync.Mutex
	var buf *bytes.Buffer
	mux.HandleFunc("POST /cpu/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf != nil {
			rpprof.StopCPUProfile()
		}
		buf = &bytes.Buffer{}
		if err := rpprof.StartCPUProfile(buf); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if buf == nil {
			http.Error(w, "no profile running", http.StatusConflict)
			return
		}
		rpprof.StopCPUProfile()
		_, _ = w.Write(buf.Bytes())
		buf = nil
	})
	go func() {
		err := http.ListenAndServe(addr, mux)
		fmt.Fprintln(os.Stderr, "pprof:", err)
	}()
}
