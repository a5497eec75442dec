package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/store"
)

func TestToken(t *testing.T) {
	for _, tc := range []struct{ header, scheme, token string }{
		{"Bearer abc", "Bearer", "abc"},
		{"bearer abc", "Bearer", "abc"},
		{"DPoP abc", "DPoP", "abc"},
		{"dpop  abc ", "DPoP", "abc"},
		{"Basic abc", "", ""},
		{"Bearer", "", ""},
		{"Bearer   ", "", ""},
		{"", "", ""},
	} {
		r := httptest.NewRequest("GET", "/x?access_token=query", nil)
		r.Header.Set("Authorization", tc.header)
		if s, tok := Token(r); s != tc.scheme || tok != tc.token {
			t.Errorf("%q: %q %q, want %q %q", tc.header, s, tok, tc.scheme, tc.token)
		}
	}
}

// Each refusal has its status and challenge (RFC 6750 §3, RFC 9449 §7.1), and an outage is 503.
func TestWriteBearerError(t *testing.T) {
	for _, tc := range []struct {
		err       error
		status    int
		challenge string
	}{
		{ErrNoToken, 401, `Bearer realm="api"`},
		{ErrTokenInvalid, 401, `error="invalid_token"`},
		{errors.New("anything else"), 401, `error="invalid_token"`},
		{fmt.Errorf("%w seal", ErrInsufficientScope), 403, `error="insufficient_scope", scope="seal"`},
		{ErrDPoPProof, 401, `DPoP error="invalid_dpop_proof"`},
		{fmt.Errorf("%w: checking the token", store.ErrUnavailable), 503, ""},
	} {
		w := httptest.NewRecorder()
		WriteBearerError(w, httptest.NewRequest("GET", "/", nil), "api", "seal", tc.err)
		if w.Code != tc.status || !strings.Contains(w.Header().Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%v: %d %q", tc.err, w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if tc.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
			t.Errorf("%v: no Retry-After", tc.err)
		}
	}
	if !AtLeast(LoAHigh, LoASubstantial) || AtLeast(LoALow, LoASubstantial) || AtLeast("unknown", LoALow) {
		t.Error("AtLeast")
	}
}
