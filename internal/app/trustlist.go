package app

import (
	"log/slog"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/validation"
)

// TrustedListPath is where the platform publishes its own trusted list.
const TrustedListPath = "/pki/tsl.xml"

// TrustedLists loads the lists the operator configured (nil when none), for the server's
// validation and vula verify alike: a list that does not verify stops the start, rather than the
// validator trusting less, or more, than configured.
func TrustedLists(cfg config.Config) (*trustlist.Set, error) {
	v := cfg.Validation
	return trustlist.LoadFiles(trustlist.Files{LOTL: v.LOTL, LOTLSigners: v.LOTLSigners, Lists: v.TrustedLists, ListSigners: v.TrustedListSigners},
		validation.ListVerifier{})
}

// ownTrustedList publishes the platform's services — the CA for natural persons (CA/QC, for
// e-signatures), the seal CA (CA/QC, for e-seals) and the timestamping unit (TSA/QTST) — in a
// list signed with the tsl-signer key through the key layer (each issue audited).
func ownTrustedList(cfg config.Config, a *certs.Authority, settings store.Settings, log *slog.Logger) *trustlist.Publisher {
	personCA, _ := a.Certificate(certs.NamePersonCA)
	sealCA, _ := a.Certificate(certs.NameSealCA)
	tsu := a.TSA().Cert
	base := strings.TrimRight(cfg.BaseURL, "/")
	iss := a.TSLSigner()
	return &trustlist.Publisher{
		Settings: settings,
		Signer:   signing.Signer{Key: iss.Signer, Cert: iss.Cert, Chain: a.Chain(iss.Cert)},
		List: trustlist.Publication{Operator: cfg.PKI.Organization, Territory: cfg.PKI.Country, InfoURI: base + "/pki", Location: base + TrustedListPath,
			Services: []trustlist.PublishedService{
				{Name: personCA.Subject.CommonName, Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: personCA.NotBefore,
					Certificate: personCA, Additional: []string{trustlist.ForESignatures}},
				{Name: sealCA.Subject.CommonName, Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: sealCA.NotBefore,
					Certificate: sealCA, Additional: []string{trustlist.ForESeals}},
				{Name: tsu.Subject.CommonName, Type: trustlist.TypeQTST, Status: trustlist.StatusGranted, Since: tsu.NotBefore, Certificate: tsu},
			}},
		Period: time.Duration(cfg.PKI.TrustedListPeriod),
		Now:    time.Now,
		Log:    log,
	}
}
