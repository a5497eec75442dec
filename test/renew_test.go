package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestLongTermEndToEnd: through the real binary, CAdES seals and ASiC-E (CAdES) containers are
// made at B-LT (the default) and B-LTA, and PAdES, XAdES and CAdES seals are renewed with
// POST /api/v1/renew and with `vula renew`; then, with the server stopped, `vula verify`
// passes every one of them offline, from the validation data and archive timestamps they
// carry, at the level they reached.
func TestLongTermEndToEnd(t *testing.T) {
	t.Parallel()
	data, env, secret := sealedSetup(t)
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	tax := sealHTTP(base, "tax-batch", secret)
	content := []byte("Vendim nr. 42/2026\n")
	xmlDoc := []byte(`<?xml version="1.0" encoding="UTF-8"?><vendim nr="42"><teksti>Aprovohet</teksti></vendim>`)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	seal := func(query, ct string, body []byte) []byte {
		t.Helper()
		resp, out := postDoc(t, tax, base+"/api/v1/seal"+query, ct, body)
		if resp.StatusCode != 200 {
			t.Fatalf("seal %s: %d %s", query, resp.StatusCode, out)
		}
		return out
	}
	renew := func(ct string, body []byte) []byte {
		t.Helper()
		resp, out := postDoc(t, tax, base+"/api/v1/renew", ct, body)
		if resp.StatusCode != 200 || resp.Header.Get("X-Vula-Transaction") == "" {
			t.Fatalf("renew: %d %s", resp.StatusCode, out)
		}
		return out
	}

	cadesLT := seal("?format=cades", "application/octet-stream", content)
	cadesLTA := seal("?format=cades&level=B-LTA", "application/octet-stream", content)
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for _, f := range []struct{ name, ct, body string }{{"vendim.txt", "text/plain", string(content)}, {"annex.xml", "application/xml", string(xmlDoc)}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		h.Set("Content-Type", f.ct)
		w, _ := mw.CreatePart(h)
		w.Write([]byte(f.body))
	}
	mw.Close()
	asicLT := seal("?format=asice", mw.FormDataContentType(), mp.Bytes())
	asicLTA := seal("?format=asice&level=B-LTA", mw.FormDataContentType(), mp.Bytes())

	padesRenewed := renew("application/pdf", renew("application/pdf", seal("", "application/pdf", signingtest.PDF("Vendim 42"))))
	xadesRenewed := renew("application/xml", renew("application/xml", seal("?format=xades", "application/xml", xmlDoc)))
	cadesRenewed := renew("application/pkcs7-signature", cadesLTA)
	asicRenewed := renew("application/vnd.etsi.asic-e+zip", asicLTA)

	// Refusals: no token, a B-T seal, not a signature.
	if resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/renew", "application/pdf", signingtest.PDF("x")); resp.StatusCode != 401 {
		t.Fatalf("renew without a token: %d %s", resp.StatusCode, body)
	}
	cadesBT := seal("?format=cades&level=B-T", "application/octet-stream", content)
	for name, body := range map[string][]byte{"a B-T seal": cadesBT, "junk": []byte("junk")} {
		if resp, b := postDoc(t, tax, base+"/api/v1/renew", "application/octet-stream", body); resp.StatusCode != 400 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Fatalf("renew %s: %d %s", name, resp.StatusCode, b)
		}
	}

	// vula renew, with the client's secret in a file.
	secretFile := write("secret", []byte(secret))
	renewedByCLI := filepath.Join(dir, "cli-renewed.p7s")
	if out := vula(t, env, "renew", write("lt.p7s", cadesLT), "--url", base, "--client-id", "tax-batch",
		"--client-secret-file", secretFile, "--out", renewedByCLI); !strings.Contains(out, "renewed") {
		t.Fatalf("vula renew: %s", out)
	}

	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	contentFile := write("vendim.txt", content)
	for _, c := range []struct {
		name  string
		doc   []byte
		level string
		n     int // archive timestamps
		args  []string
	}{
		{"cades B-LT", cadesLT, "B-LT", 0, []string{"--content", contentFile}},
		{"cades B-LTA", cadesLTA, "B-LTA", 1, []string{"--content", contentFile}},
		{"cades renewed", cadesRenewed, "B-LTA", 2, []string{"--content", contentFile}},
		{"cades renewed by vula renew", nil, "B-LTA", 1, []string{"--content", contentFile}},
		{"asice B-LT", asicLT, "B-LT", 0, nil},
		{"asice B-LTA", asicLTA, "B-LTA", 1, nil},
		{"asice renewed", asicRenewed, "B-LTA", 2, nil},
		{"pades renewed twice", padesRenewed, "B-LTA", 2, nil},
		{"xades renewed twice", xadesRenewed, "B-LTA", 2, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := renewedByCLI
			if c.doc != nil {
				p = write(strings.ReplaceAll(c.name, " ", "-"), c.doc)
			}
			out, _, err := vulaRun(env, append([]string{"verify", p, "--output", "json"}, c.args...)...)
			var rep validation.Report
			if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Indication != validation.TotalPassed {
				t.Fatalf("vula verify (offline): %v\n%s", err, out)
			}
			s := rep.Signatures[0]
			if string(s.Level) != c.level {
				t.Fatalf("level %s, want %s\n%s", s.Level, c.level, out)
			}
			archives := 0
			for _, ts := range s.Timestamps {
				if ts.Kind == "archive-timestamp" || ts.Kind == "document-timestamp" {
					if ts.Indication != validation.TotalPassed {
						t.Fatalf("%s %s: %s\n%s", ts.Kind, ts.ID, ts.Indication, out)
					}
					archives++
				}
			}
			for _, ts := range rep.Signatures[1:] { // PDF document timestamps are their own entries
				if ts.Indication == validation.TotalPassed {
					archives++
				}
			}
			if archives != c.n {
				t.Fatalf("%d archive timestamps passed, want %d\n%s", archives, c.n, out)
			}
		})
	}
}
