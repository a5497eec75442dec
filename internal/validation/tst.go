package validation

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

// imprintOf computes the digest a timestamp must hold, with the token's own hash algorithm.
type imprintOf func(h crypto.Hash) ([]byte, error)

func bytesImprint(b []byte) imprintOf {
	return func(h crypto.Hash) ([]byte, error) {
		if !h.Available() || h == crypto.SHA1 {
			return nil, fmt.Errorf("hash %v is not accepted", h)
		}
		x := h.New()
		x.Write(b)
		return x.Sum(nil), nil
	}
}

// proof is a proof of existence (EN 319 102-1 §5.6.2.3, POE) of an object at a time: a verified
// timestamp over it, named by its report's ID. The zero proof is none.
type proof struct {
	at time.Time
	by string
}

func (p proof) ok() bool { return p.by != "" }

// earlier returns the earlier of two proofs (a missing one loses).
func (p proof) earlier(q proof) proof {
	if !p.ok() || q.ok() && q.at.Before(p.at) {
		return q
	}
	return p
}

// timestamp verifies a DER TimeStampToken whose imprint must be want's (nil: not checked, the
// caller reports that), as a report of kind kind. The token's time is the report's POE.
func (v *validator) timestamp(der []byte, kind, id string, want imprintOf) (SignatureReport, *tstInfo) {
	return v.timestampAt(der, kind, id, want, proof{})
}

// timestampAt is timestamp for a token that a later timestamp proves to have existed at
// later.at: when the TSA's certificate has expired by the validation time, the chain is
// validated at that proof instead (EN 319 102-1 §5.6.2.1, past signature validation), and a
// TSA revoked after it does not invalidate the token. Without such a proof the TSA's chain
// must be valid and unrevoked at the validation time: a token is no proof of its own
// existence, since a TSA key compromised and revoked later could have dated it at will.
func (v *validator) timestampAt(der []byte, kind, id string, want imprintOf, later proof) (rep SignatureReport, _ *tstInfo) {
	rep = SignatureReport{ID: id, Kind: kind, Format: "RFC3161"}
	defer rep.conclude() // rep is the named result: the deferred call sets what is returned
	p, err := parseSignedData(der)
	if err != nil {
		rep.fail("format", FormatFailure, "%v", err)
		return rep, nil
	}
	if !p.ContentType.Equal(oidTSTInfo) || p.EContent == nil {
		rep.fail("format", FormatFailure, "the token's content is not a TSTInfo")
		return rep, nil
	}
	info, err := parseTSTInfo(p.EContent)
	if err != nil {
		rep.fail("format", FormatFailure, "%v", err)
		return rep, nil
	}
	rep.pass("format", "an RFC 3161 TimeStampToken, policy %v", info.policy)
	t := info.genTime
	rep.TimestampTime = &t
	rep.ProofOfExistence = t
	if want != nil {
		d, err := want(info.hash)
		switch {
		case err != nil:
			rep.fail("message-imprint", HashFailure, "%v", err)
		case !bytes.Equal(d, info.imprint):
			rep.fail("message-imprint", HashFailure, "the token's imprint is not the %v digest of the data it should cover", info.hash)
		default:
			rep.pass("message-imprint", "the imprint is the %v digest of the data covered", info.hash)
		}
	}
	cert := v.checkSigner(&rep, p, bytesImprint(p.EContent), true)
	if cert == nil {
		return rep, info
	}
	// A TSA certificate has the timeStamping extended key usage only (RFC 3161 §2.3).
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageTimeStamping) {
		rep.indeterminate("tsa-certificate", ChainConstraintsFailure, "the TSA certificate lacks the timeStamping extended key usage")
	} else {
		rep.pass("tsa-certificate", "timeStamping extended key usage")
	}
	poe := v.vtime
	if later.ok() {
		poe = later.at
		rep.info("proof-of-existence", "the token existed at %s: %s covers it", later.at.Format(time.RFC3339), later.by)
	}
	chain := v.buildChain(&rep, cert, p.Certs, poe, later.ok(), x509.ExtKeyUsageTimeStamping)
	if chain != nil {
		v.revocation(&rep, chain, p.OCSPs, p.CRLs, poe, later.ok())
	}
	return rep, info
}

// checkSigner runs the checks common to every CMS signer: the signing certificate found and
// bound, the message digest, the signature value. It returns the signer's certificate, or nil
// when the signature cannot stand.
func (v *validator) checkSigner(rep *SignatureReport, p *signedData, content imprintOf, requireBinding bool) *x509.Certificate {
	if p.Signers != 1 {
		rep.fail("format", FormatFailure, "%d SignerInfos; exactly one is validated", p.Signers)
		return nil
	}
	cert := signerCert(p, slices.Concat(p.Certs, v.extraCerts))
	if cert == nil {
		rep.indeterminate("signing-certificate", NoSigningCertificateFound, "the signer's certificate is not in the signature")
		return nil
	}
	rep.Signer = certInfo(cert)
	switch b, err := certBinding(p, cert); {
	case err != nil:
		rep.indeterminate("signing-certificate", NoSigningCertificateFound, "%v", err)
		return nil
	case b == "absent" && requireBinding:
		rep.fail("signing-certificate", FormatFailure, "no signing-certificate(-v2) attribute binds the signer's certificate")
		return nil
	case b == "absent":
		rep.info("signing-certificate", "found by issuer and serial; no signing-certificate attribute binds it")
	default:
		rep.pass("signing-certificate", "bound by the %s attribute", b)
	}
	if p.SignedAttrs != nil && !contentTypeOK(p) {
		rep.fail("content-type", FormatFailure, "the content-type attribute is missing or differs from the eContentType")
		return nil
	}
	if content == nil {
		rep.indeterminate("message-digest", SignedDataNotFound, "the signed content is not available")
		return nil
	}
	digest, err := content(p.Hash)
	if err != nil {
		rep.indeterminate("message-digest", SignedDataNotFound, "%v", err)
		return nil
	}
	if p.SignedAttrs != nil {
		md, ok := messageDigest(p)
		if !ok {
			rep.fail("message-digest", FormatFailure, "no message-digest attribute")
			return nil
		}
		if !bytes.Equal(md, digest) {
			rep.fail("message-digest", HashFailure, "the message-digest attribute is not the %v digest of the signed data", p.Hash)
			return nil
		}
		rep.pass("message-digest", "equals the %v digest of the signed data", p.Hash)
	}
	if err := verifySignature(p, cert, digest); err != nil {
		rep.fail("signature", SigCryptoFailure, "%v", err)
		return nil
	}
	rep.pass("signature", "the signature value verifies with the signer's key")
	return cert
}

// signatureTimestamps verifies the signature-time-stamp attributes of p and adds them to rep;
// it returns the earliest verified time. later is a proof of existence of the tokens from a
// timestamp over them (a PDF's document timestamp).
func (v *validator) signatureTimestamps(rep *SignatureReport, p *signedData, later proof) (time.Time, bool) {
	var poe time.Time
	ok := false
	for i, tok := range p.UnsignedAttrs[oidSignatureTimeStamp.String()] {
		ts, _ := v.timestampAt(tok, "signature-timestamp", fmt.Sprintf("%s-ts%d", rep.ID, i+1), bytesImprint(p.Signature), later)
		rep.Timestamps = append(rep.Timestamps, ts)
		if ts.Indication == TotalPassed && (!ok || ts.ProofOfExistence.Before(poe)) {
			poe, ok = ts.ProofOfExistence, true
		}
		if ts.Indication == TotalFailed {
			rep.fail("signature-timestamp", ts.SubIndication, "the signature timestamp %s failed", ts.ID)
		} else if ts.Indication == Indeterminate {
			rep.info("signature-timestamp", "the signature timestamp %s is indeterminate (%s): no proof of existence from it", ts.ID, ts.SubIndication)
		}
	}
	if ok {
		rep.pass("signature-timestamp", "proof of existence at %s", poe.Format(time.RFC3339))
	}
	return poe, ok
}

// signature validates one CMS signature over content and fills rep: the checks of
// checkSigner, the signature timestamps, the chain, revocation, key usage and qualification.
// It returns whether the revocation came from embedded data only and whether a timestamp
// proved the signature's existence.
func (v *validator) signature(rep *SignatureReport, p *signedData, content imprintOf, requireBinding bool) (embedded, timestamped bool) {
	return v.signatureAt(rep, p, content, requireBinding, proof{})
}

// signatureAt is signature for a signature that a later timestamp (a PDF's document timestamp)
// proves to have existed, with its signature timestamps, at later.at: the signature
// timestamps are validated at that proof when their TSA has expired since, and without a
// valid signature timestamp the later proof is the signature's own. timestamped still says
// whether a signature timestamp proved the signature (the T level).
func (v *validator) signatureAt(rep *SignatureReport, p *signedData, content imprintOf, requireBinding bool, later proof) (embedded, timestamped bool) {
	rep.ClaimedSigningTime = signingTime(p)
	cert := v.checkSigner(rep, p, content, requireBinding)
	if cert == nil {
		return false, false
	}
	poe, timestamped := v.signatureTimestamps(rep, p, later)
	proven := timestamped
	if !proven {
		poe = v.vtime
	}
	if later.ok() && (!proven || later.at.Before(poe)) {
		poe, proven = later.at, true
		rep.info("proof-of-existence", "the signature existed at %s: %s covers it", later.at.Format(time.RFC3339), later.by)
	}
	rep.ProofOfExistence = poe
	if rep.ClaimedSigningTime != nil && proven && rep.ClaimedSigningTime.After(poe.Add(time.Minute)) {
		rep.indeterminate("signing-time", TimestampOrderFailure, "the claimed signing time %s is after the signature timestamp %s", rep.ClaimedSigningTime.Format(time.RFC3339), poe.Format(time.RFC3339))
	}
	keyUsage(rep, cert)
	q, why := qualification(cert)
	rep.Qualification = q
	rep.info("qualification", "%s: %s (from the certificate; no trusted list consulted)", q, why)
	chain := v.buildChain(rep, cert, p.Certs, poe, proven, x509.ExtKeyUsageAny)
	if chain == nil {
		return false, timestamped
	}
	embedded = v.revocation(rep, chain, p.OCSPs, p.CRLs, poe, proven)
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

// cmsDocument validates a CMS SignedData (BER or DER): CAdES when it binds its signing certificate,
// plain CMS otherwise.
func (v *validator) cmsDocument(der []byte, rep *Report) error {
	p, err := parseSignedData(der)
	if err != nil {
		return err
	}
	s := SignatureReport{ID: "sig1", Kind: "signature", Format: "CMS"}
	if b, _ := p.Attrs[oidSigningCertV2.String()]; b != nil {
		s.Format = "CAdES-BASELINE"
	}
	var content imprintOf
	switch {
	case p.EContent != nil:
		content = bytesImprint(p.EContent)
		s.pass("format", "CMS SignedData with encapsulated content")
	case v.opts.Content != nil:
		content = func(h crypto.Hash) ([]byte, error) {
			x := h.New()
			if _, err := io.Copy(x, io.NewSectionReader(v.opts.Content, 0, v.opts.ContentSize)); err != nil {
				return nil, fmt.Errorf("reading the content: %w", err)
			}
			return x.Sum(nil), nil
		}
		s.pass("format", "detached CMS SignedData; the content was given")
	default:
		s.pass("format", "detached CMS SignedData")
	}
	embedded, timestamped := v.signature(&s, p, content, s.Format == "CAdES-BASELINE")
	s.conclude()
	if s.Format == "CAdES-BASELINE" && !s.failed() {
		s.Level = signing.LevelB
		if timestamped {
			s.Level = signing.LevelT
			if embedded && (len(p.OCSPs) > 0 || len(p.CRLs) > 0) {
				s.Level = signing.LevelLT
			}
		}
	}
	rep.Signatures = append(rep.Signatures, s)
	return nil
}

// timestampDocument validates a standalone TimeStampToken or TimeStampResp; its imprint is
// checked against Options.Content when given.
func (v *validator) timestampDocument(der []byte, rep *Report) error {
	tok := der
	if isTimeStampResp(der) {
		var err error
		if tok, err = tokenOfResp(der); err != nil {
			return err
		}
	}
	var want imprintOf
	if v.opts.Content != nil {
		want = func(h crypto.Hash) ([]byte, error) {
			x := h.New()
			if _, err := io.Copy(x, io.NewSectionReader(v.opts.Content, 0, v.opts.ContentSize)); err != nil {
				return nil, fmt.Errorf("reading the content: %w", err)
			}
			return x.Sum(nil), nil
		}
	}
	ts, _ := v.timestamp(tok, "timestamp", "ts1", want)
	if want == nil {
		ts.info("message-imprint", "no data given: the imprint was not compared")
	}
	rep.Signatures = append(rep.Signatures, ts)
	return nil
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
	p, err := parseSignedData(b)
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
