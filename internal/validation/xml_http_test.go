package validation_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// TestHTTPXML: POST /api/v1/validate takes XAdES (enveloped as the body, detached as multipart
// with its content) and ASiC-E, by content sniffing whatever the Content-Type says.
func TestHTTPXML(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	mux := http.NewServeMux()
	validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}, MaxSize: 1 << 20}.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(t *testing.T, ctype string, body []byte) validation.Report {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v1/validate", ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var rep validation.Report
		if resp.StatusCode != 200 || json.Unmarshal(b, &rep) != nil {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		return rep
	}
	in := []byte(invoiceXML)
	t.Run("enveloped", func(t *testing.T) {
		rep := post(t, "application/xml", signXAdES(t, env, env.Seal, in, xades.Enveloped, signing.LevelT))
		if rep.Indication != validation.TotalPassed || rep.Format != "XML" || rep.Signatures[0].Level != signing.LevelT {
			t.Fatalf("%+v", rep)
		}
	})
	t.Run("detached as multipart", func(t *testing.T) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		w, _ := mw.CreateFormFile("signature", "s.xml")
		w.Write(signXAdES(t, env, env.Seal, in, xades.Detached, signing.LevelLT))
		w, _ = mw.CreateFormFile("content", "invoice file.xml")
		w.Write(in)
		mw.Close()
		rep := post(t, mw.FormDataContentType(), b.Bytes())
		if rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLT {
			t.Fatalf("%+v", rep)
		}
	})
	t.Run("ASiC-E", func(t *testing.T) {
		rep := post(t, "application/octet-stream", asicXAdES(t, env, signing.LevelLT))
		if rep.Indication != validation.TotalPassed || rep.Format != "ASiC-E" || len(rep.Entries) != 4 {
			t.Fatalf("%+v", rep)
		}
	})
}
