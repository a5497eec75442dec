package csc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store/memstore"
)

// BenchmarkSignHash measures CSC round trips over HTTP on loopback against a real service
// (software keys, every signature and authorization in the SQLite audit chain, Argon2id password
// check, TOTP): one hash a credentials/authorize + signatures/signHash pair, and batches of 100
// hashes under one authorization. A TOTP code is accepted once, so the injected clock moves one
// 30-second step before each authorization.
func BenchmarkSignHash(b *testing.B) {
	e := newEnv(b)
	s := e.replica(memstore.New(e.now))
	o := e.official(b, s, "1100000001")
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial(o.sub), Issuer: "http://vula.test", Log: e.log}.Register(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	call := func(method string, req any) map[string]any {
		body, _ := json.Marshal(req)
		resp, err := http.Post(srv.URL+"/csc/v2/"+method, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %v", method, resp.StatusCode, out)
		}
		return out
	}
	n := 0
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("hashes=%d", batch), func(b *testing.B) {
			for b.Loop() {
				hs := make([]string, batch)
				for i := range hs {
					n++
					h := sha256.Sum256(fmt.Appendf(nil, "document %d", n))
					hs[i] = base64.StdEncoding.EncodeToString(h[:])
				}
				e.advance(30 * time.Second)
				a := call("credentials/authorize", map[string]any{"credentialID": o.cred.ID, "numSignatures": batch, "hashes": hs,
					"hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
					"authData":         []map[string]string{{"id": "PIN", "value": o.pw}, {"id": "OTP", "value": e.code(b, o, 0)}}})
				sig := call("signatures/signHash", map[string]any{"credentialID": o.cred.ID, "SAD": a["SAD"], "hashes": hs,
					"signAlgo": "1.2.840.10045.4.3.2"})
				if len(sig["signatures"].([]any)) != batch {
					b.Fatalf("%d signatures for %d hashes", len(sig["signatures"].([]any)), batch)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "signatures/s")
		})
	}
}

// BenchmarkSignDoc measures signatures/signDoc over HTTP on loopback: PAdES B-T of a small
// one-page PDF (signingtest.PDF, under 1 KB) with the platform's TSA in process, one
// credentials/authorize (Argon2id, TOTP) per request of docs documents.
func BenchmarkSignDoc(b *testing.B) {
	e := newEnv(b)
	s := e.docReplica(b)
	o := e.official(b, s, "1100000001")
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial(o.sub), Issuer: "http://vula.test", Log: e.log}.Register(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	call := func(method string, req any) map[string]any {
		body, _ := json.Marshal(req)
		resp, err := http.Post(srv.URL+"/csc/v2/"+method, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %d %v", method, resp.StatusCode, out)
		}
		return out
	}
	n := 0
	for _, docs := range []int{1, 20} {
		b.Run(fmt.Sprintf("pades-B-T/docs=%d", docs), func(b *testing.B) {
			for b.Loop() {
				hs := make([]string, docs)
				ds := make([]map[string]any, docs)
				for i := range docs {
					n++
					pdf := signingtest.PDF(fmt.Sprintf("Decision %d", n))
					h := sha256.Sum256(pdf)
					hs[i] = base64.StdEncoding.EncodeToString(h[:])
					ds[i] = map[string]any{"document": base64.StdEncoding.EncodeToString(pdf), "signature_format": "P",
						"conformance_level": "Ades-B-T", "signAlgo": "1.2.840.10045.4.3.2", "signed_envelope_property": "Revision"}
				}
				e.advance(30 * time.Second)
				a := call("credentials/authorize", map[string]any{"credentialID": o.cred.ID, "numSignatures": docs, "hashes": hs,
					"hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
					"authData":         []map[string]string{{"id": "PIN", "value": o.pw}, {"id": "OTP", "value": e.code(b, o, 0)}}})
				out := call("signatures/signDoc", map[string]any{"credentialID": o.cred.ID, "SAD": a["SAD"], "documents": ds})
				if len(out["DocumentWithSignature"].([]any)) != docs {
					b.Fatalf("%d signed documents for %d", len(out["DocumentWithSignature"].([]any)), docs)
				}
			}
			b.ReportMetric(float64(b.N*docs)/b.Elapsed().Seconds(), "documents/s")
		})
	}
}
