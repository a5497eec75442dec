package trustlist

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// Publication is what Publish writes: one scheme operator's list of its own services.
type Publication struct {
	SequenceNumber int
	Operator       string // SchemeOperatorName and TSPName
	Territory      string // ISO 3166-1 alpha-2
	InfoURI        string // SchemeInformationURI and TSPInformationURI
	Location       string // where the list is published (its DistributionPoints)
	IssueDate      time.Time
	NextUpdate     time.Time
	Services       []PublishedService
}

// PublishedService is one service of the list.
type PublishedService struct {
	Name        string
	Type        string // TypeCAQC, TypeQTST ...
	Status      string // StatusGranted ...
	Since       time.Time
	Certificate *x509.Certificate
	// Additional are AdditionalServiceInformation URIs (ForESignatures, ForESeals).
	Additional []string
}

// Publish writes p as a TS 119 612 v2 list and signs it enveloped with XAdES B-B through s.
func Publish(ctx context.Context, p Publication, s signing.Signer) ([]byte, error) {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	root := doc.CreateElement("tsl:TrustServiceStatusList")
	root.CreateAttr("xmlns:tsl", NSTSL)
	root.CreateAttr("xmlns:tslx", NSExt)
	root.CreateAttr("Id", "TrustServiceStatusList")
	root.CreateAttr("TSLTag", "http://uri.etsi.org/19612/TSLTag")
	si := root.CreateElement("tsl:SchemeInformation")
	el(si, "tsl:TSLVersionIdentifier", "5")
	el(si, "tsl:TSLSequenceNumber", strconv.Itoa(p.SequenceNumber))
	el(si, "tsl:TSLType", TypeEUGeneric)
	name(si, "tsl:SchemeOperatorName", p.Operator)
	addr := si.CreateElement("tsl:SchemeOperatorAddress")
	el(el(addr, "tsl:ElectronicAddress", ""), "tsl:URI", p.InfoURI).CreateAttr("xml:lang", "en")
	name(si, "tsl:SchemeName", p.Territory+":Trusted list of "+p.Operator)
	el(el(si, "tsl:SchemeInformationURI", ""), "tsl:URI", p.InfoURI).CreateAttr("xml:lang", "en")
	el(si, "tsl:StatusDeterminationApproach", "http://uri.etsi.org/TrstSvc/TrustedList/StatusDetn/EUappropriate")
	el(el(si, "tsl:SchemeTypeCommunityRules", ""), "tsl:URI", "http://uri.etsi.org/TrstSvc/TrustedList/schemerules/EUcommon").CreateAttr("xml:lang", "en")
	el(si, "tsl:SchemeTerritory", p.Territory)
	el(el(si, "tsl:PolicyOrLegalNotice", ""), "tsl:TSLLegalNotice", "The applicable legal framework is Regulation (EU) No 910/2014.").CreateAttr("xml:lang", "en")
	el(si, "tsl:HistoricalInformationPeriod", "65535")
	el(si, "tsl:ListIssueDateTime", p.IssueDate.UTC().Format(time.RFC3339))
	el(el(si, "tsl:NextUpdate", ""), "tsl:dateTime", p.NextUpdate.UTC().Format(time.RFC3339))
	if p.Location != "" {
		el(el(si, "tsl:DistributionPoints", ""), "tsl:URI", p.Location)
	}
	tsp := el(el(root, "tsl:TrustServiceProviderList", ""), "tsl:TrustServiceProvider", "")
	info := el(tsp, "tsl:TSPInformation", "")
	name(info, "tsl:TSPName", p.Operator)
	addr = el(info, "tsl:TSPAddress", "")
	el(el(addr, "tsl:ElectronicAddress", ""), "tsl:URI", p.InfoURI).CreateAttr("xml:lang", "en")
	el(el(info, "tsl:TSPInformationURI", ""), "tsl:URI", p.InfoURI).CreateAttr("xml:lang", "en")
	svcs := el(tsp, "tsl:TSPServices", "")
	for _, s := range p.Services {
		if s.Certificate == nil {
			return nil, fmt.Errorf("%w: trustlist: the service %q has no certificate", signing.ErrInvalid, s.Name)
		}
		si := el(el(svcs, "tsl:TSPService", ""), "tsl:ServiceInformation", "")
		el(si, "tsl:ServiceTypeIdentifier", s.Type)
		name(si, "tsl:ServiceName", s.Name)
		el(el(el(si, "tsl:ServiceDigitalIdentity", ""), "tsl:DigitalId", ""), "tsl:X509Certificate", base64.StdEncoding.EncodeToString(s.Certificate.Raw))
		el(si, "tsl:ServiceStatus", s.Status)
		el(si, "tsl:StatusStartingTime", s.Since.UTC().Format(time.RFC3339))
		if len(s.Additional) > 0 {
			exts := el(si, "tsl:ServiceInformationExtensions", "")
			for _, a := range s.Additional {
				ext := el(exts, "tsl:Extension", "")
				ext.CreateAttr("Critical", "false")
				el(el(ext, "tsl:AdditionalServiceInformation", ""), "tsl:URI", a).CreateAttr("xml:lang", "en")
			}
		}
	}
	var buf bytes.Buffer
	if _, err := doc.WriteTo(&buf); err != nil {
		return nil, err
	}
	return xades.Sign(ctx, &buf, s, xades.Options{Level: signing.LevelB, Packaging: xades.Enveloped, Time: p.IssueDate})
}

func el(parent *etree.Element, tag, text string) *etree.Element {
	e := parent.CreateElement(tag)
	if text != "" {
		e.SetText(text)
	}
	return e
}

func name(parent *etree.Element, tag, text string) {
	el(el(parent, tag, ""), "tsl:Name", text).CreateAttr("xml:lang", "en")
}
