package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

// sealClient registers a client_credentials client with the CLI and returns its secret.
func sealClient(t testing.TB, env []string, id string, extra ...string) string {
	t.Helper()
	var c struct {
		Secret string `json:"client_secret"`
	}
	out := vula(t, env, append([]string{"clients", "create", id, "--grant-type", "client_credentials", "--output", "json"}, extra...)...)
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Secret == "" {
		t.Fatalf("clients create %s printed %q", id, out)
	}
	return c.Secret
}

// sealHTTP is an institution's system: a client_credentials token with the seal scope.
func sealHTTP(base, id, secret string, scopes ...string) *http.Client {
	if scopes == nil {
		scopes = []string{"seal"}
	}
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth2/token", Scopes: scopes}
	return cc.Client(context.Background())
}

func postDoc(t *testing.T, c *http.Client, u, ct string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Post(u, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func pdfsig(t *testing.T, path string) string {
	t.Helper()
	out, _ := exec.Command("pdfsig", path).CombinedOutput()
	return string(out)
}

// TestSealEndToEnd onboards two institutions with the CLI, registers their systems as clients
// bound to them, and seals through the real binary's API: each client gets its own
// institution's seal and never another's; bad input and bad tokens are refused and sign
// nothing; a batch streams one part a document; `vula seal` seals a folder and resumes.
func TestSealEndToEnd(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "pdfsig", "pdftotext", "openssl", "unzip")
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	vula(t, env, "orgs", "create", "tax", "--name", "Tax Administration", "--registry-number", "810000001")
	vula(t, env, "orgs", "create", "health", "--name", "Health Insurance Fund", "--registry-number", "810000002")
	var orgs []struct {
		ID, Identifier string
		SealKey        string `json:"seal_key"`
		SealSerial     string `json:"seal_certificate_serial"`
	}
	json.Unmarshal([]byte(vula(t, env, "orgs", "list", "--output", "json")), &orgs)
	if len(orgs) != 2 || orgs[1].Identifier != "NTRXK-810000001" || orgs[1].SealSerial == "" || orgs[1].SealKey == "" {
		t.Fatalf("orgs list: %+v", orgs)
	}
	taxKey := orgs[1].SealKey
	taxSecret := sealClient(t, env, "tax-batch", "--scope", "seal", "--organization", "tax")
	healthSecret := sealClient(t, env, "health-batch", "--scope", "seal", "--organization", "health")
	looseSecret := sealClient(t, env, "loose", "--scope", "seal")
	adminSecret := sealClient(t, env, "tax-admin", "--scope", "admin", "--organization", "tax")

	srv := startReplicaAt(t, freePort(t), data, append(env, "VULA_SEAL_MAX_SIZE=300000"))
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	tax := sealHTTP(base, "tax-batch", taxSecret)
	in := signingtest.PDF("Vendim / Rešenje / Decision")
	dir := t.TempDir()

	// Each institution's client gets its own seal.
	for _, c := range []struct {
		client *http.Client
		name   string
	}{{tax, "Tax Administration"}, {sealHTTP(base, "health-batch", healthSecret), "Health Insurance Fund"}} {
		resp, body := postDoc(t, c.client, base+"/api/v1/seal?level=B-LT&reason=Registry+extract", "application/pdf", in)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || resp.Header.Get("X-Vula-Transaction") == "" {
			t.Fatalf("seal for %s: %d %s", c.name, resp.StatusCode, body)
		}
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".pdf")
		os.WriteFile(p, body, 0o600)
		if out := pdfsig(t, p); !strings.Contains(out, "Signature is Valid.") || !strings.Contains(out, c.name) {
			t.Fatalf("pdfsig of %s's seal:\n%s", c.name, out)
		}
	}

	// A visible seal in Serbian Cyrillic: pdftotext reads the text back (issue #21).
	seal := "Оверено печатом — Пореска управа"
	cresp, cyr := postDoc(t, tax, base+"/api/v1/seal?page=1&rect=36,600,400,660&text="+url.QueryEscape(seal), "application/pdf", in)
	if cresp.StatusCode != 200 {
		t.Fatalf("a Cyrillic seal: %d %s", cresp.StatusCode, cyr)
	}
	p := filepath.Join(dir, "cyrillic.pdf")
	os.WriteFile(p, cyr, 0o600)
	if out, err := exec.Command("pdftotext", "-enc", "UTF-8", p, "-").CombinedOutput(); err != nil || !strings.Contains(string(out), seal) {
		t.Fatalf("pdftotext of the Cyrillic seal: %v\n%s", err, out)
	}

	// Refusals, each with its status; none of them signs.
	big := append(signingtest.PDF("big"), bytes.Repeat([]byte("%"), 300001)...)
	encrypted, err := os.ReadFile("../internal/signing/pades/testdata/bad/encrypted.pdf") // AES-256
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		query  string
		ct     string
		body   []byte
		want   int
	}{
		{"no token", http.DefaultClient, "", "application/pdf", in, 401},
		{"a client of no institution", sealHTTP(base, "loose", looseSecret), "", "application/pdf", in, 403},
		{"a token without the seal scope", sealHTTP(base, "tax-admin", adminSecret, "admin"), "", "application/pdf", in, 403},
		{"not a PDF", tax, "", "application/pdf", []byte("this is not a PDF"), 400},
		{"a truncated PDF", tax, "", "application/pdf", in[:len(in)/2], 400},
		{"too large", tax, "", "application/pdf", big, 413},
		{"an unknown format", tax, "?format=docx", "application/pdf", in, 400},
		{"an unknown level", tax, "?level=B-Z", "application/pdf", in, 400},
		{"an encrypted PDF", tax, "", "application/pdf", encrypted, 422},
		{"seal text the font cannot draw", tax, "?text=" + url.QueryEscape("Печат 印章"), "application/pdf", in, 400},
		{"XML with a DTD", tax, "?format=xades", "application/xml",
			[]byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>`), 400},
	} {
		resp, body := postDoc(t, c.client, base+"/api/v1/seal"+c.query, c.ct, c.body)
		if resp.StatusCode != c.want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s %s, want %d and a problem", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.want)
		}
		if c.name == "an encrypted PDF" && !bytes.Contains(body, []byte("encrypted PDFs cannot be sealed")) {
			t.Errorf("%s: %s", c.name, body)
		}
	}

	// XAdES, CAdES and ASiC-E from the same API.
	xmlDoc := []byte(`<?xml version="1.0" encoding="UTF-8"?><extract><registry>810000001</registry><owner>Arta Krasniqi</owner></extract>`)
	resp, body := postDoc(t, tax, base+"/api/v1/seal?format=xades&level=B-T", "application/xml", xmlDoc)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("SignatureTimeStamp")) {
		t.Fatalf("xades: %d %s", resp.StatusCode, body)
	}
	resp, p7s := postDoc(t, tax, base+"/api/v1/seal?format=cades", "text/plain", []byte("a registry extract\n"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkcs7-signature" {
		t.Fatalf("cades: %d %s", resp.StatusCode, p7s)
	}
	os.WriteFile(filepath.Join(dir, "extract.txt"), []byte("a registry extract\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "extract.p7s"), p7s, 0o600)
	rootPEM := filepath.Join(dir, "root.pem")
	rootResp, err := http.Get(base + "/pki/root.crt")
	if err != nil {
		t.Fatal(err)
	}
	rootDER, _ := io.ReadAll(rootResp.Body)
	rootResp.Body.Close()
	os.WriteFile(filepath.Join(dir, "root.der"), rootDER, 0o600)
	if out, err := exec.Command("openssl", "x509", "-inform", "DER", "-in", filepath.Join(dir, "root.der"), "-out", rootPEM).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "extract.p7s"),
		"-content", filepath.Join(dir, "extract.txt"), "-CAfile", rootPEM, "-purpose", "any", "-out", os.DevNull).CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify of the CAdES seal: %v\n%s", err, out)
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for _, f := range []struct{ name, ct, body string }{{"decision.pdf", "application/pdf", string(in)}, {"annex.txt", "text/plain", "annex\n"}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		h.Set("Content-Type", f.ct)
		w, _ := mw.CreatePart(h)
		w.Write([]byte(f.body))
	}
	mw.Close()
	resp, zipped := postDoc(t, tax, base+"/api/v1/seal?format=asice", mw.FormDataContentType(), mp.Bytes())
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.etsi.asic-e+zip" {
		t.Fatalf("asice: %d %s", resp.StatusCode, zipped)
	}
	zp := filepath.Join(dir, "container.asice")
	os.WriteFile(zp, zipped, 0o600)
	names, _ := exec.Command("unzip", "-Z1", zp).CombinedOutput()
	if first, _, _ := strings.Cut(string(names), "\n"); first != "mimetype" || !strings.Contains(string(names), "META-INF/signature.p7s") {
		t.Fatalf("asice entries:\n%s", names)
	}

	// A batch: four parts in, four parts out, in order, the bad one refused on its own.
	mp.Reset()
	mw = multipart.NewWriter(&mp)
	for i, b := range [][]byte{signingtest.PDF("one"), signingtest.PDF("two"), []byte("not a PDF"), signingtest.PDF("four")} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="doc-%d.pdf"`, i+1))
		h.Set("Content-Type", "application/pdf")
		w, _ := mw.CreatePart(h)
		w.Write(b)
	}
	mw.Close()
	bresp, err := tax.Post(base+"/api/v1/seal/batch?level=B-T", mw.FormDataContentType(), &mp)
	if err != nil {
		t.Fatal(err)
	}
	mt, params, _ := mime.ParseMediaType(bresp.Header.Get("Content-Type"))
	if bresp.StatusCode != 200 || mt != "multipart/mixed" {
		t.Fatalf("batch: %d %s", bresp.StatusCode, bresp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bresp.Body, params["boundary"])
	var statuses []string
	for i := 1; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part)
		statuses = append(statuses, part.Header.Get("X-Vula-Status"))
		if part.Header.Get("X-Vula-Status") == "200" {
			p := filepath.Join(dir, fmt.Sprintf("batch-%d.pdf", i))
			os.WriteFile(p, b, 0o600)
			if out := pdfsig(t, p); !strings.Contains(out, "Signature is Valid.") {
				t.Fatalf("batch part %d:\n%s", i, out)
			}
		}
	}
	bresp.Body.Close()
	if strings.Join(statuses, ",") != "200,200,400,200" {
		t.Fatalf("batch statuses %v, want 200,200,400,200", statuses)
	}

	// `vula seal`: a folder of five, two already sealed by an interrupted run.
	src, out := t.TempDir(), t.TempDir()
	for i := range 5 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("extract-%d.pdf", i)), signingtest.PDF(fmt.Sprintf("extract %d", i)), 0o600)
	}
	os.WriteFile(filepath.Join(src, "notes.txt"), []byte("not sealed: not a PDF"), 0o600)
	senv := append(env, "VULA_CLIENT_SECRET="+taxSecret)
	first := vula(t, senv, "seal", src, "--out", out, "--url", base, "--client-id", "tax-batch", "--level", "B-T")
	if !strings.Contains(first, "sealed 5, already sealed 0, failed 0") {
		t.Fatalf("vula seal: %s", first)
	}
	os.Remove(filepath.Join(out, "extract-1.pdf"))
	os.Remove(filepath.Join(out, "extract-3.pdf"))
	again := vula(t, senv, "seal", src, "--out", out, "--url", base, "--client-id", "tax-batch", "--level", "B-T")
	if !strings.Contains(again, "sealed 2, already sealed 3, failed 0") {
		t.Fatalf("vula seal, resumed: %s", again)
	}
	for i := range 5 {
		if s := pdfsig(t, filepath.Join(out, fmt.Sprintf("extract-%d.pdf", i))); !strings.Contains(s, "Signature is Valid.") {
			t.Fatalf("vula seal output %d:\n%s", i, s)
		}
	}

	// Revoking health's seal certificate from the command line (another process writing the
	// database) stops health's next seal at once: the status is read at every seal.
	health := sealHTTP(base, "health-batch", healthSecret)
	if resp, body := postDoc(t, health, base+"/api/v1/seal?level=B-B", "application/pdf", in); resp.StatusCode != 200 {
		t.Fatalf("health's seal before revocation: %d %s", resp.StatusCode, body)
	}
	vula(t, env, "pki", "revoke", "--ca", "seal-ca", "--serial", orgs[0].SealSerial, "--reason", "5")
	if resp, body := postDoc(t, health, base+"/api/v1/seal?level=B-B", "application/pdf", in); resp.StatusCode != http.StatusConflict ||
		!strings.Contains(string(body), "no-seal") {
		t.Fatalf("health's seal after revocation: %d %s, want 409 no-seal", resp.StatusCode, body)
	}

	// The audit log has one signature of tax's seal key for every seal made, and only those:
	// 1 (PAdES) + 1 (Cyrillic PAdES) + 1 (XAdES) + 1 (CAdES) + 1 (ASiC-E) + 3 (batch) + 7 (vula seal).
	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var r struct{ Action, Key, Actor string }
		json.Unmarshal([]byte(line), &r)
		if r.Action == "sign" && r.Key == taxKey {
			n++
			if r.Actor != "tax-batch" {
				t.Errorf("a tax seal by %q", r.Actor)
			}
		}
	}
	if n != 15 {
		t.Fatalf("%d signatures of tax's seal key in the audit log, want 15", n)
	}
	vula(t, env, "audit", "verify")
	// Each seal is a completed transaction (stored in the commit of its signature's audit
	// record), and only seals are.
	db, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(data, "vula.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	txs, err := db.TransactionsByActor(context.Background(), "tax-batch")
	if err != nil || len(txs) != 15 {
		t.Fatalf("%d transactions of tax-batch, want 15 (%v)", len(txs), err)
	}
	for _, tx := range txs {
		if tx.Kind != "seal" || tx.State != "completed" || tx.OrganizationID != "tax" || len(tx.Digests) == 0 {
			t.Fatalf("transaction %+v", tx)
		}
	}
}
