package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
	fjwt "github.com/ory/fosite/token/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/idp/idptest"
)

// ccToken gets a client_credentials access token (a JWT) and returns it with its header.
func ccToken(t *testing.T, tokenURL, secret string) (string, map[string]any) {
	t.Helper()
	cc := clientcredentials.Config{ClientID: "batch", ClientSecret: secret, TokenURL: tokenURL, Scopes: []string{"seal"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	var hdr map[string]any
	json.Unmarshal([]byte(decodeSeg(t, strings.Split(tok.AccessToken, ".")[0])), &hdr)
	return tok.AccessToken, hdr
}

// verifies reports whether go-oidc, fetching the JWKS afresh, accepts the token's signature.
func verifies(t *testing.T, issuer, raw string) bool {
	t.Helper()
	_, err := oidc.NewRemoteKeySet(context.Background(), issuer+"/jwks.json").VerifySignature(context.Background(), raw)
	return err == nil
}

func publishedKIDs(t *testing.T, issuer string) []string {
	t.Helper()
	resp, err := http.Get(issuer + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

// Key rotation: the new key signs at once (at this replica, and at another that still holds
// the old key set); the retired key stays in the JWKS, so the tokens it signed still verify
// with go-oidc, until the longest token lifetime has passed; then it is gone and so is trust in
// its tokens. A rotation with another configured algorithm switches ES256 to PS256.
func TestKeyRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	f.p.keys.now = f.clock.Now
	tokenURL := f.srv.URL + "/oauth2/token"
	// Another replica: its own provider on the same key layer and stores, its key set loaded.
	other, err := New(ctx, Config{Issuer: f.srv.URL, Secrets: testSealer()}, f.keys, f.db, f.eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	other.keys.now = f.clock.Now

	old, h1 := ccToken(t, tokenURL, secret)
	kid1 := h1["kid"].(string)
	if h1["alg"] != "ES256" || len(publishedKIDs(t, f.srv.URL)) != 1 {
		t.Fatalf("before rotation: header %v, keys %v", h1, publishedKIDs(t, f.srv.URL))
	}
	k, err := f.p.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, h2 := ccToken(t, tokenURL, secret)
	kid2 := h2["kid"].(string)
	if kid2 == kid1 {
		t.Fatal("the old key still signs after the rotation")
	}
	if kids := publishedKIDs(t, f.srv.URL); len(kids) != 2 || kids[0] != kid2 || kids[1] != kid1 {
		t.Fatalf("JWKS after rotation: %v, want [%s %s]", kids, kid2, kid1)
	}
	if !verifies(t, f.srv.URL, old) || !verifies(t, f.srv.URL, fresh) {
		t.Fatal("a token does not verify with go-oidc during the grace")
	}
	// The other replica's cached set names the retired key: it notices and signs with the new.
	tok, _, err := other.keys.Generate(ctx, fjwt.MapClaims{"sub": "x"}, &fjwt.Headers{})
	if err != nil {
		t.Fatalf("the other replica after the rotation: %v", err)
	}
	if h := strings.Split(tok, ".")[0]; !strings.Contains(decodeSeg(t, h), kid2) {
		t.Fatalf("the other replica signed with %s", decodeSeg(t, h))
	}
	var retired int
	infos, _ := f.keys.Keys(ctx)
	for _, i := range infos {
		if i.Purpose == hsm.PurposeOIDCToken && i.State == hsm.StateRetired {
			retired++
		} else if i.Purpose == hsm.PurposeOIDCToken && i.URI != k.URI {
			t.Errorf("key %s is %s after the rotation", i.URI, i.State)
		}
	}
	if retired != 1 {
		t.Fatalf("%d retired keys, want 1", retired)
	}

	// Just before the grace ends the old key is published; after it, not.
	f.clock.Advance(f.p.keys.grace - time.Second)
	if kids := publishedKIDs(t, f.srv.URL); len(kids) != 2 {
		t.Fatalf("JWKS before the grace ended: %v", kids)
	}
	f.clock.Advance(keySetTTL + time.Second)
	if kids := publishedKIDs(t, f.srv.URL); len(kids) != 1 || kids[0] != kid2 {
		t.Fatalf("JWKS after the grace: %v, want [%s]", kids, kid2)
	}
	if verifies(t, f.srv.URL, old) {
		t.Fatal("a token of the unpublished key still verifies")
	}
	if !verifies(t, f.srv.URL, fresh) {
		t.Fatal("a token of the current key does not verify")
	}

	// Changing idp.algorithm takes effect with a rotation.
	ps, err := New(ctx, Config{Issuer: f.srv.URL, Algorithm: "PS256", Secrets: testSealer()}, f.keys, f.db, f.eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := ps.keys.SigningAlg(ctx); got != "ES256" {
		t.Fatalf("before the rotation the provider signs with %s", got)
	}
	if _, err := ps.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(keySetTTL + time.Second) // the first provider's cached set
	if _, h := ccToken(t, tokenURL, secret); h["alg"] != "PS256" {
		t.Fatalf("after rotating to PS256: header %v", h)
	}
}

// PS256: ID tokens and access tokens signed with an RSA key, verified by go-oidc through
// discovery (which announces PS256) after a complete code flow.
func TestPS256(t *testing.T) {
	f := newFixtureWith(t, Config{Algorithm: "PS256"}, false)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	rpSecret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	raw, hdr := ccToken(t, f.srv.URL+"/oauth2/token", secret)
	if hdr["alg"] != "PS256" || !verifies(t, f.srv.URL, raw) {
		t.Fatalf("access token header %v", hdr)
	}
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	prov.Claims(&meta)
	if len(meta.Algs) != 2 || meta.Algs[0] != "PS256" || meta.Algs[1] != "RS256" {
		t.Fatalf("discovery: %v", meta.Algs)
	}
	conf := oauth2.Config{ClientID: "tax", ClientSecret: rpSecret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback, Scopes: []string{"openid"}}
	verifier, opts := newPKCE()
	cb := idptest.New(t, f.srv.URL).Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: "tax"}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("PS256 ID token: %v", err)
	}
	if h := strings.Split(tok.Extra("id_token").(string), ".")[0]; !strings.Contains(decodeSeg(t, h), `"alg":"PS256"`) || idt.Subject == "" {
		t.Fatalf("ID token header %s", decodeSeg(t, h))
	}
}

// RS256, which OpenID Connect Core §15.1 makes mandatory: a client registered with
// id_token_signed_response_alg RS256 gets RS256 ID tokens (an RSA-3072 key in the key layer,
// made on first use), verified by go-oidc with its defaults (RS256 only); access tokens and
// other clients' ID tokens stay ES256; discovery lists both.
func TestRS256IDTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rsSecret := f.register(t, ClientSpec{ID: "legacy", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}, IDTokenAlg: "RS256"})
	esSecret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	prov.Claims(&meta)
	if strings.Join(meta.Algs, " ") != "ES256 RS256" {
		t.Fatalf("discovery: %v", meta.Algs)
	}
	login := func(id, secret string) *oauth2.Token {
		conf := oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback, Scopes: []string{"openid"}}
		verifier, opts := newPKCE()
		cb := idptest.New(t, f.srv.URL).Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
		tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := login("legacy", rsSecret)
	raw := tok.Extra("id_token").(string)
	if _, err := prov.Verifier(&oidc.Config{ClientID: "legacy"}).Verify(ctx, raw); err != nil {
		t.Fatalf("RS256 ID token with go-oidc's defaults: %v", err)
	}
	if h := decodeSeg(t, strings.Split(raw, ".")[0]); !strings.Contains(h, `"alg":"RS256"`) {
		t.Fatalf("ID token header %s", h)
	}
	if h := decodeSeg(t, strings.Split(tok.AccessToken, ".")[0]); !strings.Contains(h, `"alg":"ES256"`) {
		t.Fatalf("access token header %s", h)
	}
	// Its refresh gives an RS256 ID token again.
	tok.Expiry = time.Now().Add(-time.Second)
	conf := oauth2.Config{ClientID: "legacy", ClientSecret: rsSecret, Endpoint: prov.Endpoint()}
	tok2, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Verifier(&oidc.Config{ClientID: "legacy"}).Verify(ctx, tok2.Extra("id_token").(string)); err != nil {
		t.Fatalf("refreshed RS256 ID token: %v", err)
	}
	tok = login("tax", esSecret)
	if h := decodeSeg(t, strings.Split(tok.Extra("id_token").(string), ".")[0]); !strings.Contains(h, `"alg":"ES256"`) {
		t.Fatalf("another client's ID token header %s", h)
	}
	if _, err := prov.Verifier(&oidc.Config{ClientID: "tax", SupportedSigningAlgs: []string{"ES256"}}).Verify(ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatal(err)
	}
}

// signES writes compact JWSs that go-jose verifies, for P-256 and P-384, with the header's
// entries (but not the internal alg request) and the claims intact.
func TestSignES(t *testing.T) {
	for _, c := range []struct {
		curve elliptic.Curve
		alg   jose.SignatureAlgorithm
	}{{elliptic.P256(), jose.ES256}, {elliptic.P384(), jose.ES384}} {
		k, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := signES(context.Background(), k, "k1",
			fjwt.MapClaims{"sub": "batch", "exp": int64(1796541577), "scope": "seal"}, map[string]any{"typ": "at+jwt", algHeader: "RS256"})
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(raw)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		payload, err := jws.Verify(&k.PublicKey)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		h := jws.Signatures[0].Header
		if h.Algorithm != string(c.alg) || h.KeyID != "k1" || h.ExtraHeaders["typ"] != "at+jwt" || h.ExtraHeaders[algHeader] != nil {
			t.Fatalf("%s: header %+v", c.alg, h)
		}
		if string(payload) != `{"exp":1796541577,"scope":"seal","sub":"batch"}` {
			t.Fatalf("%s: payload %s", c.alg, payload)
		}
	}
}
