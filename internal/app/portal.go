package app

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/portal"
	"github.com/vula-eid/vula/internal/store"
)

// portalClient registers the portal's client, or points its redirect URI at redirect. A
// redirect URI the provider would refuse (plain http on a public name) is ErrInvalidClient,
// checked before the store is touched, whether the client is new or not.
func portalClient(ctx context.Context, db store.Clients, redirect string) error {
	return pagesClient(ctx, db, portal.ClientID, "Vula signing portal", redirect)
}

// pagesClient registers the public client (PKCE) of a set of Vula's own pages, as
// portalClient says.
func pagesClient(ctx context.Context, db store.Clients, id, name, redirect string) error {
	rec, _, err := idp.NewClient(idp.ClientSpec{ID: id, Name: name, AuthMethod: idp.AuthNone,
		RedirectURIs: []string{redirect}, Scopes: []string{"openid", "profile"}})
	if err != nil {
		return err
	}
	c, err := db.Client(ctx, id)
	if err == nil {
		if slices.Contains(c.RedirectURIs, redirect) {
			return nil
		}
		return db.UpdateClient(ctx, id, func(c store.Client) (store.Client, error) {
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
