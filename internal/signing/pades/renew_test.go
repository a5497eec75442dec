package pades_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

func renewBytes(t *testing.T, env *signingtest.Env, in []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := pades.Renew(context.Background(), bytes.NewReader(in), int64(len(in)), &out, env.TSA, env.PKI, 0); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Renewing a B-LT document adds a document timestamp; renewing a B-LTA one adds the last
// document timestamp's validation data to the DSS, then another document timestamp. The
// original bytes are kept; qpdf, pdfsig and openssl (cms, ts, ocsp) accept every stage. A
// B-T document (no DSS) is refused.
func TestRenew(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	in := pdfBytes(t, pdfOpts{pages: 1})

	lt := signBytes(t, env.Seal, in, levelOpts(env, signing.LevelLT))
	r1 := renewBytes(t, env, lt)
	if !bytes.HasPrefix(r1, lt) {
		t.Fatal("renewal changed the document's bytes")
	}
	checkSigned(t, env, nss, r1, 1)
	if n := len(signatures(t, r1)); n != 2 {
		t.Fatalf("%d signature fields after renewing B-LT, want 2 (the signature and a document timestamp)", n)
	}

	lta := signBytes(t, env.Seal, in, levelOpts(env, signing.LevelLTA))
	ocspsBefore := len(dssStreams(t, lta, "OCSPs"))
	r2 := renewBytes(t, env, lta)
	r3 := renewBytes(t, env, r2)
	if !bytes.HasPrefix(r3, r2) || !bytes.HasPrefix(r2, lta) {
		t.Fatal("renewal changed the document's bytes")
	}
	checkSigned(t, env, nss, r3, 1)
	if n := len(signatures(t, r3)); n != 4 {
		t.Fatalf("%d signature fields after two renewals of B-LTA, want 4", n)
	}
	if n := len(dssStreams(t, r3, "OCSPs")); n < ocspsBefore+2 {
		t.Fatalf("%d OCSP answers in the DSS after two renewals, had %d: no fresh data for the document timestamps' TSA", n, ocspsBefore)
	}

	bt := signBytes(t, env.Seal, in, levelOpts(env, signing.LevelT))
	var out bytes.Buffer
	if err := pades.Renew(context.Background(), bytes.NewReader(bt), int64(len(bt)), &out, env.TSA, env.PKI, 0); !errorIs(err, signing.ErrInvalid) || out.Len() > 0 {
		t.Fatalf("renewing B-T: %v (%d bytes written), want ErrInvalid and nothing", err, out.Len())
	}
	if err := pades.Renew(context.Background(), bytes.NewReader([]byte("junk")), 4, &out, env.TSA, env.PKI, 0); !errorIs(err, signing.ErrInvalid) {
		t.Fatalf("renewing junk: %v", err)
	}
}
