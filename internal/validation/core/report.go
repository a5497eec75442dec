package core

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/signing"
)

// Indication is the main status of EN 319 102-1 §5.1.3.
type Indication string

const (
	TotalPassed   Indication = "TOTAL-PASSED"
	TotalFailed   Indication = "TOTAL-FAILED"
	Indeterminate Indication = "INDETERMINATE"
)

// SubIndication is the detail of EN 319 102-1 Table 5 and 6 (their names).
type SubIndication string

const (
	FormatFailure              SubIndication = "FORMAT_FAILURE"
	HashFailure                SubIndication = "HASH_FAILURE"
	SigCryptoFailure           SubIndication = "SIG_CRYPTO_FAILURE"
	Revoked                    SubIndication = "REVOKED"
	RevokedNoPOE               SubIndication = "REVOKED_NO_POE"
	RevokedCANoPOE             SubIndication = "REVOKED_CA_NO_POE"
	NoSigningCertificateFound  SubIndication = "NO_SIGNING_CERTIFICATE_FOUND"
	NoCertificateChainFound    SubIndication = "NO_CERTIFICATE_CHAIN_FOUND"
	CertificateChainGeneral    SubIndication = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
	OutOfBoundsNoPOE           SubIndication = "OUT_OF_BOUNDS_NO_POE"
	NotYetValid                SubIndication = "NOT_YET_VALID"
	Expired                    SubIndication = "EXPIRED"
	TryLater                   SubIndication = "TRY_LATER"
	RevocationOutOfBoundsNoPOE SubIndication = "REVOCATION_OUT_OF_BOUNDS_NO_POE"
	SignedDataNotFound         SubIndication = "SIGNED_DATA_NOT_FOUND"
	SigConstraintsFailure      SubIndication = "SIG_CONSTRAINTS_FAILURE"
	TimestampOrderFailure      SubIndication = "TIMESTAMP_ORDER_FAILURE"
	CryptoConstraintsFailure   SubIndication = "CRYPTO_CONSTRAINTS_FAILURE"
)

// SubIndicationsOf lists the sub-indications EN 319 102-1 (V1.3.1, §5.1.3, Tables 5 and
// 6) gives each indication; FORMAT_FAILURE is in both. Every verdict here keeps to it.
var SubIndicationsOf = map[Indication][]SubIndication{
	TotalFailed: {FormatFailure, HashFailure, SigCryptoFailure, Revoked, Expired, NotYetValid},
	Indeterminate: {SigConstraintsFailure, ChainConstraintsFailure, CertificateChainGeneral, CryptoConstraintsFailure,
		FormatFailure, TimestampOrderFailure, NoSigningCertificateFound, NoCertificateChainFound, RevokedNoPOE,
		RevokedCANoPOE, OutOfBoundsNoPOE, RevocationOutOfBoundsNoPOE, TryLater, SignedDataNotFound},
}

// Report is the validation report of one document (after TS 119 102-2's ValidationReport: a
// signature validation report per signature, the validation time, and a conclusion).
type Report struct {
	Format         string    `json:"format"` // PDF, CMS, RFC3161, XML, ASiC-E
	Size           int64     `json:"size"`
	ValidationTime time.Time `json:"validationTime"`
	// Indication is the document's conclusion: the worst of its signatures' (TOTAL-FAILED over
	// INDETERMINATE over TOTAL-PASSED), and never TOTAL-PASSED when a part of the file is
	// covered by no valid signature.
	Indication    Indication    `json:"indication"`
	SubIndication SubIndication `json:"subIndication,omitempty"`
	Message       string        `json:"message,omitempty"`
	// Revisions is the number of incremental revisions of a PDF.
	Revisions int `json:"revisions,omitempty"`
	// Entries are an ASiC-E container's entries; a data entry no signature covers keeps the
	// container from TOTAL-PASSED.
	Entries    []ContainerEntry  `json:"entries,omitempty"`
	Signatures []SignatureReport `json:"signatures"`
}

// SignatureReport is the result of one signature or timestamp.
type SignatureReport struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // signature, document-timestamp, timestamp
	// Format: PAdES-BASELINE, PKCS#7 (adbe.pkcs7.detached), CAdES-BASELINE, CMS, RFC3161.
	Format        string        `json:"format"`
	Level         signing.Level `json:"level,omitempty"`
	Indication    Indication    `json:"indication"`
	SubIndication SubIndication `json:"subIndication,omitempty"`
	Signer        *CertInfo     `json:"signer,omitempty"`
	// ClaimedSigningTime is what the signer says (signing-time, /M); not a proof.
	ClaimedSigningTime *time.Time `json:"claimedSigningTime,omitempty"`
	// ProofOfExistence is the earliest verified timestamp over the signature (its signature
	// timestamp, or a PDF document timestamp covering it), else the validation time
	// (EN 319 102-1's best-signature-time).
	ProofOfExistence time.Time         `json:"proofOfExistence"`
	Timestamps       []SignatureReport `json:"timestamps,omitempty"`
	// TimestampTime is, for a timestamp, its genTime.
	TimestampTime *time.Time      `json:"timestampTime,omitempty"`
	Chain         []CertInfo      `json:"chain,omitempty"`
	Revocation    []RevocationUse `json:"revocation,omitempty"`
	// Qualification is the signature's qualification (TS 119 615, as EN 319 102-2's
	// SignatureQualification): QESig, QESeal, AdESig-QC, AdESeal-QC, AdESig, AdESeal,
	// unknown. QualificationSource says whence: "trusted list" (Options.TrustedLists: the
	// issuing CA/QC service, TrustedService, its status and qualifiers with the certificate's QC
	// statements) or "certificate" (what the certificate claims; no list given).
	Qualification       string          `json:"qualification,omitempty"`
	QualificationSource string          `json:"qualificationSource,omitempty"`
	TrustedService      *TrustedService `json:"trustedService,omitempty"`
	// PDF only: the signed byte ranges, the revision they end at (1-based) and what follows:
	// each later revision, then the changes DocMDP/FieldMDP permit that were made (a form
	// field filled in, annotations under P=3).
	ByteRange           []int64  `json:"byteRange,omitempty"`
	Revision            int      `json:"revision,omitempty"`
	CoversWholeDocument bool     `json:"coversWholeDocument,omitempty"`
	LaterUpdates        []string `json:"laterUpdates,omitempty"`
	// SignedObjects are what the verified References (XML) or manifest entries (ASiC-E)
	// cover, each named by where it is, as it was verified.
	SignedObjects []SignedObject `json:"signedObjects,omitempty"`
	Checks        []Check        `json:"checks"`
}

// SignedObject is what one Reference or ASiCManifest DataObjectReference covers.
type SignedObject struct {
	URI  string `json:"uri"`
	Type string `json:"type,omitempty"` // the Reference's Type, when given
	// Target is "/" (the whole document), the element's position (/Invoice[1]/Item[2]),
	// content:NAME (Options.Content) or entry:NAME (an ASiC-E entry).
	Target string `json:"target"`
}

// ContainerEntry is one entry of an ASiC-E container and the signatures that cover it.
type ContainerEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Kind: data, signature, manifest, mimetype, metadata (other META-INF entries).
	Kind     string   `json:"kind"`
	SignedBy []string `json:"signedBy,omitempty"`
}

// CertInfo describes a certificate.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	SHA256    string    `json:"sha256"`
}

// NewCertInfo describes c.
func NewCertInfo(c *x509.Certificate) *CertInfo {
	sum := sha256.Sum256(c.Raw)
	return &CertInfo{Subject: dn(c.RawSubject, c.Subject.String()), Issuer: dn(c.RawIssuer, c.Issuer.String()), Serial: c.SerialNumber.Text(16),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), SHA256: hex.EncodeToString(sum[:])}
}

// RevocationUse is the revocation data a certificate was checked with.
type RevocationUse struct {
	Subject    string     `json:"subject"`
	Type       string     `json:"type"`   // OCSP, CRL
	Source     string     `json:"source"` // DSS, CMS, fetched
	Status     string     `json:"status"` // good, revoked, unknown
	ThisUpdate time.Time  `json:"thisUpdate"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// Check is one constraint checked, with its result (PASSED, FAILED, INDETERMINATE, INFO).
type Check struct {
	Name          string        `json:"name"`
	Result        string        `json:"result"`
	SubIndication SubIndication `json:"subIndication,omitempty"`
	Message       string        `json:"message,omitempty"`
}

// Pass records a check that passed.
func (s *SignatureReport) Pass(name, msg string, args ...any) {
	s.Checks = append(s.Checks, Check{Name: name, Result: "PASSED", Message: fmt.Sprintf(msg, args...)})
}

// Info records what was found without a verdict.
func (s *SignatureReport) Info(name, msg string, args ...any) {
	s.Checks = append(s.Checks, Check{Name: name, Result: "INFO", Message: fmt.Sprintf(msg, args...)})
}

// Fail records a check that failed: the signature is TOTAL-FAILED with sub.
func (s *SignatureReport) Fail(name string, sub SubIndication, msg string, args ...any) {
	s.Checks = append(s.Checks, Check{Name: name, Result: "FAILED", SubIndication: sub, Message: fmt.Sprintf(msg, args...)})
}

// Indeterminate records a check that could not conclude: INDETERMINATE with sub, unless a
// check failed.
func (s *SignatureReport) Indeterminate(name string, sub SubIndication, msg string, args ...any) {
	s.Checks = append(s.Checks, Check{Name: name, Result: "INDETERMINATE", SubIndication: sub, Message: fmt.Sprintf(msg, args...)})
}

// Conclude sets the indication from the checks: the first failure decides, then the first
// indeterminate result; TOTAL-PASSED only when there is neither.
func (s *SignatureReport) Conclude() {
	s.Indication, s.SubIndication = TotalPassed, ""
	for _, c := range s.Checks {
		if c.Result == "FAILED" {
			s.Indication, s.SubIndication = TotalFailed, c.SubIndication
			return
		}
	}
	for _, c := range s.Checks {
		if c.Result == "INDETERMINATE" {
			s.Indication, s.SubIndication = Indeterminate, c.SubIndication
			return
		}
	}
}

// Failed reports a check that did not pass.
func (s *SignatureReport) Failed() bool {
	for _, c := range s.Checks {
		if c.Result != "PASSED" && c.Result != "INFO" {
			return true
		}
	}
	return false
}

// Summarize sets the document's conclusion from its signatures.
func (r *Report) Summarize() {
	if len(r.Signatures) == 0 {
		r.Indication, r.SubIndication, r.Message = TotalFailed, SignedDataNotFound, "no signature found"
		return
	}
	r.Indication = TotalPassed
	rank := map[Indication]int{TotalPassed: 0, Indeterminate: 1, TotalFailed: 2}
	for _, s := range r.Signatures {
		if rank[s.Indication] > rank[r.Indication] {
			r.Indication, r.SubIndication, r.Message = s.Indication, s.SubIndication, s.ID+": "+string(s.SubIndication)
		}
	}
	// A container entry no signature covers was not signed (added after signing, or never
	// meant to be): the container as a whole is not what was signed.
	for _, e := range r.Entries {
		if e.Kind == "data" && len(e.SignedBy) == 0 && r.Indication != TotalFailed {
			r.Indication, r.SubIndication, r.Message = TotalFailed, FormatFailure, "entry "+e.Name+" is covered by no signature"
		}
	}
}

// Text is a readable summary, one block per signature.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Document: %s, %d bytes", r.Format, r.Size)
	if r.Revisions > 0 {
		fmt.Fprintf(&b, ", %d revisions", r.Revisions)
	}
	fmt.Fprintf(&b, "\nValidated at: %s\nResult: %s", r.ValidationTime.Format(time.RFC3339), r.Indication)
	if r.SubIndication != "" {
		fmt.Fprintf(&b, " / %s", r.SubIndication)
	}
	if r.Message != "" {
		fmt.Fprintf(&b, " (%s)", r.Message)
	}
	b.WriteString("\n")
	for _, e := range r.Entries {
		fmt.Fprintf(&b, "entry %s (%s, %d bytes): ", e.Name, e.Kind, e.Size)
		if len(e.SignedBy) == 0 {
			b.WriteString("not signed\n")
		} else {
			fmt.Fprintf(&b, "signed by %s\n", strings.Join(e.SignedBy, ", "))
		}
	}
	for _, s := range r.Signatures {
		writeSig(&b, s, "")
	}
	return b.String()
}

func writeSig(b *strings.Builder, s SignatureReport, indent string) {
	fmt.Fprintf(b, "\n%s%s %s: %s", indent, s.Kind, s.ID, s.Indication)
	if s.SubIndication != "" {
		fmt.Fprintf(b, " / %s", s.SubIndication)
	}
	fmt.Fprintf(b, "\n%s  format: %s", indent, s.Format)
	if s.Level != "" {
		fmt.Fprintf(b, " %s", s.Level)
	}
	b.WriteString("\n")
	if s.Signer != nil {
		fmt.Fprintf(b, "%s  signer: %s\n%s  issuer: %s\n", indent, s.Signer.Subject, indent, s.Signer.Issuer)
	}
	if s.Qualification != "" {
		fmt.Fprintf(b, "%s  qualification: %s (from the %s)\n", indent, s.Qualification, s.QualificationSource)
		if t := s.TrustedService; t != nil {
			fmt.Fprintf(b, "%s  trusted service: %s of %s (%s)\n", indent, t.Service, t.Provider, t.Territory)
		}
	}
	if s.ClaimedSigningTime != nil {
		fmt.Fprintf(b, "%s  claimed signing time: %s\n", indent, s.ClaimedSigningTime.Format(time.RFC3339))
	}
	if s.TimestampTime != nil {
		fmt.Fprintf(b, "%s  timestamp time: %s\n", indent, s.TimestampTime.Format(time.RFC3339))
	}
	fmt.Fprintf(b, "%s  proof of existence: %s\n", indent, s.ProofOfExistence.Format(time.RFC3339))
	if len(s.ByteRange) > 0 {
		fmt.Fprintf(b, "%s  byte range: %v, revision %d", indent, s.ByteRange, s.Revision)
		if s.CoversWholeDocument {
			b.WriteString(", covers the whole document")
		}
		b.WriteString("\n")
		for _, u := range s.LaterUpdates {
			fmt.Fprintf(b, "%s  later update: %s\n", indent, u)
		}
	}
	for _, o := range s.SignedObjects {
		fmt.Fprintf(b, "%s  signed: %s (URI %q)\n", indent, o.Target, o.URI)
	}
	for _, c := range s.Checks {
		if c.Result == "PASSED" || c.Result == "INFO" {
			continue
		}
		fmt.Fprintf(b, "%s  %s %s: %s\n", indent, c.Result, c.Name, c.Message)
	}
	for _, t := range s.Timestamps {
		writeSig(b, t, indent+"  ")
	}
}

// dnNames are the attribute names a distinguished name is written with (RFC 4514, and the
// EN 319 412 attributes Go's pkix.Name prints only as hex).
var dnNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
	"2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.97": "organizationIdentifier",
	"1.2.840.113549.1.9.1": "emailAddress",
}

// dn writes a DER Name as RFC 4514 does (last RDN first) with the names above; fallback when it
// does not parse or holds a value that is not a string.
func dn(raw []byte, fallback string) string {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return fallback
	}
	var parts []string
	for i := len(rdns) - 1; i >= 0; i-- {
		var set []string
		for _, a := range rdns[i] {
			v, ok := a.Value.(string)
			if !ok {
				return fallback
			}
			n := dnNames[a.Type.String()]
			if n == "" {
				n = a.Type.String()
			}
			set = append(set, n+"="+escapeDN(v))
		}
		parts = append(parts, strings.Join(set, "+"))
	}
	return strings.Join(parts, ",")
}

func escapeDN(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `+`, `\+`, `"`, `\"`, `<`, `\<`, `>`, `\>`, `;`, `\;`, "=", `\=`)
	return r.Replace(v)
}
