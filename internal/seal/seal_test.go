package seal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// counter is the audit hook: it counts the signatures of each purpose.
type counter struct {
	mu sync.Mutex
	n  map[hsm.Purpose]int
}

func (c *counter) RecordSignature(_ context.Context, ev hsm.SignEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[hsm.Purpose]int{}
	}
	c.n[ev.Purpose]++
	return nil
}

func (c *counter) of(p hsm.Purpose) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

type fixture struct {
	env  *signingtest.Env
	svc  *seal.Service
	hook *counter
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	hook := &counter{}
	env := signingtest.New(t, signingtest.Options{Hook: hook})
	svc := seal.New(seal.Config{Country: "XK", MaxSize: 1 << 20}, env.Keys, env.PKI, env.DB, env.TSA,
		slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	return fixture{env: env, svc: svc, hook: hook}
}

func (f fixture) onboard(t testing.TB, id, name, reg string) seal.Onboarded {
	t.Helper()
	o, err := f.svc.Onboard(context.Background(), seal.Organization{ID: id, Name: name, RegistryNumber: reg})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// bind registers a sealing client for org ("" for none).
func (f fixture) bind(t *testing.T, client, org string) {
	t.Helper()
	if err := f.env.DB.CreateClient(context.Background(), store.Client{ID: client, GrantTypes: []string{"client_credentials"},
		Scopes: []string{"seal"}, TokenEndpointAuthMethod: "client_secret_basic", OrganizationID: org, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func TestOnboard(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	o := f.onboard(t, "tax", "Tax Administration", "810000001")
	if o.Organization.Identifier != "NTRXK-810000001" {
		t.Fatalf("identifier %q", o.Organization.Identifier)
	}
	var orgID string
	for _, n := range o.Certificate.Subject.Names {
		if n.Type.Equal(certs.OIDOrganizationIdentity) {
			orgID, _ = n.Value.(string)
		}
	}
	if orgID != "NTRXK-810000001" || o.Certificate.Subject.CommonName != "Tax Administration" {
		t.Fatalf("seal certificate subject %s", o.Certificate.Subject)
	}
	k, err := f.env.Keys.Key(ctx, o.KeyURI)
	if err != nil || k.Purpose != hsm.SealPurpose("tax") {
		t.Fatalf("seal key %+v, %v", k, err)
	}
	// openssl accepts the seal certificate under the platform's root.
	cert := filepath.Join(f.env.Dir, "seal.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Certificate.Raw}), 0o600)
	if out, err := exec.Command("openssl", "verify", "-CAfile", f.env.RootPEM, "-untrusted", f.env.ChainPEM, cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}

	before, _ := f.env.Keys.Keys(ctx)
	if _, err := f.svc.Onboard(ctx, seal.Organization{ID: "tax", Name: "Another", RegistryNumber: "810000009"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second onboarding of tax: %v, want ErrConflict", err)
	}
	if after, _ := f.env.Keys.Keys(ctx); len(after) != len(before) {
		t.Fatalf("a refused onboarding made a key: %d keys, were %d", len(after), len(before))
	}
	for _, bad := range []seal.Organization{
		{ID: "Tax Office", Name: "x", RegistryNumber: "1"},
		{ID: "tax2", Name: "", RegistryNumber: "1"},
		{ID: "tax3", Name: "x", RegistryNumber: "1/2"},
	} {
		if _, err := f.svc.Onboard(ctx, bad); !errors.Is(err, seal.ErrInvalidOrg) {
			t.Errorf("Onboard(%+v): %v, want ErrInvalidOrg", bad, err)
		}
	}
}

func TestOrganizationOf(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.onboard(t, "tax", "Tax Administration", "810000001")
	f.bind(t, "tax-batch", "tax")
	f.bind(t, "loose", "")
	if org, err := f.svc.OrganizationOf(ctx, "tax-batch"); err != nil || org != "tax" {
		t.Fatalf("tax-batch acts for %q, %v", org, err)
	}
	if _, err := f.svc.OrganizationOf(ctx, "loose"); !errors.Is(err, seal.ErrNotBound) {
		t.Fatalf("an unbound client: %v, want ErrNotBound", err)
	}
}

// TestOrganizationOfCached: a client's organization is read again once orgTTL (5 s) has passed,
// so a client rebound (here, in the store, as another replica or the CLI would) acts for its new
// organization from then on; a client removed stops sealing as soon as its entry expires.
func TestOrganizationOfCached(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	svc := seal.New(seal.Config{Country: "XK", MaxSize: 1 << 20}, f.env.Keys, f.env.PKI, f.env.DB, f.env.TSA,
		slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	f.bind(t, "tax-batch", "tax")
	if org, err := svc.OrganizationOf(ctx, "tax-batch"); err != nil || org != "tax" {
		t.Fatalf("tax-batch acts for %q, %v", org, err)
	}
	if err := f.env.DB.UpdateClient(ctx, "tax-batch", func(c store.Client) (store.Client, error) {
		c.OrganizationID = "customs"
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	advance(4 * time.Second)
	if org, _ := svc.OrganizationOf(ctx, "tax-batch"); org != "tax" {
		t.Fatalf("within the TTL: %q, want the cached tax", org)
	}
	advance(2 * time.Second)
	if org, err := svc.OrganizationOf(ctx, "tax-batch"); err != nil || org != "customs" {
		t.Fatalf("after the TTL: %q, %v, want customs", org, err)
	}
	if err := f.env.DB.DeleteClient(ctx, "tax-batch"); err != nil {
		t.Fatal(err)
	}
	advance(6 * time.Second)
	if _, err := svc.OrganizationOf(ctx, "tax-batch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a removed client after the TTL: %v, want ErrNotFound", err)
	}
}

func doc(name string, b []byte) seal.Document {
	return seal.Document{Name: name, MimeType: "application/pdf", R: bytes.NewReader(b), Size: int64(len(b))}
}

func TestSealPAdES(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.onboard(t, "tax", "Tax Administration", "810000001")
	in := signingtest.PDF("Vendim / Resenje / Decision")
	p, err := seal.ParseParams(params{"format": "pades", "level": "B-LT"}.get)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := f.svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc("decision.pdf", in)}, p, &out)
	if err != nil {
		t.Fatal(err)
	}
	if f.hook.of(hsm.SealPurpose("tax")) != 1 {
		t.Fatalf("%d seal signatures, want 1", f.hook.of(hsm.SealPurpose("tax")))
	}
	tx, err := f.env.DB.Transaction(ctx, res.Transaction)
	want := sha256.Sum256(in)
	if err != nil || tx.OrganizationID != "tax" || tx.Actor != "tax-batch" || len(tx.Digests) != 1 || !bytes.Equal(tx.Digests[0], want[:]) ||
		tx.Format != "pades" || tx.Level != "B-LT" {
		t.Fatalf("transaction %+v, %v", tx, err)
	}
	testenv.Need(t, "pdfsig")
	path := f.env.WriteFile(t, "sealed.pdf", out.Bytes())
	got, _ := exec.Command("pdfsig", path).CombinedOutput()
	if !strings.Contains(string(got), "Signature is Valid.") || !strings.Contains(string(got), "Tax Administration") {
		t.Fatalf("pdfsig:\n%s", got)
	}
}

// Refused inputs make no signature and no transaction.
func TestSealRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.onboard(t, "tax", "Tax Administration", "810000001")
	f.onboard(t, "health", "Health Insurance Fund", "810000002")
	pades, _ := seal.ParseParams(params{}.get)
	big := make([]byte, 1<<20+1)
	encrypted, err := os.ReadFile("../signing/pades/testdata/bad/encrypted.pdf")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		org  string
		docs []seal.Document
		want error
	}{
		{"not a PDF", "tax", []seal.Document{doc("a.pdf", []byte("hello, not a PDF"))}, signing.ErrInvalid},
		{"truncated", "tax", []seal.Document{doc("a.pdf", signingtest.PDF("x")[:200])}, signing.ErrInvalid},
		{"too large", "tax", []seal.Document{doc("a.pdf", big)}, signing.ErrTooLarge},
		{"two PDFs", "tax", []seal.Document{doc("a.pdf", signingtest.PDF("a")), doc("b.pdf", signingtest.PDF("b"))}, signing.ErrInvalid},
		{"unknown organization", "nobody", []seal.Document{doc("a.pdf", signingtest.PDF("a"))}, seal.ErrNoSeal},
		// AES-256 (qpdf --encrypt user owner 256): refused as such, not as "malformed".
		{"encrypted", "tax", []seal.Document{doc("a.pdf", encrypted)}, signing.ErrUnsupported},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := f.svc.Seal(ctx, "tax-batch", c.org, c.docs, pades, &out)
			if !errors.Is(err, c.want) {
				t.Fatalf("Seal: %v, want %v", err, c.want)
			}
			if c.name == "encrypted" && !strings.Contains(err.Error(), "encrypted PDFs cannot be sealed") {
				t.Errorf("Seal: %v, want it to say encrypted PDFs cannot be sealed", err)
			}
		})
	}
	if n := f.hook.of(hsm.SealPurpose("tax")); n != 0 {
		t.Fatalf("%d seal signatures for refused inputs", n)
	}
	if txs, err := f.env.DB.TransactionsByActor(ctx, "tax-batch"); err != nil || len(txs) != 0 {
		t.Fatalf("transactions for refused inputs: %v, %v", txs, err)
	}
}

// A revoked seal certificate seals nothing, at once.
func TestSealRevoked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	o := f.onboard(t, "tax", "Tax Administration", "810000001")
	if _, err := f.svc.Sealer(ctx, "tax"); err != nil {
		t.Fatal(err)
	}
	if err := f.env.PKI.Revoke(ctx, certs.NameSealCA, o.Certificate.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Sealer(ctx, "tax"); !errors.Is(err, seal.ErrNoSeal) {
		t.Fatalf("Sealer after revocation: %v, want ErrNoSeal", err)
	}
}

func TestParseParams(t *testing.T) {
	for _, c := range []struct {
		q    map[string]string
		want error
	}{
		{map[string]string{}, nil},
		{map[string]string{"format": "xades", "packaging": "detached", "level": "lta"}, nil},
		{map[string]string{"format": "cades", "level": "B-T"}, nil},
		{map[string]string{"format": "pades", "page": "1", "rect": "10,10,200,60", "text": "Sealed"}, nil},
		{map[string]string{"format": "pades", "text": "Оверено печатом — Пореска управа\nKosovës, Ελλάδα"}, nil},
		{map[string]string{"format": "pades", "text": "Оверено 印章"}, signing.ErrInvalid}, // the font has no Han
		{map[string]string{"format": "docx"}, signing.ErrInvalid},
		{map[string]string{"level": "B-X"}, signing.ErrInvalid},
		{map[string]string{"format": "cades", "level": "B-LT"}, nil},
		{map[string]string{"format": "asice", "level": "B-LTA"}, nil},
		{map[string]string{"format": "pades", "packaging": "detached"}, signing.ErrInvalid},
		{map[string]string{"format": "xades", "page": "1"}, signing.ErrInvalid},
		{map[string]string{"rect": "1,2,3"}, signing.ErrInvalid},
		{map[string]string{"rect": "10,10,5,60"}, signing.ErrInvalid},
		{map[string]string{"page": "0"}, signing.ErrInvalid},
		{map[string]string{"certify": "maybe"}, signing.ErrInvalid},
		{map[string]string{"reason": strings.Repeat("x", 257)}, signing.ErrInvalid},
	} {
		_, err := seal.ParseParams(params(c.q).get)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("ParseParams(%v): %v, want %v", c.q, err, c.want)
		}
	}
}

type params map[string]string

func (p params) get(k string) string { return p[k] }
