package core

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/internal/trustlist"
)

// ChainConstraintsFailure is EN 319 102-1's CHAIN_CONSTRAINTS_FAILURE.
const ChainConstraintsFailure SubIndication = "CHAIN_CONSTRAINTS_FAILURE"

// BuildChain verifies cert up to a trust anchor at the validation time (or, when the
// certificate has expired since, at poe if poe is a proven time before the expiry) and records
// the result in rep. It returns the chain, leaf first and anchor last, or nil.
func (v *Validator) BuildChain(rep *SignatureReport, cert *x509.Certificate, embedded []*x509.Certificate, poe time.Time, proven bool, eku x509.ExtKeyUsage) []*x509.Certificate {
	roots := x509.NewCertPool()
	for _, a := range v.anchors(poe, eku) {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range slices.Concat(embedded, v.evidence.Certs) {
		inter.AddCert(c)
	}
	verify := func(at time.Time) ([][]*x509.Certificate, error) {
		return cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{eku}})
	}
	chains, err := verify(v.Time())
	var inv x509.CertificateInvalidError
	if err != nil && errors.As(err, &inv) && inv.Reason == x509.Expired && proven && poe.Before(v.Time()) {
		if chains, err = verify(poe); err == nil {
			rep.Pass("chain", "the chain was valid at the proof of existence %s (a certificate has expired since)", poe.Format(time.RFC3339))
		} else if errors.As(err, &inv) && inv.Reason == x509.Expired {
			// Proven to exist only after a certificate's end of validity (EN 319 102-1: EXPIRED).
			rep.Fail("chain", Expired, "a certificate had expired at the proof of existence %s: %v", poe.Format(time.RFC3339), err)
			return nil
		}
	}
	if err != nil {
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &ua):
			rep.Indeterminate("chain", NoCertificateChainFound, "no chain to a trust anchor: %v", err)
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			if cert.NotBefore.After(v.Time()) {
				rep.Fail("chain", NotYetValid, "the certificate is not valid yet: %v", err)
			} else {
				rep.Indeterminate("chain", OutOfBoundsNoPOE, "a certificate is outside its validity and no proof of existence predates that: %v", err)
			}
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			rep.Indeterminate("chain", ChainConstraintsFailure, "%v", err)
		default:
			rep.Indeterminate("chain", CertificateChainGeneral, "%v", err)
		}
		return nil
	}
	chain := chains[0]
	if len(rep.Checks) == 0 || rep.Checks[len(rep.Checks)-1].Name != "chain" {
		rep.Pass("chain", "builds to the trust anchor %s", chain[len(chain)-1].Subject)
	}
	for _, c := range chain {
		rep.Chain = append(rep.Chain, *NewCertInfo(c))
	}
	return chain
}

// Revocation checks every certificate of chain below the anchor against the embedded
// revocation data (DSS and the CMS's own), else against Fetch. poe is when the signature is
// proven to have existed (proven: by a verified timestamp); a certificate revoked after it does
// not invalidate the signature. It reports whether every status came from embedded data.
func (v *Validator) Revocation(rep *SignatureReport, chain []*x509.Certificate, cmsOCSPs, cmsCRLs [][]byte, poe time.Time, proven bool) bool {
	embeddedOnly := true
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		use, ok := v.embeddedStatus(cert, issuer, cmsOCSPs, cmsCRLs)
		if ok && !v.fresh(rep, poe, use) && v.opts.Fetch != nil {
			if f, fok := v.fetchStatus(cert, issuer); fok {
				use = f
				embeddedOnly = false
			}
		}
		if !ok && v.opts.Fetch != nil {
			use, ok = v.fetchStatus(cert, issuer)
			embeddedOnly = false
		}
		if ok && !v.fresh(rep, poe, use) {
			embeddedOnly = false
			rep.Revocation = append(rep.Revocation, use)
			rep.Indeterminate("revocation-freshness", TryLater, "the %s %s on %s was issued at %s, more than %s before the best-signature-time %s: not fresh (EN 319 102-1 §5.2.5); fresher data can be obtained later",
				use.Source, use.Type, cert.Subject, use.ThisUpdate.Format(time.RFC3339), v.opts.RevocationFreshness, v.bestSignatureTime(rep, poe).Format(time.RFC3339))
			continue
		}
		if !ok {
			embeddedOnly = false
			// EN 319 102-1 5.2.5, 5.2.6: no revocation data to be had now is TRY_LATER.
			// (REVOCATION_OUT_OF_BOUNDS_NO_POE is for data issued outside the certificate's
			// validity with no proof of existence before it, which this validator never uses.)
			rep.Indeterminate("revocation", TryLater, "no usable revocation data on %s (embedded: none valid; online: %s)", cert.Subject, onlineState(v.opts.Fetch))
			continue
		}
		rep.Revocation = append(rep.Revocation, use)
		switch {
		case use.Status == "good":
			rep.Pass("revocation", "%s is good per %s %s of %s", cert.Subject, use.Source, use.Type, use.ThisUpdate.Format(time.RFC3339))
		case use.Status == "revoked" && proven && use.RevokedAt != nil && poe.Before(*use.RevokedAt):
			rep.Pass("revocation", "%s was revoked at %s, after the proof of existence %s", cert.Subject, use.RevokedAt.Format(time.RFC3339), poe.Format(time.RFC3339))
		case use.Status == "revoked" && proven:
			rep.Fail("revocation", Revoked, "%s was revoked at %s, before the proof of existence %s", cert.Subject, fmtTime(use.RevokedAt), poe.Format(time.RFC3339))
		case use.Status == "revoked":
			sub := RevokedNoPOE
			if i > 0 {
				sub = RevokedCANoPOE
			}
			rep.Indeterminate("revocation", sub, "%s was revoked at %s and no proof of existence predates that", cert.Subject, fmtTime(use.RevokedAt))
		default:
			rep.Indeterminate("revocation", TryLater, "%s has the status %s", cert.Subject, use.Status)
		}
	}
	return embeddedOnly
}

func onlineState(f Fetcher) string {
	if f == nil {
		return "not enabled"
	}
	return "failed"
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "an unknown time"
	}
	return t.Format(time.RFC3339)
}

// embeddedStatus looks for a verified OCSP response or CRL on cert among the embedded data.
func (v *Validator) embeddedStatus(cert, issuer *x509.Certificate, cmsOCSPs, cmsCRLs [][]byte) (RevocationUse, bool) {
	var found *RevocationUse
	consider := func(u RevocationUse) {
		// A revoked status wins over a good one; among the same status, the newest.
		if found == nil || (u.Status == "revoked" && found.Status != "revoked") ||
			(u.Status == found.Status && u.ThisUpdate.After(found.ThisUpdate)) {
			found = &u
		}
	}
	for _, src := range []struct {
		name  string
		ocsps [][]byte
		crls  [][]byte
	}{{"CMS", cmsOCSPs, cmsCRLs}, {v.evidence.Source, v.evidence.OCSPs, v.evidence.CRLs}} {
		for _, der := range src.ocsps {
			if u, ok := v.ocspStatus(der, cert, issuer, src.name); ok {
				consider(u)
			}
		}
		for _, der := range src.crls {
			if u, ok := v.crlStatus(der, cert, issuer, src.name); ok {
				consider(u)
			}
		}
	}
	if found == nil {
		return RevocationUse{}, false
	}
	return *found, true
}

// memoKey names a check of revocation data der on cert under issuer: the same response or
// CRL is met again for every chain through the same CA (the signer's, each timestamp's), and
// its signature check is what a validation spends most of its time on.
func memoKey(kind string, der []byte, cert, issuer *x509.Certificate) string {
	d := sha256.Sum256(der)
	i := sha256.Sum256(issuer.Raw)
	return kind + string(d[:]) + string(i[:]) + cert.SerialNumber.String()
}

type memoEntry struct {
	use RevocationUse
	ok  bool
}

func (v *Validator) ocspStatus(der []byte, cert, issuer *x509.Certificate, source string) (RevocationUse, bool) {
	return v.memo(memoKey("o", der, cert, issuer), func() (RevocationUse, bool) { return v.ocspStatus1(der, cert, issuer, source) })
}

func (v *Validator) crlStatus(der []byte, cert, issuer *x509.Certificate, source string) (RevocationUse, bool) {
	return v.memo(memoKey("c", der, cert, issuer), func() (RevocationUse, bool) { return v.crlStatus1(der, cert, issuer, source) })
}

func (v *Validator) memo(key string, f func() (RevocationUse, bool)) (RevocationUse, bool) {
	if e, ok := v.memos[key]; ok {
		return e.use, e.ok
	}
	u, ok := f()
	v.memos[key] = memoEntry{u, ok}
	return u, ok
}

func (v *Validator) ocspStatus1(der []byte, cert, issuer *x509.Certificate, source string) (RevocationUse, bool) {
	resp, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil || resp.SerialNumber == nil || resp.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		return RevocationUse{}, false
	}
	// The responder is the issuer itself or a certificate it delegated OCSP signing to.
	if resp.Certificate != nil && !resp.Certificate.Equal(issuer) {
		if !slices.Contains(resp.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) ||
			resp.Certificate.CheckSignatureFrom(issuer) != nil {
			return RevocationUse{}, false
		}
	}
	if resp.ThisUpdate.After(v.Time().Add(5 * time.Minute)) {
		return RevocationUse{}, false // issued in the future of the validation
	}
	u := RevocationUse{Subject: cert.Subject.String(), Type: "OCSP", Source: source, ThisUpdate: resp.ThisUpdate.UTC()}
	switch resp.Status {
	case ocsp.Good:
		u.Status = "good"
	case ocsp.Revoked:
		u.Status = "revoked"
		t := resp.RevokedAt.UTC()
		u.RevokedAt = &t
	default:
		u.Status = "unknown"
	}
	return u, true
}

func (v *Validator) crlStatus1(der []byte, cert, issuer *x509.Certificate, source string) (RevocationUse, bool) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil || !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
		return RevocationUse{}, false
	}
	if crl.ThisUpdate.After(v.Time().Add(5 * time.Minute)) {
		return RevocationUse{}, false
	}
	u := RevocationUse{Subject: cert.Subject.String(), Type: "CRL", Source: source, ThisUpdate: crl.ThisUpdate.UTC(), Status: "good"}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			t := e.RevocationTime.UTC()
			u.Status, u.RevokedAt = "revoked", &t
		}
	}
	return u, true
}

func (v *Validator) fetchStatus(cert, issuer *x509.Certificate) (RevocationUse, bool) {
	if !cert.IsCA {
		if der, err := v.opts.Fetch.OCSP(v.ctx, cert, issuer); err == nil {
			if u, ok := v.ocspStatus(der, cert, issuer, "fetched"); ok {
				return u, true
			}
		}
	}
	if der, err := v.opts.Fetch.CRL(v.ctx, cert); err == nil {
		if u, ok := v.crlStatus(der, cert, issuer, "fetched"); ok {
			return u, true
		}
	}
	return RevocationUse{}, false
}

// Qualification tells QESig/QESeal from AdES by the certificate's QCStatements
// (EN 319 412-5) and key usage. Without a trusted list this is what the certificate claims.
func Qualification(c *x509.Certificate) (string, string) {
	qc, err := trustlist.QCStatements(c)
	if err != nil {
		return "unknown", "QCStatements are malformed"
	}
	compliance, sscd := qc.Compliance, qc.SSCD
	kind := ""
	for _, t := range qc.Types {
		switch t {
		case "esign":
			kind = "Sig"
		case "eseal":
			kind = "Seal"
		}
	}
	if c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return "unknown", "the key usage has neither digitalSignature nor nonRepudiation"
	}
	if kind == "" {
		// QcType is optional for signatures (EN 319 412-5 §4.2.3): a certificate to a natural
		// person is for e-signatures, to an organization for e-seals.
		if len(c.Subject.Organization) > 0 && len(c.Subject.SerialNumber) == 0 || hasOrgID(c) {
			kind = "Seal"
		} else if compliance {
			kind = "Sig"
		}
	}
	if kind == "" {
		return "unknown", "no QcType and no way to tell a signature from a seal"
	}
	switch {
	case compliance && sscd:
		return "QE" + kind, fmt.Sprintf("QcCompliance, QcSSCD, QcType e%s", lower(kind))
	case compliance:
		return "AdE" + kind + "-QC", "QcCompliance without QcSSCD"
	default:
		return "AdE" + kind, "no QcCompliance"
	}
}

// hasOrgID reports an organizationIdentifier (2.5.4.97) in the subject: a legal person.
func hasOrgID(c *x509.Certificate) bool {
	for _, n := range c.Subject.Names {
		if n.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 97}) {
			return true
		}
	}
	return false
}

func lower(s string) string {
	if s == "Sig" {
		return "sign"
	}
	return "seal"
}

// KeyUsage checks that a signer's certificate may sign documents.
func KeyUsage(rep *SignatureReport, c *x509.Certificate) {
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		rep.Indeterminate("key-usage", ChainConstraintsFailure, "the signing certificate's key usage allows neither digitalSignature nor nonRepudiation")
		return
	}
	rep.Pass("key-usage", "digitalSignature or nonRepudiation (or no key usage restriction)")
}
