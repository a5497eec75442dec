// Package trustlist reads, checks and writes trusted lists (ETSI TS 119 612 v2): a Member
// State's list of its trust service providers and their services, and the EU list of trusted
// lists (LOTL) that points at them.
//
// The contract:
//   - Parse reads a TrustServiceStatusList from untrusted bytes: a DTD (and so any entity) is
//     refused before parsing, nesting and the number of nodes are bounded (maxNodes), the
//     document is at most MaxSize bytes. Parse checks no signature: what it returns is a claim.
//   - Load reads lists named by the operator and keeps only those whose enveloped XML
//     signature verifies (through the Verifier given, which covers the whole list) with a
//     certificate the operator configured (a LOTL's signers, a list's signers) or that the
//     LOTL's pointer to the list names. A list that does not verify is an error, never
//     half-loaded.
//   - A Set answers what a validator asks: the certificates of services in a positive status
//     at a time (trust anchors) and the qualification of a signer's certificate (Qualify),
//     from the service type, its status at the certificate's issuance and at the signing time,
//     the service's qualification extensions and additional service information, and the
//     certificate's QC statements (EN 319 412-5), after the manner of ETSI TS 119 615.
//   - Publish writes a list and signs it enveloped with XAdES B-B through a signing.Signer,
//     as TS 119 612 §5.7 asks.
package trustlist

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// Namespaces of TS 119 612 v2.
const (
	NSTSL   = "http://uri.etsi.org/02231/v2#"
	NSExt   = "http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#"
	NSAdd   = "http://uri.etsi.org/02231/v2/additionaltypes#"
	nsXAdES = "http://uri.etsi.org/01903/v1.3.2#"
	nsDS    = "http://www.w3.org/2000/09/xmldsig#"
)

// Service types (TS 119 612 §5.5.1.1) Vula acts on.
const (
	TypeCAQC   = "http://uri.etsi.org/TrstSvc/Svctype/CA/QC"
	TypeCAPKC  = "http://uri.etsi.org/TrstSvc/Svctype/CA/PKC"
	TypeQTST   = "http://uri.etsi.org/TrstSvc/Svctype/TSA/QTST"
	TypeTSA    = "http://uri.etsi.org/TrstSvc/Svctype/TSA"
	TypeTSAQES = "http://uri.etsi.org/TrstSvc/Svctype/TSA/TSS-QC"
)

// Service statuses (TS 119 612 §5.5.4): granted and withdrawn since eIDAS, and the statuses
// of Directive 1999/93/EC that earlier history instances carry.
const (
	StatusGranted     = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/granted"
	StatusWithdrawn   = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/withdrawn"
	StatusRecognised  = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/recognisedatnationallevel"
	StatusDeprecated  = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/deprecatedatnationallevel"
	statusUnderSuperv = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/undersupervision"
	statusCessation   = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/supervisionincessation"
	statusAccredited  = "http://uri.etsi.org/TrstSvc/TrustedList/Svcstatus/accredited"
)

// List types (TS 119 612 §5.3.3).
const (
	TypeEUGeneric = "http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUgeneric"
	TypeEULOTL    = "http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUlistofthelists"
)

// Qualifiers (TS 119 612 §5.5.9.2.3) and additional service information (§5.5.9.4).
const (
	prefixSvcInfoExt = "http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/"
	QualQCStatement  = prefixSvcInfoExt + "QCStatement"
	QualWithSSCD     = prefixSvcInfoExt + "QCWithSSCD"
	QualNoSSCD       = prefixSvcInfoExt + "QCNoSSCD"
	QualWithQSCD     = prefixSvcInfoExt + "QCWithQSCD"
	QualNoQSCD       = prefixSvcInfoExt + "QCNoQSCD"
	QualForESig      = prefixSvcInfoExt + "QCForESig"
	QualForESeal     = prefixSvcInfoExt + "QCForESeal"
	QualForWSA       = prefixSvcInfoExt + "QCForWSA"
	QualLegalPerson  = prefixSvcInfoExt + "QCForLegalPerson"
	QualNotQualified = prefixSvcInfoExt + "NotQualified"
	ForESignatures   = prefixSvcInfoExt + "ForeSignatures"
	ForESeals        = prefixSvcInfoExt + "ForeSeals"
	ForWebSiteAuth   = prefixSvcInfoExt + "ForWebSiteAuthentication"
)

// MaxSize bounds a list: the EU's largest national lists are a few MB.
const MaxSize = 32 << 20

// maxNodes bounds the elements and attributes of a list, as validation bounds XML documents.
const maxNodes = 500_000

// List is one trusted list, or the list of the lists.
type List struct {
	Type           string // TSLType
	SequenceNumber int
	Operator       string // SchemeOperatorName
	Territory      string // SchemeTerritory
	IssueDate      time.Time
	NextUpdate     time.Time // zero: closed list
	Pointers       []Pointer // PointersToOtherTSL
	Providers      []Provider
}

// IsLOTL reports whether the list is a list of lists.
func (l *List) IsLOTL() bool { return strings.HasSuffix(l.Type, "listofthelists") }

// Pointer is a list's pointer to another trusted list: where it is and who signs it.
type Pointer struct {
	Location  string // TSLLocation
	Type      string // TSLType of the list pointed at
	Territory string
	MimeType  string
	// Signers are the certificates the list pointed at must be signed with.
	Signers []*x509.Certificate
}

// Provider is one trust service provider.
type Provider struct {
	Name     string
	Services []Service
}

// Service is one trust service with its current state first and its history after.
type Service struct {
	Name         string
	Certificates []*x509.Certificate // ServiceDigitalIdentity
	// Periods are the service's states, newest first: the current ServiceInformation, then
	// each ServiceHistoryInstance. A state holds from its Start until the next newer one's.
	Periods []Period
}

// Period is a service's state from Start on.
type Period struct {
	Type       string // ServiceTypeIdentifier
	Status     string
	Start      time.Time
	Additional []string // AdditionalServiceInformation URIs
	Qualified  []Qualification
}

// Qualification is one QualificationElement: qualifiers that apply to the certificates the
// criteria select.
type Qualification struct {
	Qualifiers []string
	Criteria   Criteria
}

// Criteria is a CriteriaList: assert all, atLeastOne or none over its criteria.
type Criteria struct {
	Assert   string
	KeyUsage []map[string]bool // per KeyUsage element: bit name → value
	Policies [][]string        // per PolicySet: the policy OIDs, all of which must be present
	Nested   []Criteria
	// Unknown counts criteria this reader does not evaluate (otherCriteriaList ...): a
	// qualification with one never applies, rather than applying wrongly.
	Unknown int
}

// At is the service's state at t, or false when the service did not exist yet.
func (s *Service) At(t time.Time) (Period, bool) {
	for _, p := range s.Periods {
		if !p.Start.After(t) {
			return p, true
		}
	}
	return Period{}, false
}

// Positive reports a status under which the service's certificates are trusted.
func Positive(status string) bool {
	switch status {
	case StatusGranted, StatusRecognised, statusUnderSuperv, statusCessation, statusAccredited:
		return true
	}
	return false
}

// Parse reads a trusted list. It checks no signature.
func Parse(data []byte) (*List, error) {
	doc, err := parseXML(data)
	if err != nil {
		return nil, err
	}
	return fromDoc(doc)
}

// parseXML is xades.ParseXML (no DTD, bounded depth) behind a node count and a size bound.
func parseXML(data []byte) (*etree.Document, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: trustlist: the list has %d bytes, the limit is %d", signing.ErrTooLarge, len(data), MaxSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	doc, err := xades.ParseXMLBounded(data, maxNodes)
	if err != nil {
		return nil, fmt.Errorf("trustlist: %w", err)
	}
	return doc, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: trustlist: %s", signing.ErrInvalid, fmt.Sprintf(format, args...))
}

func fromDoc(doc *etree.Document) (*List, error) {
	root := doc.Root()
	if !is(root, NSTSL, "TrustServiceStatusList") {
		return nil, invalid("the root is not a TS 119 612 TrustServiceStatusList")
	}
	si := only(root, NSTSL, "SchemeInformation")
	if si == nil {
		return nil, invalid("no single SchemeInformation")
	}
	l := &List{
		Type:      text(only(si, NSTSL, "TSLType")),
		Operator:  firstName(only(si, NSTSL, "SchemeOperatorName")),
		Territory: text(only(si, NSTSL, "SchemeTerritory")),
	}
	if v := text(only(si, NSTSL, "TSLVersionIdentifier")); v != "5" && v != "6" {
		return nil, invalid("TSLVersionIdentifier %q: versions 5 and 6 (TS 119 612 v2) are read", v)
	}
	n, err := strconv.Atoi(text(only(si, NSTSL, "TSLSequenceNumber")))
	if err != nil || n < 1 {
		return nil, invalid("TSLSequenceNumber is not a positive integer")
	}
	l.SequenceNumber = n
	if l.IssueDate, err = parseTime(text(only(si, NSTSL, "ListIssueDateTime"))); err != nil {
		return nil, invalid("ListIssueDateTime: %v", err)
	}
	if nu := only(si, NSTSL, "NextUpdate"); nu != nil {
		if dt := only(nu, NSTSL, "dateTime"); dt != nil {
			if l.NextUpdate, err = parseTime(text(dt)); err != nil {
				return nil, invalid("NextUpdate: %v", err)
			}
		}
	}
	if ptrs := only(si, NSTSL, "PointersToOtherTSL"); ptrs != nil {
		for _, p := range children(ptrs, NSTSL, "OtherTSLPointer") {
			ptr, err := pointer(p)
			if err != nil {
				return nil, err
			}
			l.Pointers = append(l.Pointers, ptr)
		}
	}
	if tl := only(root, NSTSL, "TrustServiceProviderList"); tl != nil {
		for _, tsp := range children(tl, NSTSL, "TrustServiceProvider") {
			p := Provider{Name: firstName(only(only(tsp, NSTSL, "TSPInformation"), NSTSL, "TSPName"))}
			for _, svc := range children(only(tsp, NSTSL, "TSPServices"), NSTSL, "TSPService") {
				s, err := service(svc)
				if err != nil {
					return nil, fmt.Errorf("%w (provider %q)", err, p.Name)
				}
				p.Services = append(p.Services, s)
			}
			l.Providers = append(l.Providers, p)
		}
	}
	return l, nil
}

func pointer(p *etree.Element) (Pointer, error) {
	ptr := Pointer{Location: text(only(p, NSTSL, "TSLLocation"))}
	for _, sdi := range children(only(p, NSTSL, "ServiceDigitalIdentities"), NSTSL, "ServiceDigitalIdentity") {
		certs, err := identity(sdi)
		if err != nil {
			return ptr, err
		}
		ptr.Signers = append(ptr.Signers, certs...)
	}
	if ai := only(p, NSTSL, "AdditionalInformation"); ai != nil {
		for _, o := range children(ai, NSTSL, "OtherInformation") {
			for _, c := range o.ChildElements() {
				switch {
				case is(c, NSTSL, "TSLType"):
					ptr.Type = text(c)
				case is(c, NSTSL, "SchemeTerritory"):
					ptr.Territory = text(c)
				case is(c, NSAdd, "MimeType"):
					ptr.MimeType = text(c)
				}
			}
		}
	}
	return ptr, nil
}

func service(svc *etree.Element) (Service, error) {
	info := only(svc, NSTSL, "ServiceInformation")
	if info == nil {
		return Service{}, invalid("a TSPService without one ServiceInformation")
	}
	s := Service{Name: firstName(only(info, NSTSL, "ServiceName"))}
	certs, err := identity(only(info, NSTSL, "ServiceDigitalIdentity"))
	if err != nil {
		return s, err
	}
	s.Certificates = certs
	cur, err := period(info)
	if err != nil {
		return s, err
	}
	s.Periods = append(s.Periods, cur)
	if h := only(svc, NSTSL, "ServiceHistory"); h != nil {
		for _, hi := range children(h, NSTSL, "ServiceHistoryInstance") {
			p, err := period(hi)
			if err != nil {
				return s, err
			}
			s.Periods = append(s.Periods, p)
		}
	}
	slices.SortStableFunc(s.Periods, func(a, b Period) int { return b.Start.Compare(a.Start) })
	return s, nil
}

func period(e *etree.Element) (Period, error) {
	p := Period{
		Type:   text(only(e, NSTSL, "ServiceTypeIdentifier")),
		Status: text(only(e, NSTSL, "ServiceStatus")),
	}
	if p.Type == "" || p.Status == "" {
		return p, invalid("a service without ServiceTypeIdentifier or ServiceStatus")
	}
	var err error
	if p.Start, err = parseTime(text(only(e, NSTSL, "StatusStartingTime"))); err != nil {
		return p, invalid("StatusStartingTime: %v", err)
	}
	for _, ext := range children(only(e, NSTSL, "ServiceInformationExtensions"), NSTSL, "Extension") {
		for _, c := range ext.ChildElements() {
			switch {
			case is(c, NSTSL, "AdditionalServiceInformation"):
				p.Additional = append(p.Additional, text(only(c, NSTSL, "URI")))
			case is(c, NSExt, "Qualifications"):
				for _, qe := range children(c, NSExt, "QualificationElement") {
					q := Qualification{}
					for _, qu := range children(only(qe, NSExt, "Qualifiers"), NSExt, "Qualifier") {
						q.Qualifiers = append(q.Qualifiers, qu.SelectAttrValue("uri", ""))
					}
					cl := only(qe, NSExt, "CriteriaList")
					if cl == nil {
						return p, invalid("a QualificationElement without CriteriaList")
					}
					q.Criteria = criteria(cl, 0)
					p.Qualified = append(p.Qualified, q)
				}
			default:
				// An extension this reader does not know: TS 119 612 §5.5.9 says a critical
				// one must make the service unusable; its qualifications cannot be trusted.
				if ext.SelectAttrValue("Critical", "false") == "true" {
					p.Qualified = append(p.Qualified, Qualification{Qualifiers: []string{QualNotQualified}, Criteria: Criteria{Assert: "all"}})
				}
			}
		}
	}
	return p, nil
}

// criteria reads a CriteriaList; depth is bounded by the parser's maxDepth already.
func criteria(cl *etree.Element, depth int) Criteria {
	c := Criteria{Assert: cl.SelectAttrValue("assert", "all")}
	for _, e := range cl.ChildElements() {
		switch {
		case is(e, NSExt, "KeyUsage"):
			bits := map[string]bool{}
			for _, b := range children(e, NSExt, "KeyUsageBit") {
				bits[b.SelectAttrValue("name", "")] = strings.TrimSpace(b.Text()) == "true"
			}
			c.KeyUsage = append(c.KeyUsage, bits)
		case is(e, NSExt, "PolicySet"):
			var oids []string
			for _, pi := range children(e, NSExt, "PolicyIdentifier") {
				oids = append(oids, strings.TrimPrefix(text(only(pi, nsXAdES, "Identifier")), "urn:oid:"))
			}
			c.Policies = append(c.Policies, oids)
		case is(e, NSExt, "CriteriaList"):
			c.Nested = append(c.Nested, criteria(e, depth+1))
		case is(e, NSExt, "Description"):
		default:
			c.Unknown++
		}
	}
	return c
}

// identity reads a ServiceDigitalIdentity's certificates (other DigitalId forms, a subject
// name or a key identifier, identify a certificate given elsewhere and add none).
func identity(sdi *etree.Element) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, d := range children(sdi, NSTSL, "DigitalId") {
		for _, c := range children(d, NSTSL, "X509Certificate") {
			der, err := decodeB64(c.Text())
			if err != nil {
				return nil, invalid("an X509Certificate is not base64")
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, invalid("an X509Certificate does not parse: %v", err)
			}
			out = append(out, cert)
		}
	}
	return out, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an xsd:dateTime", s)
	}
	return t.UTC(), nil
}

// firstName is the first Name of a multilingual name list (the English one when there is one).
func firstName(e *etree.Element) string {
	names := children(e, NSTSL, "Name")
	for _, n := range names {
		if n.SelectAttrValue("xml:lang", "") == "en" {
			return text(n)
		}
	}
	if len(names) > 0 {
		return text(names[0])
	}
	return ""
}
