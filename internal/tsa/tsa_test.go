package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

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

// memHook is the key layer's audit hook for the tests: it keeps every signature event, and
// can fail, as a database that is down would.
type memHook struct {
	mu     sync.Mutex
	events []hsm.SignEvent
	fail   bool
}

func (h *memHook) RecordSignature(_ context.Context, ev hsm.SignEvent) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		return errors.New("audit store down")
	}
	h.events = append(h.events, ev)
	return nil
}

func (h *memHook) last() hsm.SignEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.events[len(h.events)-1]
}

type fixture struct {
	hook    *memHook
	r       *Responder
	clock   *fakeClock
	dir     string
	rootPEM string
	tsaPEM  string
	chain   string
	// chainAndTSA is the chain with the TSA's certificate, for tokens that do not carry it.
	chainAndTSA string
	tsu         *certs.Issuer
}

// newFixture makes a PKI on the software backend whose timestamping unit has a key of alg,
// and a responder on it signing through the instrumented key layer.
func newFixture(t testing.TB, alg hsm.Algorithm) fixture {
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
	hook := &memHook{}
	keys := hsm.Instrument(m, hsm.NewMetrics(prometheus.NewRegistry()), hook, time.Now)
	cfg := certs.DefaultConfig()
	cfg.Policy.BaseURL = "http://127.0.0.1:8080"
	cfg.ServiceAlgorithm = alg
	a, err := certs.Open(ctx, keys, db, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := a.Certificate(certs.NameRoot)
	seal, _ := a.Certificate(certs.NameSealCA)
	tsu := a.TSA()
	clock := &fakeClock{t: time.Now(), synced: true}
	r, err := New(Config{Policy: policy, Accuracy: 500 * time.Millisecond, Qualified: true, Chain: []*x509.Certificate{seal}}, tsu.Cert, tsu.Signer, clock, quiet)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, cs ...*x509.Certificate) string {
		var b bytes.Buffer
		for _, c := range cs {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o600)
		return p
	}
	return fixture{hook: hook, r: r, clock: clock, dir: dir, tsu: tsu,
		rootPEM: write("root.pem", root), tsaPEM: write("tsa.pem", tsu.Cert), chain: write("chain.pem", seal),
		chainAndTSA: write("chain-tsa.pem", seal, tsu.Cert)}
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOpenSSLVerifies has openssl make the queries (SHA-256/384/512, with and without a nonce,
// with and without certReq) and verify the replies against the data, the root and the chain,
// for each key type the timestamping unit may have: the token is RFC 3161 as others read it.
func TestOpenSSLVerifies(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.ECP384, hsm.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t, alg)
			f.clock.t = time.Date(2026, 11, 22, 14, 5, 6, 789_012_345, time.UTC)
			srv := httptest.NewServer(f.r)
			defer srv.Close()
			data := filepath.Join(f.dir, "doc.txt")
			os.WriteFile(data, []byte("a document to timestamp"), 0o600)
			for _, q := range [][]string{
				{"-sha256", "-cert"}, {"-sha384", "-cert"}, {"-sha512", "-cert"},
				{"-sha256", "-cert", "-no_nonce"}, {"-sha512"},
			} {
				query := filepath.Join(f.dir, "q.tsq")
				openssl(t, append([]string{"ts", "-query", "-data", data, "-tspolicy", "1.3.6.1.4.1.32473.1.2", "-out", query}, q...)...)
				body, _ := os.ReadFile(query)
				resp, err := http.Post(srv.URL, "application/timestamp-query", bytes.NewReader(body))
				if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/timestamp-reply" {
					t.Fatalf("POST: %v %v", err, resp)
				}
				reply, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				// The length is known before the first byte: no chunked encoding, whose framing a
				// reply with its certificates (over net/http's 2 KiB buffer) otherwise got.
				if resp.ContentLength != int64(len(reply)) || len(resp.TransferEncoding) != 0 {
					t.Fatalf("%v: Content-Length %d, Transfer-Encoding %v for %d bytes", q, resp.ContentLength, resp.TransferEncoding, len(reply))
				}
				tsr := filepath.Join(f.dir, "r.tsr")
				os.WriteFile(tsr, reply, 0o600)
				untrusted := f.chain
				if !slices.Contains(q, "-cert") { // no certificates in the token: the verifier brings the TSA's
					untrusted = f.chainAndTSA
				}
				if out := openssl(t, "ts", "-verify", "-data", data, "-in", tsr, "-CAfile", f.rootPEM, "-untrusted", untrusted); !strings.Contains(out, "Verification: OK") {
					t.Fatalf("%v: %s", q, out)
				}
				tok, err := timestamp.ParseResponse(reply)
				if err != nil {
					t.Fatalf("%v: digitorus cannot read the token: %v", q, err)
				}
				// The token's time is the clock's, to the microsecond; it is qualified.
				if !tok.Time.Equal(f.clock.t.Truncate(time.Microsecond)) || !tok.Qualified || tok.Accuracy != 500*time.Millisecond {
					t.Fatalf("%v: time %v, qualified %v, accuracy %v", q, tok.Time, tok.Qualified, tok.Accuracy)
				}
				if got := len(tok.Certificates); slices.Contains(q, "-cert") && got != 2 || !slices.Contains(q, "-cert") && got != 0 {
					t.Fatalf("%v: %d certificates in the token", q, got)
				}
				// The signature's audit record names the token.
				ev := f.hook.last()
				if ev.Detail["serial"] != tok.SerialNumber.Text(16) || ev.Detail["imprint"] != hex.EncodeToString(tok.HashedMessage) ||
					ev.Detail["time"] != tok.Time.Format(time.RFC3339Nano) || ev.Detail["imprint_hash"] != tok.HashAlgorithm.String() ||
					ev.Actor == "" || ev.Purpose != hsm.PurposeTSA {
					t.Fatalf("%v: recorded %+v for a token with serial %x", q, ev, tok.SerialNumber)
				}
				text := openssl(t, "ts", "-reply", "-in", tsr, "-text")
				want := []string{"Status: Granted", "Policy OID: 1.3.6.1.4.1.32473.1.2", "0x01F4 millis", "Time stamp: Nov 22 14:05:06.789012 2026 GMT"}
				if slices.Contains(q, "-no_nonce") {
					want = append(want, "Nonce: unspecified")
				} else {
					want = append(want, "Nonce: 0x")
				}
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("%v: reply lacks %q:\n%s", q, w, text)
					}
				}
			}
		})
	}
}

// Every token has its own serial.
func TestSerialsUnique(t *testing.T) {
	f := newFixture(t, hsm.ECP256)
	d := sha256.Sum256([]byte("x"))
	q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:]}).Marshal()
	seen := map[string]bool{}
	for i := 0; i < 500; i++ {
		reply, err := f.r.Respond(context.Background(), q, "t")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := timestamp.ParseResponse(reply)
		if err != nil {
			t.Fatal(err)
		}
		s := tok.SerialNumber.Text(16)
		if seen[s] || tok.SerialNumber.Sign() <= 0 || tok.SerialNumber.BitLen() > 160 {
			t.Fatalf("serial %s: repeated or out of range", s)
		}
		seen[s] = true
	}
}

// A token whose audit record cannot be written is not handed out.
func TestUnrecordedTokenWithheld(t *testing.T) {
	f := newFixture(t, hsm.ECP256)
	d := sha256.Sum256([]byte("x"))
	q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:]}).Marshal()
	f.hook.fail = true
	reply, err := f.r.Respond(context.Background(), q, "t")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := timestamp.ParseResponse(reply)
	if err == nil || resp != nil {
		t.Fatalf("a token went out unrecorded: %v", err)
	}
	p := filepath.Join(t.TempDir(), "r.tsr")
	os.WriteFile(p, reply, 0o600)
	if text := openssl(t, "ts", "-reply", "-in", p, "-text"); !strings.Contains(text, "Failure info: unspecified failure") &&
		!strings.Contains(text, "Status: Rejected") {
		t.Fatalf("want a rejection:\n%s", text)
	}
}

// A signer that does not audit is refused, and so is a key that is not the certificate's.
func TestNewRefuses(t *testing.T) {
	f := newFixture(t, hsm.ECP256)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := New(Config{Policy: policy}, f.tsu.Cert, k, f.clock, quiet); err == nil {
		t.Error("an unaudited signer was taken")
	}
	other := hsm.Instrument(otherManager(t), hsm.NewMetrics(prometheus.NewRegistry()), f.hook, time.Now)
	ok, err := other.CreateKey(context.Background(), hsm.KeySpec{Label: "tsa-2", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA})
	if err != nil {
		t.Fatal(err)
	}
	s, err := other.Signer(context.Background(), ok.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Policy: policy}, f.tsu.Cert, s, f.clock, quiet); err == nil {
		t.Error("a key that is not the certificate's was taken")
	}
	if _, err := New(Config{}, f.tsu.Cert, f.tsu.Signer, f.clock, quiet); err == nil {
		t.Error("no policy was taken")
	}
}

func otherManager(t *testing.T) hsm.Manager {
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(context.Background(), software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, hsm.ECP256)
	digest := sha256.Sum256([]byte("x"))
	query := func(h crypto.Hash, msg []byte, policy asn1.ObjectIdentifier) []byte {
		q, err := (&timestamp.Request{HashAlgorithm: h, HashedMessage: msg, TSAPolicyOID: policy}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	sha1d := sha1.Sum([]byte("x"))
	withExt, err := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: digest[:],
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 9}, Value: []byte{5, 0}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
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
		{"unknown extension", withExt, "the requested extension is not supported by the TSA", true},
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

// FuzzRespond: any body gets a reply (a token or a rejection), never a panic. Seeded with
// openssl's queries in testdata/ (SHA-1/256/384/512, nonce or not, certReq, another policy).
func FuzzRespond(f *testing.F) {
	fx := newFixture(f, hsm.ECP256)
	seeds, _ := filepath.Glob("testdata/*.tsq")
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/")
	}
	for _, p := range seeds {
		q, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(q)
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, q []byte) {
		reply, err := fx.r.Respond(context.Background(), q, "fuzz")
		if err != nil || len(reply) == 0 {
			t.Fatalf("no reply: %v", err)
		}
	})
}
