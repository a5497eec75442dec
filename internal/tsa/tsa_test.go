package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

var policy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 2}

// fakeClock is injected to test the time source: fixed time, and a switch for "not synchronised".
type fakeClock struct {
	t      time.Time
	synced bool
}

func (c *fakeClock) Now() time.Time { return c.t }
func (c *fakeClock) Synced(context.Context) error {
	if !c.synced {
		return errors.New("not synchronised")
	}
	return nil
}

// memRecorder keeps what the responder records, for the test to read.
type memRecorder struct{ tokens []Token }

func (m *memRecorder) RecordToken(_ context.Context, t Token) error {
	m.tokens = append(m.tokens, t)
	return nil
}

type fixture struct {
	rec     *memRecorder
	r       *Responder
	clock   *fakeClock
	dir     string
	rootPEM string
	tsaPEM  string
	chain   string
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "vula.db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); m.Close() })
	cfg := certs.DefaultConfig()
	cfg.Policy.BaseURL = "http://127.0.0.1:8080"
	a, err := certs.Open(ctx, m, db, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := a.Certificate(certs.NameRoot)
	seal, _ := a.Certificate(certs.NameSealCA)
	tsu := a.TSA()
	clock := &fakeClock{t: time.Now(), synced: true}
	rec := &memRecorder{}
	r := New(Config{Policy: policy, Accuracy: 500 * time.Millisecond, Qualified: true, Chain: []*x509.Certificate{seal}}, tsu.Cert, tsu.Signer, clock, rec, quiet)
	write := func(name string, cs ...*x509.Certificate) string {
		var b bytes.Buffer
		for _, c := range cs {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o600)
		return p
	}
	return fixture{rec: rec, r: r, clock: clock, dir: dir, rootPEM: write("root.pem", root), tsaPEM: write("tsa.pem", tsu.Cert), chain: write("chain.pem", seal)}
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOpenSSLVerifies has openssl make the query and verify the reply against the data, the
// root and the chain: the token is RFC 3161 as others read it.
func TestOpenSSLVerifies(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.r)
	defer srv.Close()
	data := filepath.Join(f.dir, "doc.txt")
	os.WriteFile(data, []byte("a document to timestamp"), 0o600)
	for _, alg := range []string{"-sha256", "-sha384", "-sha512"} {
		query := filepath.Join(f.dir, "q.tsq")
		openssl(t, "ts", "-query", "-data", data, alg, "-cert", "-tspolicy", "1.3.6.1.4.1.32473.1.2", "-out", query)
		body, _ := os.ReadFile(query)
		resp, err := http.Post(srv.URL, "application/timestamp-query", bytes.NewReader(body))
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/timestamp-reply" {
			t.Fatalf("POST: %v %v", err, resp)
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tsr := filepath.Join(f.dir, "r.tsr")
		os.WriteFile(tsr, reply, 0o600)
		out := openssl(t, "ts", "-verify", "-data", data, "-in", tsr, "-CAfile", f.rootPEM, "-untrusted", f.chain)
		if !strings.Contains(out, "Verification: OK") {
			t.Fatalf("%s: %s", alg, out)
		}
		tok, _ := timestamp.ParseResponse(reply)
		last := f.rec.tokens[len(f.rec.tokens)-1]
		if last.Serial.Cmp(tok.SerialNumber) != 0 || !bytes.Equal(last.Digest, tok.HashedMessage) || !last.Time.Equal(tok.Time) || last.Requester == "" {
			t.Fatalf("%s: recorded %+v for a token with serial %x", alg, last, tok.SerialNumber)
		}
		text := openssl(t, "ts", "-reply", "-in", tsr, "-text")
		for _, want := range []string{"Status: Granted", "Policy OID: 1.3.6.1.4.1.32473.1.2", "0x01F4 millis", "Nonce: 0x"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: reply lacks %q:\n%s", alg, want, text)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	digest := sha256.Sum256([]byte("x"))
	query := func(h crypto.Hash, msg []byte, policy asn1.ObjectIdentifier) []byte {
		q, err := (&timestamp.Request{HashAlgorithm: h, HashedMessage: msg, TSAPolicyOID: policy}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	sha1d := sha1.Sum([]byte("x"))
	for _, tc := range []struct {
		name  string
		query []byte
		want  string
		clock bool
	}{
		{"sha1", query(crypto.SHA1, sha1d[:], nil), "unrecognized or unsupported algorithm identifier", true},
		{"short digest", query(crypto.SHA256, digest[:20], nil), "the data submitted has the wrong format", true},
		{"other policy", query(crypto.SHA256, digest[:], asn1.ObjectIdentifier{1, 2, 3}), "the requested TSA policy is not supported by the TSA", true},
		{"garbage", []byte("not a query"), "transaction not permitted or supported", true},
		{"clock not synchronised", query(crypto.SHA256, digest[:], nil), "the TSA's time source is not available", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.synced = tc.clock
			defer func() { f.clock.synced = true }()
			reply, err := f.r.Respond(context.Background(), tc.query, "test")
			if err != nil {
				t.Fatal(err)
			}
			// openssl reads the rejection and names its failure info (in its own words).
			p := filepath.Join(t.TempDir(), "r.tsr")
			os.WriteFile(p, reply, 0o600)
			text := openssl(t, "ts", "-reply", "-in", p, "-text")
			if !strings.Contains(text, "Status: Rejected") || !strings.Contains(text, "Failure info: "+tc.want) {
				t.Fatalf("want %s:\n%s", tc.want, text)
			}
		})
	}
	// HTTP: too large, wrong content type.
	srv := httptest.NewServer(f.r)
	defer srv.Close()
	resp, _ := http.Post(srv.URL, "application/timestamp-query", bytes.NewReader(make([]byte, 70<<10)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", resp.StatusCode)
	}
	resp, _ = http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("wrong type: %d", resp.StatusCode)
	}
}

// FuzzRespond: any body gets a reply (a token or a rejection), never a panic.
func FuzzRespond(f *testing.F) {
	fx := newFixture(f)
	d := sha256.Sum256([]byte("seed"))
	good, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:], Certificates: true}).Marshal()
	f.Add(good)
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, q []byte) {
		reply, err := fx.r.Respond(context.Background(), q, "fuzz")
		if err != nil || len(reply) == 0 {
			t.Fatalf("no reply: %v", err)
		}
	})
}
