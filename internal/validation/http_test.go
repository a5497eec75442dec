package validation_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

func TestHTTP(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	mux := http.NewServeMux()
	validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}, MaxSize: 1 << 20}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(t *testing.T, ctype string, body []byte) (int, []byte, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v1/validate", ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header.Get("Content-Type")
	}

	t.Run("PAdES B-LT", func(t *testing.T) {
		doc := signPDF(t, env, env.Seal, signingtest.PDF("http"), signing.LevelLT)
		code, body, ct := post(t, "application/pdf", doc)
		var rep validation.Report
		if code != 200 || ct != "application/json" || json.Unmarshal(body, &rep) != nil {
			t.Fatalf("%d %s %s", code, ct, body)
		}
		if rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLT {
			t.Fatalf("%s", body)
		}
	})
	t.Run("detached CAdES as multipart", func(t *testing.T) {
		p := newOpenSSLPKI(t)
		content := []byte("multipart content\n")
		os.WriteFile(p.path("c.txt"), content, 0o600)
		p.run("cms", "-sign", "-binary", "-cades", "-in", "c.txt", "-signer", "leaf.pem", "-inkey", "leaf.key", "-outform", "DER", "-out", "s.der")
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		w, _ := mw.CreateFormFile("signature", "s.der")
		w.Write(p.read("s.der"))
		w, _ = mw.CreateFormFile("content", "c.txt")
		w.Write(content)
		mw.Close()
		code, body, _ := post(t, mw.FormDataContentType(), b.Bytes())
		var rep validation.Report
		if code != 200 || json.Unmarshal(body, &rep) != nil {
			t.Fatalf("%d %s", code, body)
		}
		// The handler's anchors are the platform's: the openssl CA is not one of them.
		if rep.Indication != validation.Indeterminate || rep.SubIndication != validation.NoCertificateChainFound ||
			!hasCheck(rep.Signatures[0], "message-digest", "PASSED") {
			t.Fatalf("%s", body)
		}
	})
	for name, tc := range map[string]struct {
		body []byte
		code int
	}{
		"not a signature":   {[]byte("hello"), 400},
		"unsigned PDF":      {signingtest.PDF("x"), 400},
		"too large":         {bytes.Repeat([]byte("%PDF-"), 300000), 413},
		"XML, no signature": {[]byte("<doc/>"), 400},
		"XML with a DTD":    {[]byte(`<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>`), 400},
		"broken ASiC-E":     {[]byte("PK\x03\x04mimetypeapplication/vnd.etsi.asic-e+zip"), 400},
	} {
		t.Run(name, func(t *testing.T) {
			code, body, ct := post(t, "application/octet-stream", tc.body)
			if code != tc.code || ct != "application/problem+json" {
				t.Fatalf("%d %s %s, want %d", code, ct, body, tc.code)
			}
		})
	}
}
