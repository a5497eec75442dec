package cades

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation/core"
)

// tstInfo is the part of an RFC 3161 TSTInfo a validator uses.
type tstInfo struct {
	policy  asn1.ObjectIdentifier
	hash    crypto.Hash
	imprint []byte
	genTime time.Time
}

func parseTSTInfo(der []byte) (*tstInfo, error) {
	s := cryptobyte.String(der)
	var info, imprint, alg, gt cryptobyte.String
	var version int64
	var oid asn1.ObjectIdentifier
	t := &tstInfo{}
	if !s.ReadASN1(&info, cbasn1.SEQUENCE) || !info.ReadASN1Integer(&version) || !info.ReadASN1ObjectIdentifier(&t.policy) ||
		!info.ReadASN1(&imprint, cbasn1.SEQUENCE) || !imprint.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!imprint.ReadASN1Bytes(&t.imprint, cbasn1.OCTET_STRING) || !info.SkipASN1(cbasn1.INTEGER) ||
		!info.ReadASN1(&gt, cbasn1.GeneralizedTime) {
		return nil, fmt.Errorf("TSTInfo is malformed")
	}
	if t.hash = cms.HashOf(oid); t.hash == 0 {
		return nil, fmt.Errorf("TSTInfo imprint algorithm %v is not supported", oid)
	}
	// time.Parse takes the fractional seconds RFC 3161 allows even though the layout has none.
	g, err := time.Parse("20060102150405Z0700", string(gt))
	if err != nil {
		return nil, fmt.Errorf("TSTInfo genTime: %w", err)
	}
	t.genTime = g.UTC()
	return t, nil
}

// Imprint computes the digest a timestamp must hold, with the token's own hash algorithm.
type Imprint func(h crypto.Hash) ([]byte, error)

// BytesImprint is the Imprint of b.
func BytesImprint(b []byte) Imprint {
	return func(h crypto.Hash) ([]byte, error) {
		if !h.Available() || h == crypto.SHA1 {
			return nil, fmt.Errorf("hash %v is not accepted", h)
		}
		x := h.New()
		x.Write(b)
		return x.Sum(nil), nil
	}
}

// Timestamp verifies a DER TimeStampToken whose imprint must be want's (nil: not checked, the
// caller reports that), as a report of kind kind. The token's time is the report's POE.
//
// later is a later timestamp's proof that the token existed at later.At (the zero Proof:
// none): when the TSA's certificate has expired by the validation time, the chain is
// validated at that proof instead (EN 319 102-1 §5.6.2.1, past signature validation), and a
// TSA revoked after it does not invalidate the token. Without such a proof the TSA's chain
// must be valid and unrevoked at the validation time: a token is no proof of its own
// existence, since a TSA key compromised and revoked later could have dated it at will.
func Timestamp(v *core.Validator, der []byte, kind, id string, want Imprint, later core.Proof) (rep core.SignatureReport) {
	rep = core.SignatureReport{ID: id, Kind: kind, Format: "RFC3161"}
	defer rep.Conclude() // rep is the named result: the deferred call sets what is returned
	p, err := Parse(der)
	if err != nil {
		rep.Fail("format", core.FormatFailure, "%v", err)
		return rep
	}
	if !p.ContentType.Equal(oidTSTInfo) || p.EContent == nil {
		rep.Fail("format", core.FormatFailure, "the token's content is not a TSTInfo")
		return rep
	}
	info, err := parseTSTInfo(p.EContent)
	if err != nil {
		rep.Fail("format", core.FormatFailure, "%v", err)
		return rep
	}
	rep.Pass("format", "an RFC 3161 TimeStampToken, policy %v", info.policy)
	t := info.genTime
	rep.TimestampTime = &t
	rep.ProofOfExistence = t
	if want != nil {
		d, err := want(info.hash)
		switch {
		case err != nil:
			rep.Fail("message-imprint", core.HashFailure, "%v", err)
		case !bytes.Equal(d, info.imprint):
			rep.Fail("message-imprint", core.HashFailure, "the token's imprint is not the %v digest of the data it should cover", info.hash)
		default:
			rep.Pass("message-imprint", "the imprint is the %v digest of the data covered", info.hash)
		}
	}
	cert := checkSigner(v, &rep, p, BytesImprint(p.EContent), true)
	if cert == nil {
		return rep
	}
	// A TSA certificate has the timeStamping extended key usage only (RFC 3161 §2.3).
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageTimeStamping) {
		rep.Indeterminate("tsa-certificate", core.ChainConstraintsFailure, "the TSA certificate lacks the timeStamping extended key usage")
	} else {
		rep.Pass("tsa-certificate", "timeStamping extended key usage")
	}
	poe := v.Time()
	if later.OK() {
		poe = later.At
		rep.Info("proof-of-existence", "the token existed at %s: %s covers it", later.At.Format(time.RFC3339), later.By)
	}
	chain := v.BuildChain(&rep, cert, p.Certs, poe, later.OK(), x509.ExtKeyUsageTimeStamping)
	if chain != nil {
		v.Revocation(&rep, chain, p.OCSPs, p.CRLs, poe, later.OK())
	}
	return rep
}

// checkSigner runs the checks common to every CMS signer: the signing certificate found and
// bound, the message digest, the signature value. It returns the signer's certificate, or nil
// when the signature cannot stand.
func checkSigner(v *core.Validator, rep *core.SignatureReport, p *cms.SignedData, content Imprint, requireBinding bool) *x509.Certificate {
	if p.Signers != 1 {
		rep.Fail("format", core.FormatFailure, "%d SignerInfos; exactly one is validated", p.Signers)
		return nil
	}
	cert := signerCert(p, slices.Concat(p.Certs, v.Evidence().Certs))
	if cert == nil {
		rep.Indeterminate("signing-certificate", core.NoSigningCertificateFound, "the signer's certificate is not in the signature")
		return nil
	}
	rep.Signer = core.NewCertInfo(cert)
	switch b, err := certBinding(p, cert); {
	case err != nil:
		rep.Indeterminate("signing-certificate", core.NoSigningCertificateFound, "%v", err)
		return nil
	case b == "absent" && requireBinding:
		rep.Fail("signing-certificate", core.FormatFailure, "no signing-certificate(-v2) attribute binds the signer's certificate")
		return nil
	case b == "absent":
		rep.Info("signing-certificate", "found by issuer and serial; no signing-certificate attribute binds it")
	default:
		rep.Pass("signing-certificate", "bound by the %s attribute", b)
	}
	if p.SignedAttrs != nil && !contentTypeOK(p) {
		rep.Fail("content-type", core.FormatFailure, "the content-type attribute is missing or differs from the eContentType")
		return nil
	}
	if content == nil {
		rep.Indeterminate("message-digest", core.SignedDataNotFound, "the signed content is not available")
		return nil
	}
	digest, err := content(p.Hash)
	if err != nil {
		rep.Indeterminate("message-digest", core.SignedDataNotFound, "%v", err)
		return nil
	}
	if p.SignedAttrs != nil {
		md, ok := messageDigest(p)
		if !ok {
			rep.Fail("message-digest", core.FormatFailure, "no message-digest attribute")
			return nil
		}
		if !bytes.Equal(md, digest) {
			rep.Fail("message-digest", core.HashFailure, "the message-digest attribute is not the %v digest of the signed data", p.Hash)
			return nil
		}
		rep.Pass("message-digest", "equals the %v digest of the signed data", p.Hash)
	}
	if err := verifySignature(p, cert, digest); err != nil {
		rep.Fail("signature", core.SigCryptoFailure, "%v", err)
		return nil
	}
	rep.Pass("signature", "the signature value verifies with the signer's key")
	return cert
}

// signatureTimestamps verifies the signature-time-stamp attributes of p and adds them to rep;
// it returns the earliest verified time. later is a proof of existence of the tokens from a
// timestamp over them (a PDF's document timestamp).
func signatureTimestamps(v *core.Validator, rep *core.SignatureReport, p *cms.SignedData, later core.Proof) (time.Time, bool) {
	var poe time.Time
	ok := false
	for i, tok := range p.UnsignedAttrs[oidSignatureTimeStamp.String()] {
		ts := Timestamp(v, tok, "signature-timestamp", fmt.Sprintf("%s-ts%d", rep.ID, i+1), BytesImprint(p.Signature), later)
		rep.Timestamps = append(rep.Timestamps, ts)
		if ts.Indication == core.TotalPassed && (!ok || ts.ProofOfExistence.Before(poe)) {
			poe, ok = ts.ProofOfExistence, true
		}
		if ts.Indication == core.TotalFailed {
			rep.Fail("signature-timestamp", ts.SubIndication, "the signature timestamp %s failed", ts.ID)
		} else if ts.Indication == core.Indeterminate {
			rep.Info("signature-timestamp", "the signature timestamp %s is indeterminate (%s): no proof of existence from it", ts.ID, ts.SubIndication)
		}
	}
	if ok {
		rep.Pass("signature-timestamp", "proof of existence at %s", poe.Format(time.RFC3339))
	}
	return poe, ok
}

// Signature validates one CMS signature over content and fills rep: the checks of
// checkSigner, the signature timestamps, the chain, revocation, key usage and qualification.
// It returns whether the revocation came from embedded data only and whether a timestamp
// proved the signature's existence.
//
// later is a later timestamp's (a PDF's document timestamp's) proof that the signature existed,
// with its signature timestamps, at later.At (the zero Proof: none): the signature
// timestamps are validated at that proof when their TSA has expired since, and without a
// valid signature timestamp the later proof is the signature's own. timestamped still says
// whether a signature timestamp proved the signature (the T level).
func Signature(v *core.Validator, rep *core.SignatureReport, p *cms.SignedData, content Imprint, requireBinding bool, later core.Proof) (embedded, timestamped bool) {
	rep.ClaimedSigningTime = signingTime(p)
	cert := checkSigner(v, rep, p, content, requireBinding)
	if cert == nil {
		return false, false
	}
	poe, timestamped := signatureTimestamps(v, rep, p, later)
	proven := timestamped
	if !proven {
		poe = v.Time()
	}
	if later.OK() && (!proven || later.At.Before(poe)) {
		poe, proven = later.At, true
		rep.Info("proof-of-existence", "the signature existed at %s: %s covers it", later.At.Format(time.RFC3339), later.By)
	}
	rep.ProofOfExistence = poe
	if rep.ClaimedSigningTime != nil && proven && rep.ClaimedSigningTime.After(poe.Add(time.Minute)) {
		rep.Indeterminate("signing-time", core.TimestampOrderFailure, "the claimed signing time %s is after the signature timestamp %s", rep.ClaimedSigningTime.Format(time.RFC3339), poe.Format(time.RFC3339))
	}
	core.KeyUsage(rep, cert)
	chain := v.BuildChain(rep, cert, p.Certs, poe, proven, x509.ExtKeyUsageAny)
	v.Qualify(rep, cert, chain, poe)
	if chain == nil {
		return false, timestamped
	}
	embedded = v.Revocation(rep, chain, p.OCSPs, p.CRLs, poe, proven)
	// The TSA's revocation data must be embedded too for LT.
	for _, ts := range rep.Timestamps {
		for _, r := range ts.Revocation {
			if r.Source == "fetched" {
				embedded = false
			}
		}
	}
	return embedded, timestamped
}

// Validate validates a CMS SignedData (BER or DER): CAdES when it binds its signing certificate,
// plain CMS otherwise; a detached one over Options.Content.
func Validate(v *core.Validator, der []byte, rep *core.Report) error {
	p, err := Parse(der)
	if err != nil {
		return err
	}
	s := core.SignatureReport{ID: "sig1", Kind: "signature", Format: "CMS"}
	if b, _ := p.Attrs[oidSigningCertV2.String()]; b != nil {
		s.Format = "CAdES-BASELINE"
	}
	var content Imprint
	switch {
	case p.EContent != nil:
		content = BytesImprint(p.EContent)
		s.Pass("format", "CMS SignedData with encapsulated content")
	case contentImprint(v) != nil:
		content = contentImprint(v)
		s.Pass("format", "detached CMS SignedData; the content was given")
	default:
		s.Pass("format", "detached CMS SignedData")
	}
	LongTerm(v, &s, p, der, content, s.Format == "CAdES-BASELINE")
	rep.Signatures = append(rep.Signatures, s)
	return nil
}

// ValidateTimestamp validates a standalone TimeStampToken or TimeStampResp; its imprint is
// checked against Options.Content when given.
func ValidateTimestamp(v *core.Validator, der []byte, rep *core.Report) error {
	tok := der
	if isTimeStampResp(der) {
		var err error
		if tok, err = tokenOfResp(der); err != nil {
			return err
		}
	}
	want := contentImprint(v)
	ts := Timestamp(v, tok, "timestamp", "ts1", want, core.Proof{})
	if want == nil {
		ts.Info("message-imprint", "no data given: the imprint was not compared")
	}
	rep.Signatures = append(rep.Signatures, ts)
	return nil
}

// IsTimestamp reports a DER TimeStampResp or TimeStampToken (what ValidateTimestamp takes)
// rather than another CMS SignedData.
func IsTimestamp(b []byte) bool { return isTimeStampResp(b) || isTimeStampToken(b) }

// contentImprint digests Options.Content; nil when no content was given.
func contentImprint(v *core.Validator) Imprint {
	content, size := v.Content()
	if content == nil {
		return nil
	}
	return func(h crypto.Hash) ([]byte, error) {
		x := h.New()
		if _, err := io.Copy(x, io.NewSectionReader(content, 0, size)); err != nil {
			return nil, fmt.Errorf("reading the content: %w", err)
		}
		return x.Sum(nil), nil
	}
}

// isTimeStampResp reports a DER TimeStampResp: SEQUENCE { PKIStatusInfo SEQUENCE { INTEGER ...
func isTimeStampResp(b []byte) bool {
	s := cryptobyte.String(b)
	var resp, status cryptobyte.String
	var n int64
	return s.ReadASN1(&resp, cbasn1.SEQUENCE) && resp.ReadASN1(&status, cbasn1.SEQUENCE) && status.ReadASN1Integer(&n)
}

// isTimeStampToken reports a ContentInfo of SignedData over a TSTInfo.
func isTimeStampToken(b []byte) bool {
	p, err := Parse(b)
	return err == nil && p.ContentType.Equal(oidTSTInfo)
}

// tokenOfResp returns the token of a granted TimeStampResp.
func tokenOfResp(b []byte) ([]byte, error) {
	s := cryptobyte.String(b)
	var resp, status, tok cryptobyte.String
	var n int64
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1(&status, cbasn1.SEQUENCE) || !status.ReadASN1Integer(&n) {
		return nil, fmt.Errorf("%w: validation: not a TimeStampResp", signing.ErrInvalid)
	}
	if n != 0 && n != 1 {
		return nil, fmt.Errorf("%w: validation: the TimeStampResp was not granted (status %d)", signing.ErrInvalid, n)
	}
	if !resp.ReadASN1Element(&tok, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: validation: the TimeStampResp holds no token", signing.ErrInvalid)
	}
	return tok, nil
}
