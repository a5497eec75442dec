package validation_test

import (
	"bytes"
	"context"
	"encoding/asn1"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// CAdES at B-LT and B-LTA validates offline (no Fetch) from its certificate-values and
// revocation-values; each archive-time-stamp-v3 is checked against the imprint recomputed
// from the signature. Renewed by a second TSA whose certificate outlives the first's, the
// signature still passes five years on, when the signer's and the first TSA's certificates
// have expired: the second archive timestamp keeps the first alive, and the first the
// signature. A changed certificate value breaks the archive timestamps; changed content the
// signature.
func TestCAdESLongTermOffline(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	tsa2, _ := longTSA(t, env, 8)
	ctx := context.Background()
	content := []byte("Vendim nr. 42/2026\n")
	const year = 365 * 24 * time.Hour
	at := func(d time.Duration, c []byte) validation.Options {
		return validation.Options{TrustAnchors: anchors(env), Content: bytes.NewReader(c), ContentSize: int64(len(c)),
			Time: func() time.Time { return time.Now().Add(d) }}
	}
	sign := func(o cades.Options) []byte {
		t.Helper()
		sig, err := cades.Sign(ctx, env.Seal, bytes.NewReader(content), o)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	bt := sign(cades.Options{Timestamper: env.TSA})
	lt := sign(cades.Options{Timestamper: env.TSA, Revocation: env.PKI})
	lta := sign(cades.Options{Timestamper: env.TSA, Revocation: env.PKI, Archive: true})
	renewed, err := cades.AddArchiveTimestamp(ctx, lta, tsa2, env.PKI)
	if err != nil {
		t.Fatal(err)
	}

	rep := validate(t, bt, at(0, content))
	expect(t, rep, validation.Indeterminate, validation.TryLater) // B-T carries no revocation data
	for _, c := range []struct {
		name   string
		sig    []byte
		level  signing.Level
		nAts   int
		future bool
	}{
		{"B-LT", lt, signing.LevelLT, 0, false},
		{"B-LTA", lta, signing.LevelLTA, 1, false},
		{"renewed", renewed, signing.LevelLTA, 2, false},
		{"renewed, five years on", renewed, signing.LevelLTA, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d time.Duration
			if c.future {
				d = 5 * year
			}
			rep := validate(t, c.sig, at(d, content))
			expect(t, rep, validation.TotalPassed, "")
			s := rep.Signatures[0]
			if s.Level != c.level || s.Format != "CAdES-BASELINE" {
				t.Fatalf("level %s\n%s", s.Level, rep.Text())
			}
			n := 0
			for _, ts := range s.Timestamps {
				if ts.Kind == "archive-timestamp" {
					n++
					if ts.Indication != validation.TotalPassed {
						t.Fatalf("%s: %s\n%s", ts.ID, ts.Indication, rep.Text())
					}
				}
			}
			if n != c.nAts {
				t.Fatalf("%d archive timestamps, want %d\n%s", n, c.nAts, rep.Text())
			}
			if c.future && !strings.Contains(checkMessage(s.Timestamps[1], "proof-of-existence"), "sig1-ats2 covers it") {
				t.Fatalf("the first archive timestamp is not kept alive by the second\n%s", dump(t, rep))
			}
		})
	}
	// Not renewed, five years on: the only archive timestamp's TSA has expired.
	expect(t, validate(t, lta, at(5*year, content)), validation.Indeterminate, validation.OutOfBoundsNoPOE)

	// A certificate value changed after the archive timestamps (a byte inside its signature
	// bits): the hash indexes no longer match.
	oid := asn1OID(t, cades.OIDCertValues)
	i := bytes.Index(renewed, oid)
	if i < 0 {
		t.Fatal("no certificate-values")
	}
	var attrSet asn1.RawValue // the attribute's SET of values, after its type
	if _, err := asn1.Unmarshal(renewed[i+len(oid):], &attrSet); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(renewed)
	tampered[bytes.Index(renewed, attrSet.FullBytes)+len(attrSet.FullBytes)-1] ^= 1
	rep = validate(t, tampered, at(0, content))
	expect(t, rep, validation.TotalFailed, validation.HashFailure)
	if !strings.Contains(rep.Text(), "no longer holds") {
		t.Fatalf("%s", rep.Text())
	}
	expect(t, validate(t, renewed, at(0, []byte("Vendim nr. 43/2026\n"))), validation.TotalFailed, validation.HashFailure)
}

func openBytes(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func asn1OID(t *testing.T, oid asn1.ObjectIdentifier) []byte {
	t.Helper()
	b, err := asn1.Marshal(oid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An ASiC-E container with CAdES at B-LT and at B-LTA (renewed once) validates offline.
func TestASiCCAdESLongTermOffline(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	files := []asic.File{{Name: "vendim.txt", MimeType: "text/plain", Open: openBytes([]byte("Vendim 42\n"))}}
	for _, c := range []struct {
		level signing.Level
		renew bool
	}{{signing.LevelLT, false}, {signing.LevelLTA, false}, {signing.LevelLTA, true}} {
		var buf bytes.Buffer
		o := cades.Options{SigningTime: time.Now(), Timestamper: env.TSA, Revocation: env.PKI, Archive: c.level == signing.LevelLTA}
		if err := asic.WriteCAdES(ctx, &buf, env.Seal, files, o); err != nil {
			t.Fatal(err)
		}
		doc := buf.Bytes()
		if c.renew {
			var out bytes.Buffer
			if err := asic.Renew(ctx, bytes.NewReader(doc), int64(len(doc)), &out, asic.Renewers{
				CAdES: func(ctx context.Context, p7s []byte) ([]byte, error) {
					return cades.AddArchiveTimestamp(ctx, p7s, env.TSA, env.PKI)
				},
			}); err != nil {
				t.Fatal(err)
			}
			doc = out.Bytes()
		}
		rep := validate(t, doc, validation.Options{TrustAnchors: anchors(env)})
		expect(t, rep, validation.TotalPassed, "")
		if rep.Signatures[0].Level != c.level {
			t.Fatalf("level %s, want %s\n%s", rep.Signatures[0].Level, c.level, rep.Text())
		}
	}
}
