package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/server"
)

// cardListener is the ID card login's TLS listener: it asks for a client certificate (the
// card's) and serves the card route once the platform is built.
type cardListener struct {
	issuers []*x509.Certificate
	tls     *tls.Config
	routes  platformGate
}

// newCardListener reads the card listener's TLS key pair and the card-issuer CAs; nil when
// idp.card.listen is not set.
func newCardListener(cfg config.Card) (*cardListener, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("idp.card.cert_file: %w", err)
	}
	c := &cardListener{}
	pool := x509.NewCertPool()
	for _, f := range cfg.ClientCAs {
		cas, err := readCertificates("idp.card.client_cas", f)
		if err != nil {
			return nil, err
		}
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		c.issuers = append(c.issuers, cas...)
	}
	// The card is checked by the login page, not by the handshake, so that a card that is
	// refused gets a page saying why rather than a TLS alert. ClientCAs tells the browser
	// which issuers' certificates to offer.
	c.tls = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, ClientCAs: pool,
		MinVersion: tls.VersionTLS12}
	return c, nil
}

// build adds the card login to the pages and serves its route on the card listener.
func (c *cardListener) build(cfg config.Card, pages *idp.Pages, l *audit.Log) error {
	card, err := idp.NewCard(pages, idp.CardConfig{URL: cfg.URL, Issuers: c.issuers, CRLFiles: cfg.CRLFiles,
		SerialPrefix: cfg.SerialPrefix, OCSPTimeout: time.Duration(cfg.OCSPTimeout), Audit: l})
	if err != nil {
		return fmt.Errorf("idp.card: %w", err)
	}
	mux := http.NewServeMux()
	card.Register(mux)
	c.routes.serve(mux)
	return nil
}

// listener serves the card route on ln behind the main listener's edge (request id, security
// headers, log line, metrics, panic recovery, drain), keeping the card's TLS configuration. Each
// login may ask an OCSP responder: a client has only http.per_client in flight.
func (c *cardListener) listener(ln net.Listener, srv *server.Server, perClient int, log *slog.Logger) listener {
	return listener{ln: ln, tls: c.tls, handler: srv.Wrap(server.NewPerClient(perClient).Wrap(&c.routes)),
		errorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
}
