package idp

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

// ssoDeleteFails is a store whose deletes of single sign-on sessions fail while failing is set:
// the logout takes its request from the same store a moment before, so a real outage cannot
// hit just the session's delete.
type ssoDeleteFails struct {
	store.Ephemeral
	failing atomic.Bool
}

func (s *ssoDeleteFails) Delete(ctx context.Context, key string) error {
	if s.failing.Load() && strings.HasPrefix(key, "idp:sso:") {
		return errors.New("store down")
	}
	return s.Ephemeral.Delete(ctx, key)
}

// TestLogoutSessionNotDeleted: when the single sign-on session cannot be deleted, the logout
// answers 503 and does not tell the person they are logged out (it used to ignore the error);
// once the store is back, the logout ends the session.
func TestLogoutSessionNotDeleted(t *testing.T) {
	var eph *ssoDeleteFails
	f := newFixtureEph(t, Config{}, false, func(e store.Ephemeral) store.Ephemeral {
		eph = &ssoDeleteFails{Ephemeral: e}
		return eph
	})
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	_, opts := newPKCE()
	authURL := conf.AuthCodeURL("state-12345678", opts...)
	b := idptest.New(t, f.srv.URL)
	b.Login(authURL, rpCallback, "1234567890", "correct horse battery", "")

	page := b.Get("/logout")
	if page.Status != http.StatusOK || page.Form.Get("logout") == "" {
		t.Fatalf("logout page: %d\n%s", page.Status, page.Body)
	}
	eph.failing.Store(true)
	r := b.Post("/logout", page.Form)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("logout with the session undeletable: %d, want 503\n%s", r.Status, r.Body)
	}
	eph.failing.Store(false)

	page = b.Get("/logout")
	if r := b.Post("/logout", page.Form); r.Status != http.StatusOK {
		t.Fatalf("logout: %d\n%s", r.Status, r.Body)
	}
	if r := b.Get(authURL); !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("after logout, no login page: %d %s", r.Status, r.URL)
	}
}
