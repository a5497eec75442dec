package idp

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// A token request whose client hangs up while the provider works is neither logged as the
// client's error (invalid_client) nor answered 500: the client went away, which is logged as
// such, at debug level. Both with the client still to be read from the store and with it cached.
func TestTokenRequestCancelledByClient(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.p.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secret := f.register(t, ClientSpec{ID: "tax-batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}.Encode()
	for _, cached := range []bool{false, true} {
		logs.Reset()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(ctx, "POST", "/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("tax-batch", secret)
		w := httptest.NewRecorder()
		f.p.token(w, req)
		if w.Code == http.StatusOK || w.Code == http.StatusInternalServerError || strings.Contains(w.Body.String(), "invalid_client") ||
			strings.Contains(logs.String(), "invalid_client") || strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "went away") {
			t.Fatalf("cached %v: %d %s\n%s", cached, w.Code, w.Body, logs.String())
		}
		if !cached { // the client is in the cache from here on
			if code, b := postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}, "tax-batch", secret); code != 200 {
				t.Fatalf("token: %d %v", code, b)
			}
		}
	}
}
