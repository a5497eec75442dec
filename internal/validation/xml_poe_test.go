package validation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// renewingTSA answers the first request (xades' SignatureTimeStamp) with first and every
// later one (its ArchiveTimeStamp) with archive: xades.Options has one Timestamper for both,
// and a trust service stamps the archive with its longest-lived unit. It records what the
// archive TSA was asked to stamp.
type renewingTSA struct {
	first, archive signing.Timestamper
	mu             sync.Mutex
	calls          int
	digest         []byte
	hash           crypto.Hash
}

var _ signing.Timestamper = (*renewingTSA)(nil)

func (r *renewingTSA) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	r.mu.Lock()
	r.calls++
	n := r.calls
	if n > 1 {
		r.hash, r.digest = h, append([]byte(nil), digest...)
	}
	r.mu.Unlock()
	if n == 1 {
		return r.first.Timestamp(ctx, h, digest)
	}
	return r.archive.Timestamp(ctx, h, digest)
}

var reArchiveToken = regexp.MustCompile(`(?s)<xadesv141:ArchiveTimeStamp\b.*?<xades:EncapsulatedTimeStamp>([^<]*)</xades:EncapsulatedTimeStamp>`)

// TestXAdESLongTermProofOfExistence is TestLongTermProofOfExistence for XAdES: the signer's
// and Env.TSA's certificates last two years, the second TSA's eight; five years on, a B-LTA
// whose ArchiveTimeStamp comes from the second TSA still passes, because the archive timestamp
// proves that the signature, its SignatureTimeStamp and its validation values existed while
// their certificates were valid. (xades makes one ArchiveTimeStamp and cannot renew a
// signature with a second, so a chain of archive timestamps is not tested here.)
func TestXAdESLongTermProofOfExistence(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	tsa2, tsa2Cert := longTSA(t, env, 8)
	at := func(d time.Duration) validation.Options {
		return validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI},
			Time: func() time.Time { return time.Now().Add(d) }}
	}
	const year = 365 * 24 * time.Hour
	later := at(5 * year)
	if tsu := env.PKI.TSA().Cert; !env.Seal.Cert.NotAfter.Before(later.Time()) || !tsu.NotAfter.Before(later.Time()) || !tsa2Cert.NotAfter.After(later.Time()) {
		t.Fatalf("the times do not make the case: signer until %v, TSA until %v, TSA 2 until %v", env.Seal.Cert.NotAfter, tsu.NotAfter, tsa2Cert.NotAfter)
	}
	sign := func(level signing.Level, ts signing.Timestamper) []byte {
		out, err := xades.Sign(context.Background(), strings.NewReader(invoiceXML), env.Seal,
			xades.Options{Level: level, Packaging: xades.Enveloped, Timestamper: ts, Revocation: env.PKI})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("an archive timestamp of a TSA still valid", func(t *testing.T) {
		r := &renewingTSA{first: env.TSA, archive: tsa2}
		doc := sign(signing.LevelLTA, r)
		if r.calls != 2 {
			t.Fatalf("%d timestamp requests, want the signature's and the archive's", r.calls)
		}
		m := reArchiveToken.FindSubmatch(doc)
		if m == nil {
			t.Fatalf("no ArchiveTimeStamp in\n%s", doc)
		}
		token, err := base64.StdEncoding.DecodeString(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		verifyDigestTokenWithOpenSSL(t, env, token, r.hash, r.digest, tsa2Cert)

		for _, o := range []validation.Options{at(0), later} {
			rep := validate(t, doc, o)
			expect(t, rep, validation.TotalPassed, "")
			s := rep.Signatures[0]
			if s.Level != signing.LevelLTA || len(s.Timestamps) != 2 || s.Timestamps[1].Kind != "archive-timestamp" || s.Timestamps[1].Indication != validation.TotalPassed {
				t.Fatalf("%s", dump(t, rep))
			}
			ats := s.Timestamps[1]
			// The signature's proof of existence is its own timestamp's, before the archive one.
			if !s.ProofOfExistence.Equal(*s.Timestamps[0].TimestampTime) || s.ProofOfExistence.After(*ats.TimestampTime) {
				t.Fatalf("POE %v\n%s", s.ProofOfExistence, dump(t, rep))
			}
			if o.Time().After(env.Seal.Cert.NotAfter) {
				if !strings.Contains(checkMessage(s.Timestamps[0], "proof-of-existence"), ats.ID+" covers it") ||
					!strings.Contains(checkMessage(s, "chain"), "at the proof of existence") {
					t.Fatalf("the expired certificates are not validated at the archive timestamp's proof\n%s", dump(t, rep))
				}
			}
			// The newest archive timestamp has nothing later: it is validated now.
			if hasCheck(ats, "proof-of-existence", "INFO") {
				t.Fatalf("%s", dump(t, rep))
			}
		}
		// The second TSA's certificate has expired too (nine years on): nothing proves the
		// archive timestamp, so nothing before it either.
		rep := validate(t, doc, at(9*year))
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		if s := rep.Signatures[0]; s.Level == signing.LevelLTA || s.Timestamps[1].SubIndication != validation.OutOfBoundsNoPOE {
			t.Fatalf("%s", dump(t, rep))
		}
	})

	t.Run("B-LT after the certificates expired", func(t *testing.T) {
		doc := sign(signing.LevelLT, env.TSA)
		expect(t, validate(t, doc, at(0)), validation.TotalPassed, "")
		rep := validate(t, doc, later)
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		s := rep.Signatures[0]
		if len(s.Timestamps) != 1 || s.Timestamps[0].SubIndication != validation.OutOfBoundsNoPOE || !hasCheck(s, "chain", "INDETERMINATE") {
			t.Fatalf("%s", dump(t, rep))
		}
	})

	t.Run("B-LTA whose only archive timestamp has expired", func(t *testing.T) {
		doc := sign(signing.LevelLTA, env.TSA)
		rep := validate(t, doc, at(0))
		expect(t, rep, validation.TotalPassed, "")
		if rep.Signatures[0].Level != signing.LevelLTA {
			t.Fatalf("%s", dump(t, rep))
		}
		rep = validate(t, doc, later)
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		s := rep.Signatures[0]
		if s.Level == signing.LevelLTA || len(s.Timestamps) != 2 || s.Timestamps[1].Indication != validation.Indeterminate {
			t.Fatalf("%s", dump(t, rep))
		}
	})
}

// verifyDigestTokenWithOpenSSL checks with openssl ts -verify that token is a timestamp over
// digest, the one the archive TSA was asked for, by tsaCert to the platform's root.
func verifyDigestTokenWithOpenSSL(t *testing.T, env *signingtest.Env, token []byte, h crypto.Hash, digest []byte, tsaCert *x509.Certificate) {
	t.Helper()
	testenv.Need(t, "openssl")
	if h != crypto.SHA256 && h != crypto.SHA384 && h != crypto.SHA512 || len(digest) != h.Size() {
		t.Fatalf("the archive TSA was asked for a %v digest of %d bytes", h, len(digest))
	}
	tok := env.WriteFile(t, "archts.tst", token)
	untrusted := env.WriteFile(t, "tsa2.pem", pemCert(tsaCert))
	out, err := exec.Command("openssl", "ts", "-verify", "-token_in", "-in", tok, "-digest", hex.EncodeToString(digest),
		"-CAfile", env.AllPEM, "-untrusted", untrusted).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}
}
