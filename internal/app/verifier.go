package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/pid"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/verifier"
)

// VerifierService is the OpenID4VP verifier for relying parties. It trusts Vula's own PID issuer
// (its certificate, not everything else under seal-ca) and the CAs of
// wallet.verifier.trust_anchors, and reads the status lists of Vula's
// own PIDs straight from the issuer (other issuers' over HTTPS).
func VerifierService(cfg config.Config, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB, eph store.Ephemeral, l *audit.Log,
	wallet *pid.Service, log *slog.Logger) (*verifier.Service, error) {
	// Under the PID issuer's CA, the verifier trusts the PID issuer's certificate only.
	var own, anchors []*x509.Certificate
	if ca, ok := a.Certificate(certs.NameSealCA); ok {
		own = append(own, ca)
	}
	for _, f := range cfg.Wallet.Verifier.TrustAnchors {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("wallet.verifier.trust_anchors: %w", err)
		}
		n := len(anchors)
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("wallet.verifier.trust_anchors: %s: %w", f, err)
			}
			anchors = append(anchors, c)
		}
		if len(anchors) == n {
			return nil, fmt.Errorf("wallet.verifier.trust_anchors: %s holds no PEM certificate", f)
		}
	}
	var au verifier.Auditor
	if l != nil { // a nil *audit.Log must not become a non-nil Auditor
		au = l
	}
	return verifier.New(verifier.Config{BaseURL: cfg.BaseURL, Organization: cfg.PKI.Organization, Country: cfg.PKI.Country,
		PIDIssuerCAs: own, Anchors: anchors}, keys, a, db, ownStatusLists{prefix: cfg.BaseURL + "/pid/status/", wallet: wallet}, au, eph, log, time.Now), nil
}

// ownStatusLists serves the verifier the status lists of Vula's own issuer without a round
// trip through the network, and fetches any other over HTTPS.
type ownStatusLists struct {
	prefix string
	wallet *pid.Service
	other  verifier.HTTPStatusLists
}

var _ verifier.StatusLists = ownStatusLists{}

func (o ownStatusLists) StatusList(ctx context.Context, uri string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(uri, o.prefix); ok {
		n, err := strconv.Atoi(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: status list %q", pid.ErrNoList, rest)
		}
		t, err := o.wallet.StatusList(ctx, n, false)
		if err != nil {
			return nil, err
		}
		return t.Token, nil
	}
	return o.other.StatusList(ctx, uri)
}
