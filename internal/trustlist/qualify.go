package trustlist

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"
)

// EN 319 412-5 QC statements.
var (
	oidQCStatements = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}
	oidQcCompliance = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}
	oidQcSSCD       = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 4}
	oidQcType       = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6}
	oidQcTypeESign  = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6, 1}
	oidQcTypeESeal  = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6, 2}
	oidQcTypeWeb    = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6, 3}
)

// QC is what a certificate's QCStatements say.
type QC struct {
	Compliance bool
	SSCD       bool
	Types      []string // esign, eseal, web
}

// QCStatements reads a certificate's QCStatements extension (absent: the zero QC).
func QCStatements(c *x509.Certificate) (QC, error) {
	var qc QC
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidQCStatements) {
			continue
		}
		var stmts []struct {
			ID   asn1.ObjectIdentifier
			Info asn1.RawValue `asn1:"optional"`
		}
		if rest, err := asn1.Unmarshal(e.Value, &stmts); err != nil || len(rest) > 0 {
			return QC{}, fmt.Errorf("the QCStatements extension is malformed")
		}
		for _, s := range stmts {
			switch {
			case s.ID.Equal(oidQcCompliance):
				qc.Compliance = true
			case s.ID.Equal(oidQcSSCD):
				qc.SSCD = true
			case s.ID.Equal(oidQcType):
				var types []asn1.ObjectIdentifier
				if _, err := asn1.Unmarshal(s.Info.FullBytes, &types); err != nil {
					return QC{}, fmt.Errorf("the QcType statement is malformed")
				}
				for _, t := range types {
					switch {
					case t.Equal(oidQcTypeESign):
						qc.Types = append(qc.Types, "esign")
					case t.Equal(oidQcTypeESeal):
						qc.Types = append(qc.Types, "eseal")
					case t.Equal(oidQcTypeWeb):
						qc.Types = append(qc.Types, "web")
					}
				}
			}
		}
	}
	return qc, nil
}

// Result is a certificate's qualification per the trusted lists.
type Result struct {
	// Qualification: QESig, QESeal (qualified certificate, QSCD), AdESig-QC, AdESeal-QC
	// (qualified certificate, no QSCD), AdESig, AdESeal (not qualified), or "" when no
	// trusted list covers the certificate's issuer.
	Qualification string
	// Service is the CA/QC service that issued the certificate, when one is listed.
	Territory, Provider, ServiceName  string
	StatusAtIssuance, StatusAtSigning string
	// Reasons say how the qualification was reached, one step each.
	Reasons []string
}

// Qualify determines the qualification of the signer certificate chain[0] (its issuers after
// it) for a signature made at signingTime (its best proof of existence), evaluated now.
//
// After ETSI TS 119 615 §4: the certificate is qualified only when a CA/QC service whose
// identity is one of its issuers was in a positive status both when the certificate was
// issued (notBefore) and at signingTime; the service's qualifiers (Qualifications extension
// at issuance) override or complete the certificate's QC statements; its type (e-signature or
// e-seal) must be one the service's additional service information allows. The key on a QSCD
// is read from QcSSCD or the QCWithQSCD/QCNoQSCD qualifiers.
func (s *Set) Qualify(chain []*x509.Certificate, signingTime, now time.Time) Result {
	var r Result
	if len(chain) == 0 {
		return r
	}
	cert := chain[0]
	qc, err := QCStatements(cert)
	if err != nil {
		r.Reasons = append(r.Reasons, err.Error())
	}
	kind := certKind(cert, qc)
	found := s.find(chain[1:], now, TypeCAQC)
	if len(found) == 0 {
		if qc.Compliance {
			r.Reasons = append(r.Reasons, "the certificate claims QcCompliance, but no CA/QC service of the trusted lists issued it")
		}
		return r
	}
	r.Qualification = "AdE" + kind
	// Several listed services may share an identity (one per history); the first in a
	// positive status at both times decides, else the first found explains the refusal.
	f := found[0]
	for _, cand := range found {
		a, okA := cand.Service.At(cert.NotBefore)
		b, okB := cand.Service.At(signingTime)
		if okA && okB && Positive(a.Status) && Positive(b.Status) && a.Type == TypeCAQC {
			f = cand
			break
		}
	}
	r.Territory, r.Provider, r.ServiceName = f.Territory, f.Provider, f.Service.Name
	if f.Stale {
		r.Reasons = append(r.Reasons, fmt.Sprintf("the trusted list of %s is past its NextUpdate", f.Territory))
	}
	atIssue, okA := f.Service.At(cert.NotBefore)
	atSign, okB := f.Service.At(signingTime)
	r.StatusAtIssuance, r.StatusAtSigning = atIssue.Status, atSign.Status
	switch {
	case !okA || !Positive(atIssue.Status) || atIssue.Type != TypeCAQC:
		r.Reasons = append(r.Reasons, fmt.Sprintf("the service %q was not a granted CA/QC when the certificate was issued (%s)", f.Service.Name, cert.NotBefore.Format(time.RFC3339)))
		return r
	case !okB || !Positive(atSign.Status) || atSign.Type != TypeCAQC:
		r.Reasons = append(r.Reasons, fmt.Sprintf("the service %q was %s at the signing time %s", f.Service.Name, statusName(atSign.Status), signingTime.Format(time.RFC3339)))
		return r
	}
	r.Reasons = append(r.Reasons, fmt.Sprintf("issued by %q of %q (%s), granted at issuance and at the signing time", f.Service.Name, f.Provider, f.Territory))

	compliance, sscd := qc.Compliance, qc.SSCD
	for _, q := range atIssue.Qualified {
		if !q.Criteria.match(cert) {
			continue
		}
		for _, u := range q.Qualifiers {
			switch u {
			case QualNotQualified:
				r.Reasons = append(r.Reasons, "the service's qualifier NotQualified applies")
				return r
			case QualQCStatement:
				compliance = true
			case QualWithSSCD, QualWithQSCD:
				sscd = true
			case QualNoSSCD, QualNoQSCD:
				sscd = false
			case QualForESig:
				kind = "Sig"
			case QualForESeal, QualLegalPerson:
				kind = "Seal"
			case QualForWSA:
				kind = ""
			}
			r.Reasons = append(r.Reasons, "qualifier "+u[len(prefixSvcInfoExt):]+" applies")
		}
	}
	if kind == "" {
		r.Qualification = ""
		r.Reasons = append(r.Reasons, "a certificate for website authentication signs nothing")
		return r
	}
	r.Qualification = "AdE" + kind
	if !compliance {
		r.Reasons = append(r.Reasons, "neither the certificate (QcCompliance) nor the service says it is qualified")
		return r
	}
	if want := map[string]string{"Sig": ForESignatures, "Seal": ForESeals}[kind]; len(atIssue.Additional) > 0 && !slices.Contains(atIssue.Additional, want) {
		r.Reasons = append(r.Reasons, fmt.Sprintf("the service is not qualified for e-%ss (its additional service information: %v)", map[string]string{"Sig": "signature", "Seal": "seal"}[kind], atIssue.Additional))
		return r
	}
	if !sscd {
		r.Qualification = "AdE" + kind + "-QC"
		r.Reasons = append(r.Reasons, "qualified certificate; the key is not on a QSCD")
		return r
	}
	r.Qualification = "QE" + kind
	r.Reasons = append(r.Reasons, "qualified certificate with the key on a QSCD")
	return r
}

// certKind is Sig or Seal by QcType, else by the subject (EN 319 412-5 §4.2.3: without QcType
// the certificate is for e-signatures), "" for a website certificate.
func certKind(c *x509.Certificate, qc QC) string {
	switch {
	case slices.Contains(qc.Types, "eseal"):
		return "Seal"
	case slices.Contains(qc.Types, "esign"):
		return "Sig"
	case slices.Contains(qc.Types, "web"):
		return ""
	}
	return "Sig"
}

func statusName(s string) string {
	if i := len("http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/"); len(s) > i {
		return s[i:]
	}
	if s == "" {
		return "not yet listed"
	}
	return s
}

// match evaluates the criteria on c.
func (cr Criteria) match(c *x509.Certificate) bool {
	if cr.Unknown > 0 {
		return false
	}
	var results []bool
	for _, ku := range cr.KeyUsage {
		ok := true
		for name, want := range ku {
			bit, known := keyUsageBits[name]
			if !known || (c.KeyUsage&bit != 0) != want {
				ok = false
			}
		}
		results = append(results, ok)
	}
	for _, set := range cr.Policies {
		ok := true
		for _, oid := range set {
			if !slices.ContainsFunc(c.PolicyIdentifiers, func(p asn1.ObjectIdentifier) bool { return p.String() == oid }) {
				ok = false
			}
		}
		results = append(results, ok)
	}
	for _, n := range cr.Nested {
		results = append(results, n.match(c))
	}
	switch cr.Assert {
	case "all":
		return !slices.Contains(results, false)
	case "atLeastOne":
		return slices.Contains(results, true)
	case "none":
		return !slices.Contains(results, true)
	}
	return false
}

var keyUsageBits = map[string]x509.KeyUsage{
	"digitalSignature": x509.KeyUsageDigitalSignature,
	"nonRepudiation":   x509.KeyUsageContentCommitment,
	"keyEncipherment":  x509.KeyUsageKeyEncipherment,
	"dataEncipherment": x509.KeyUsageDataEncipherment,
	"keyAgreement":     x509.KeyUsageKeyAgreement,
	"keyCertSign":      x509.KeyUsageCertSign,
	"crlSign":          x509.KeyUsageCRLSign,
	"encipherOnly":     x509.KeyUsageEncipherOnly,
	"decipherOnly":     x509.KeyUsageDecipherOnly,
}
