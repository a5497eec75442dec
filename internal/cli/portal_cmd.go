package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/portal"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
	"github.com/vula-eid/vula/internal/web"
)

// registerPortal mounts the officials' signing portal under /portal/ (serve). On first start
// it registers the portal as a public client (PKCE) of the identity provider; when base_url has
// changed since, the client's redirect URI follows it.
func registerPortal(ctx context.Context, mux *http.ServeMux, cfg config.Config, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB,
	eph store.Ephemeral, l *audit.Log, ts *tsa.Responder, log *slog.Logger) error {
	accounts, err := openAccounts(db, eph, cfg)
	if err != nil {
		return err
	}
	secure := !cfg.Dev || strings.HasPrefix(cfg.BaseURL, "https://")
	r, err := web.New(log, secure)
	if err != nil {
		return err
	}
	svc := cscService(cfg, a, keys, db, eph, accounts, l, ts, log)
	// The portal sends the official to log in again past the service's own limit, so both agree.
	p := portal.New(portal.Config{Issuer: cfg.BaseURL, Secure: secure, LoginMaxAge: svc.LoginMaxAge()}, r, eph, db,
		svc, portal.Pdftoppm{Dir: cfg.HTTP.SpoolDir}, log, time.Now)
	if err := portalClient(ctx, db, p.RedirectURI()); errors.Is(err, idp.ErrInvalidClient) {
		// As with the demo: a base_url no redirect URI may name (plain http on a public name)
		// leaves the platform running without the portal.
		log.Warn("no signing portal", "err", err)
		return nil
	} else if err != nil {
		return err
	}
	p.Register(mux)
	return nil
}

// portalClient registers the portal's client, or points its redirect URI at redirect. A
// redirect URI the provider would refuse (plain http on a public name) is ErrInvalidClient,
// checked before the store is touched, whether the client is new or not.
func portalClient(ctx context.Context, db store.Clients, redirect string) error {
	rec, _, err := idp.NewClient(idp.ClientSpec{ID: portal.ClientID, Name: "Vula signing portal", AuthMethod: idp.AuthNone,
		RedirectURIs: []string{redirect}, Scopes: []string{"openid", "profile"}})
	if err != nil {
		return err
	}
	c, err := db.Client(ctx, portal.ClientID)
	if err == nil {
		if slices.Contains(c.RedirectURIs, redirect) {
			return nil
		}
		return db.UpdateClient(ctx, portal.ClientID, func(c store.Client) (store.Client, error) {
			c.RedirectURIs = []string{redirect}
			return c, nil
		})
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	rec.Created = time.Now().UTC()
	if err := db.CreateClient(ctx, rec); err != nil && !errors.Is(err, store.ErrConflict) {
		return err // a conflict: another replica made it just now
	}
	return nil
}
