package validation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// Revocation freshness (EN 319 102-1 §5.2.5): a B-LT seal whose embedded OCSP responses and
// CRLs were issued more than the constraint before its signature timestamp is
// INDETERMINATE/TRY_LATER offline, passes when the constraint allows their age or is off, and
// passes with fresh data fetched online; a seal whose data were fetched as it was made is
// fresh. The stale data are the platform's own CA's, issued by it on a clock two hours behind
// (the same hierarchy, keys and store). The same through POST /api/v1/validate.
func TestRevocationFreshness(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	cfg := certs.DefaultConfig()
	past, err := certs.Open(ctx, env.Keys, env.DB, cfg, func() time.Time { return time.Now().Add(-2 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	sign := func(r signing.Revocation) []byte {
		t.Helper()
		var out bytes.Buffer
		in := signingtest.PDF("fresh?")
		if err := pades.Sign(ctx, bytes.NewReader(in), int64(len(in)), &out, env.Seal,
			pades.Options{Level: signing.LevelLT, Timestamper: env.TSA, Revocation: r}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	fresh := sign(env.PKI)
	stale := sign(past) // OCSP answers and CRLs issued two hours before the signature timestamp

	opts := func(max time.Duration, online bool) validation.Options {
		o := validation.Options{TrustAnchors: anchors(env), RevocationFreshness: max}
		if online {
			o.Fetch = validation.RevocationFetcher{R: env.PKI}
		}
		return o
	}
	for _, c := range []struct {
		name   string
		doc    []byte
		max    time.Duration
		online bool
		ind    validation.Indication
		sub    validation.SubIndication
	}{
		{"stale, 1h allowed, offline", stale, time.Hour, false, validation.Indeterminate, validation.TryLater},
		{"stale, 1h allowed, online", stale, time.Hour, true, validation.TotalPassed, ""},
		{"stale, 3h allowed", stale, 3 * time.Hour, false, validation.TotalPassed, ""},
		{"stale, not checked", stale, 0, false, validation.TotalPassed, ""},
		{"fresh, 1h allowed", fresh, time.Hour, false, validation.TotalPassed, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := validate(t, c.doc, opts(c.max, c.online))
			expect(t, rep, c.ind, c.sub)
			s := rep.Signatures[0]
			switch {
			case c.sub == validation.TryLater && !hasCheck(s, "revocation-freshness", "INDETERMINATE"):
				t.Fatalf("no revocation-freshness check\n%s", rep.Text())
			case c.online && (len(s.Revocation) == 0 || s.Revocation[0].Source != "fetched"):
				t.Fatalf("stale embedded data were not replaced by fetched data\n%s", dump(t, rep))
			case c.ind == validation.TotalPassed && c.max == 0 && s.Level != signing.LevelLT:
				t.Fatalf("level %s", s.Level)
			}
		})
	}

	t.Run("POST /api/v1/validate", func(t *testing.T) {
		mux := http.NewServeMux()
		validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), RevocationFreshness: time.Hour}.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		for doc, want := range map[*[]byte]validation.SubIndication{&stale: validation.TryLater} {
			resp, err := http.Post(srv.URL+"/api/v1/validate", "application/pdf", bytes.NewReader(*doc))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var rep validation.Report
			if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || rep.SubIndication != want {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
		mux = http.NewServeMux()
		validation.Handler{Spool: spool(t), TrustAnchors: anchors(env), RevocationFreshness: 3 * time.Hour}.Register(mux)
		srv2 := httptest.NewServer(mux)
		defer srv2.Close()
		resp, err := http.Post(srv2.URL+"/api/v1/validate", "application/pdf", bytes.NewReader(stale))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rep validation.Report
		if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || rep.Indication != validation.TotalPassed {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}
