package core

import (
	"crypto/x509"
	"slices"
	"strings"
	"time"
)

// TrustedService is the trusted-list service a qualification was determined from.
type TrustedService struct {
	Territory        string `json:"territory"`
	Provider         string `json:"provider"`
	Service          string `json:"service"`
	StatusAtIssuance string `json:"statusAtIssuance"`
	StatusAtSigning  string `json:"statusAtSigning"`
}

// anchors are the trust anchors for a chain whose leaf has the extended key usage eku, at the
// time at: Options.TrustAnchors and the trusted lists' services in a positive status then.
func (v *Validator) anchors(at time.Time, eku x509.ExtKeyUsage) []*x509.Certificate {
	if v.opts.TrustedLists == nil {
		return v.opts.TrustAnchors
	}
	return slices.Concat(v.opts.TrustAnchors, v.opts.TrustedLists.Anchors(at, eku == x509.ExtKeyUsageTimeStamping))
}

// Qualify records the signature's qualification: from the trusted lists when given (a
// certificate no listed CA/QC service issued is not qualified, whatever it claims), else
// from what the certificate claims. chain is nil when none was built.
func (v *Validator) Qualify(rep *SignatureReport, cert *x509.Certificate, chain []*x509.Certificate, poe time.Time) {
	q, why := Qualification(cert)
	if v.opts.TrustedLists == nil {
		rep.Qualification, rep.QualificationSource = q, "certificate"
		rep.Info("qualification", "%s: %s (from the certificate; no trusted list consulted)", q, why)
		return
	}
	rep.QualificationSource = "trusted list"
	if chain == nil {
		chain = []*x509.Certificate{cert}
	}
	r := v.opts.TrustedLists.Qualify(chain, poe, v.vtime)
	if r.Qualification == "" {
		rep.Qualification = notQualified(q)
		msg := "no CA/QC service of the trusted lists issued the certificate"
		if len(r.Reasons) > 0 {
			msg += ": " + strings.Join(r.Reasons, "; ")
		}
		rep.Info("qualification", "%s: %s", rep.Qualification, msg)
		return
	}
	rep.Qualification = r.Qualification
	rep.TrustedService = &TrustedService{Territory: r.Territory, Provider: r.Provider, Service: r.ServiceName,
		StatusAtIssuance: r.StatusAtIssuance, StatusAtSigning: r.StatusAtSigning}
	rep.Info("qualification", "%s per the trusted list of %s: %s", r.Qualification, r.Territory, strings.Join(r.Reasons, "; "))
}

// notQualified is what a certificate's claim comes to when no trusted list confirms it.
func notQualified(q string) string {
	q = strings.TrimSuffix(q, "-QC")
	if rest, ok := strings.CutPrefix(q, "QE"); ok {
		return "AdE" + rest
	}
	return q
}
