package certs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
)

// TestServiceKey: Provision makes one key and certificate and makes no second; Current keeps
// it; once its certificate is revoked, Current refuses at once and Provision makes a new one.
func TestServiceKey(t *testing.T) {
	ctx := context.Background()
	a, m, db := openAuthority(t, t.TempDir(), "http://vula.test")
	k := NewServiceKey(ServiceKeySpec{Purpose: hsm.PurposeVerifier, Profile: Verifier, Algorithm: hsm.ECP256,
		Subject: LegalPersonName("Vula verifier", "VERIFIER", "XK")}, m, db, a, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	if _, err := k.Current(ctx); !errors.Is(err, ErrNoServiceKey) {
		t.Fatalf("before Provision: %v", err)
	}
	if err := k.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := k.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := k.Current(ctx)
	if err != nil || again != first {
		t.Fatalf("a second Provision changed the key: %v", err)
	}
	if len(first.Chain) != 2 || first.Chain[0] != first.Cert || first.Cert.Subject.CommonName != "Vula verifier" {
		t.Fatalf("chain of %d, subject %s: want the leaf and seal-ca", len(first.Chain), first.Cert.Subject)
	}
	// Another replica's ServiceKey over the same store finds the same key.
	other := NewServiceKey(k.spec, m, db, a, k.log, time.Now)
	if o, err := other.Current(ctx); err != nil || o.URI != first.URI {
		t.Fatalf("another replica: %v", err)
	}
	if err := a.Revoke(ctx, NameSealCA, first.Cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Current(ctx); !errors.Is(err, ErrNoServiceKey) {
		t.Fatalf("revoked certificate still used: %v", err)
	}
	if err := k.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if next, err := k.Current(ctx); err != nil || next.URI == first.URI {
		t.Fatalf("after revocation: %v", err)
	}
}
