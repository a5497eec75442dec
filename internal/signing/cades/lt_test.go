package cades_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// The CMS structures the test reads with encoding/asn1, independently of the package's own
// cryptobyte parser, to recompute the archive timestamps' imprints.
type contentInfo struct {
	Type    asn1.ObjectIdentifier
	Content asn1.RawValue `asn1:"explicit,tag:0"`
}

type signedData struct {
	Version     int
	DigestAlgs  asn1.RawValue
	Encap       asn1.RawValue
	Certs       asn1.RawValue `asn1:"optional,tag:0"`
	CRLs        asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos []signerInfo  `asn1:"set"`
}

type signerInfo struct {
	Version     int
	SID         asn1.RawValue
	DigestAlg   asn1.RawValue
	SignedAttrs asn1.RawValue `asn1:"optional,tag:0"`
	SigAlg      asn1.RawValue
	Signature   []byte
	Unsigned    []attribute `asn1:"optional,tag:1,set"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

func parseSD(t *testing.T, der []byte) signedData {
	t.Helper()
	var ci contentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) > 0 {
		t.Fatalf("ContentInfo: %v", err)
	}
	var sd signedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatalf("SignedData: %v", err)
	}
	return sd
}

// elements splits the contents of a SET or SEQUENCE into its DER elements.
func elements(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v.FullBytes)
		b = rest
	}
	return out
}

// atsImprint recomputes, as EN 319 122-1 clause 5.5.3 says, the imprint of the archive
// timestamp token ats of sig over content, with the hash index the token carries; it also
// checks that every hash of the index is of something still in the signature.
func atsImprint(t *testing.T, sig, content, ats []byte) []byte {
	t.Helper()
	sd := parseSD(t, sig)
	si := sd.SignerInfos[0]
	tokSD := parseSD(t, ats)
	var index []byte
	for _, a := range tokSD.SignerInfos[0].Unsigned {
		if a.Type.Equal(asn1.ObjectIdentifier{0, 4, 0, 19122, 1, 5}) {
			index = a.Values[0].FullBytes
		}
	}
	if index == nil {
		t.Fatal("the archive timestamp's token has no ats-hash-index-v3")
	}
	var idx struct {
		Certs, CRLs, Attrs [][]byte
	}
	if _, err := asn1.Unmarshal(index, &idx); err != nil {
		t.Fatalf("ATSHashIndexV3 (SHA-256, its algorithm absent): %v", err)
	}
	sum := func(parts ...[]byte) string {
		h := crypto.SHA256.New()
		for _, p := range parts {
			h.Write(p)
		}
		return string(h.Sum(nil))
	}
	present := map[string]bool{}
	for _, c := range elements(t, sd.Certs.Bytes) {
		present[sum(c)] = true
	}
	for _, c := range elements(t, sd.CRLs.Bytes) {
		present[sum(c)] = true
	}
	for _, a := range si.Unsigned {
		typ, _ := asn1.Marshal(a.Type)
		for _, v := range a.Values {
			present[sum(typ, v.FullBytes)] = true
		}
	}
	for _, list := range [][][]byte{idx.Certs, idx.CRLs, idx.Attrs} {
		for _, h := range list {
			if !present[string(h)] {
				t.Fatalf("the hash index lists %x, which is not in the signature", h)
			}
		}
	}
	var encap struct{ Type asn1.RawValue }
	if _, err := asn1.Unmarshal(sd.Encap.FullBytes, &encap); err != nil {
		t.Fatal(err)
	}
	h := crypto.SHA256.New()
	h.Write(encap.Type.FullBytes)
	h.Write([]byte(sum(content)))
	v, _ := asn1.Marshal(si.Version)
	h.Write(v)
	h.Write(si.SID.FullBytes)
	h.Write(si.DigestAlg.FullBytes)
	h.Write(si.SignedAttrs.FullBytes)
	h.Write(si.SigAlg.FullBytes)
	sv, _ := asn1.Marshal(si.Signature)
	h.Write(sv)
	h.Write(index)
	return h.Sum(nil)
}

// archiveTokens are the archive-time-stamp-v3 tokens of sig, in order.
func archiveTokens(t *testing.T, sig []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, a := range parseSD(t, sig).SignerInfos[0].Unsigned {
		if a.Type.Equal(cades.OIDArchiveTimestampV3) {
			out = append(out, a.Values[0].FullBytes)
		}
	}
	return out
}

// B-LT carries the certificate and revocation values; B-LTA an archive timestamp whose token
// openssl verifies against the imprint recomputed here; renewing adds a second one over the
// first, with the first TSA's validation data in SignedData. openssl cms -verify accepts every
// stage.
func TestLongTermOpenSSL(t *testing.T) {
	needOpenSSL(t)
	e := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	content := []byte("Vendim nr. 7/2026\n")
	file := e.WriteFile(t, "content.txt", content)
	sign := func(opts cades.Options) []byte {
		sig, err := cades.Sign(ctx, e.Seal, bytes.NewReader(content), opts)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	check := func(name string, sig []byte, want []string) string {
		p := e.WriteFile(t, name, sig)
		if out, err := verify(p, file, e.RootPEM); err != nil {
			t.Fatalf("openssl cms -verify %s: %v\n%s", name, err, out)
		}
		printed := run(t, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", p)
		for _, w := range want {
			if !strings.Contains(printed, w) {
				t.Errorf("%s: openssl cms -print shows no %s", name, w)
			}
		}
		return printed
	}
	lt := sign(cades.Options{SigningTime: time.Now(), Timestamper: e.TSA, Revocation: e.PKI})
	printed := check("lt.p7s", lt, []string{"id-smime-aa-timeStampToken", "id-smime-aa-ets-certValues", "id-smime-aa-ets-revocationValues"})
	if strings.Contains(printed, "0.4.0.1733.2.4") {
		t.Error("a B-LT signature carries an archive timestamp")
	}
	// The revocation values hold a CRL over the seal CA and a basic OCSP response on the seal
	// certificate and on the TSA's.
	for _, a := range parseSD(t, lt).SignerInfos[0].Unsigned {
		if !a.Type.Equal(cades.OIDRevocationValues) {
			continue
		}
		var rv struct {
			CRLs  []asn1.RawValue `asn1:"optional,explicit,tag:0"`
			OCSPs []asn1.RawValue `asn1:"optional,explicit,tag:1"`
		}
		if _, err := asn1.Unmarshal(a.Values[0].FullBytes, &rv); err != nil {
			t.Fatalf("RevocationValues: %v", err)
		}
		if len(rv.CRLs) == 0 || len(rv.OCSPs) < 2 {
			t.Fatalf("revocation values: %d CRLs, %d OCSP responses", len(rv.CRLs), len(rv.OCSPs))
		}
		for _, c := range rv.CRLs {
			if _, err := x509.ParseRevocationList(c.FullBytes); err != nil {
				t.Fatalf("CRL: %v", err)
			}
		}
	}

	lta := sign(cades.Options{SigningTime: time.Now(), Timestamper: e.TSA, Revocation: e.PKI, Archive: true})
	check("lta.p7s", lta, []string{"id-smime-aa-ets-certValues", "id-smime-aa-ets-revocationValues", "0.4.0.1733.2.4"})
	verifyATS := func(sig []byte, n int) {
		t.Helper()
		toks := archiveTokens(t, sig)
		if len(toks) != n {
			t.Fatalf("%d archive timestamps, want %d", len(toks), n)
		}
		for i, tok := range toks {
			if i < n-1 {
				continue // an earlier one was computed over less; its own test checked it
			}
			imprint := atsImprint(t, sig, content, tok)
			run(t, "openssl", "ts", "-verify", "-token_in", "-in", e.WriteFile(t, "ats.der", tok),
				"-digest", hex.EncodeToString(imprint), "-CAfile", e.AllPEM)
		}
	}
	verifyATS(lta, 1)

	renewed, err := cades.AddArchiveTimestamp(ctx, lta, e.TSA, e.PKI)
	if err != nil {
		t.Fatal(err)
	}
	check("renewed.p7s", renewed, []string{"0.4.0.1733.2.4"})
	// The first archive timestamp is kept byte for byte and still verifies: what it covers is
	// all still there.
	if first := archiveTokens(t, renewed)[0]; !bytes.Equal(first, archiveTokens(t, lta)[0]) {
		t.Fatal("renewal changed the first archive timestamp")
	}
	run(t, "openssl", "ts", "-verify", "-token_in", "-in", e.WriteFile(t, "ats1.der", archiveTokens(t, renewed)[0]),
		"-digest", hex.EncodeToString(atsImprint(t, lta, content, archiveTokens(t, lta)[0])), "-CAfile", e.AllPEM)
	verifyATS(renewed, 2)
	if *update {
		writeSeed(t, "lta-renewed.p7s", renewed)
	}
	// Archives (the validator's view) recomputes the same imprints, for both timestamps.
	archives, err := cades.Archives(renewed, func(h crypto.Hash) ([]byte, error) {
		d := h.New()
		d.Write(content)
		return d.Sum(nil), nil
	})
	if err != nil || len(archives) != 2 {
		t.Fatalf("Archives: %d, %v", len(archives), err)
	}
	for i, a := range archives {
		got, err := a.Imprint(crypto.SHA256)
		if err != nil || !bytes.Equal(got, atsImprint(t, renewed, content, a.Token)) {
			t.Fatalf("archive %d: imprint %x, %v", i, got, err)
		}
	}
	// A certificate value changed after the archive timestamps (its last byte, inside the
	// signature bits, so the structure still parses): both indexes now list what is gone.
	var cv []byte
	for _, a := range parseSD(t, renewed).SignerInfos[0].Unsigned {
		if a.Type.Equal(cades.OIDCertValues) {
			cv = a.Values[0].FullBytes
		}
	}
	i := bytes.Index(renewed, cv) + len(cv) - 1
	tampered := bytes.Clone(renewed)
	tampered[i] ^= 1
	archives, err = cades.Archives(tampered, func(crypto.Hash) ([]byte, error) { return make([]byte, 32), nil })
	if err != nil || len(archives) != 2 {
		t.Fatalf("Archives of the tampered signature: %d, %v", len(archives), err)
	}
	for i, a := range archives {
		if _, err := a.Imprint(crypto.SHA256); err == nil || !strings.Contains(err.Error(), "no longer holds") {
			t.Fatalf("archive %d over a changed certificate value: %v", i, err)
		}
	}
	if sd := parseSD(t, renewed); len(sd.CRLs.Bytes) == 0 {
		t.Fatal("renewal added no revocation data of the first archive timestamp's TSA to SignedData.crls")
	}

	// Renewal needs B-LT at least.
	bt := sign(cades.Options{Timestamper: e.TSA})
	if _, err := cades.AddArchiveTimestamp(ctx, bt, e.TSA, e.PKI); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("renewing a B-T signature: %v, want ErrInvalid", err)
	}
	// B-LT without a timestamper, B-LTA without revocation data: refused.
	for _, o := range []cades.Options{{Revocation: e.PKI}, {Timestamper: e.TSA, Archive: true}} {
		if _, err := cades.Sign(ctx, e.Seal, bytes.NewReader(content), o); !errors.Is(err, signing.ErrInvalid) {
			t.Fatalf("options %+v: %v, want ErrInvalid", o, err)
		}
	}
}
