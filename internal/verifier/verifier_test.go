package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/sdjwt"
)

const pidQuery = `{"credentials":[{"id":"pid","format":"dc+sd-jwt","meta":{"vct_values":["urn:eudi:pid:1"]},
	"claims":[{"path":["family_name"]},{"path":["age_equal_or_over","18"]}]}]}`

// request is a transaction made and its signed request object read back, as a wallet would.
type request struct {
	id, nonce, state, clientID, responseURI string
	encKey                                  *jose.JSONWebKey
}

func ask(t *testing.T, s *Service, client, mode, query string) request {
	t.Helper()
	q, err := ParseQuery([]byte(query))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Create(context.Background(), Ask{ClientID: client, Query: q, ResponseMode: mode, RedirectURI: "https://rp.example/back", State: "rp-state"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.DeepLink, "openid4vp://?") || !strings.Contains(c.DeepLink, url.QueryEscape(c.RequestURI)) {
		t.Fatalf("deep link %s", c.DeepLink)
	}
	jwt, err := s.RequestObject(context.Background(), c.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(jwt)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "oauth-authz-req+jwt" {
		t.Fatalf("typ %v", h.ExtraHeaders["typ"])
	}
	// The x5c chain leads to Vula's root, and the client id is the leaf's hash.
	var hdr struct{ X5c []string }
	hb, _ := b64.DecodeString(strings.Split(jwt, ".")[0])
	json.Unmarshal(hb, &hdr)
	if len(hdr.X5c) != 2 {
		t.Fatalf("x5c of %d certificates, want the leaf and seal-ca", len(hdr.X5c))
	}
	leafDER, _ := base64.StdEncoding.DecodeString(hdr.X5c[0])
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range s.pki.Chain(leaf) {
		roots.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("x5c: %v", err)
	}
	sum := sha256.Sum256(leaf.Raw)
	if c.ClientID != "x509_hash:"+b64.EncodeToString(sum[:]) {
		t.Fatalf("client_id %s", c.ClientID)
	}
	payload, err := jws.Verify(leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		ClientID    string         `json:"client_id"`
		Nonce       string         `json:"nonce"`
		State       string         `json:"state"`
		ResponseURI string         `json:"response_uri"`
		Mode        string         `json:"response_mode"`
		Meta        map[string]any `json:"client_metadata"`
	}
	json.Unmarshal(payload, &claims)
	if claims.ClientID != c.ClientID || !strings.HasPrefix(c.ClientID, "x509_hash:") || claims.Nonce == "" {
		t.Fatalf("request object %+v", claims)
	}
	r := request{id: c.ID, nonce: claims.Nonce, state: claims.State, clientID: claims.ClientID, responseURI: claims.ResponseURI}
	if claims.Mode == DirectPostJWT {
		b, _ := json.Marshal(claims.Meta["jwks"].(map[string]any)["keys"].([]any)[0])
		r.encKey = &jose.JSONWebKey{}
		if err := r.encKey.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// answer posts vp_token as the wallet would in the transaction's response mode.
func (r request) answer(t *testing.T, s *Service, vpToken map[string]any) (Answer, error) {
	t.Helper()
	tok, _ := json.Marshal(vpToken)
	form := url.Values{}
	if r.encKey == nil {
		form.Set("vp_token", string(tok))
		form.Set("state", r.state)
	} else {
		enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.ECDH_ES, Key: r.encKey.Key}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"vp_token": vpToken, "state": r.state})
		o, err := enc.Encrypt(b)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := o.CompactSerialize()
		form.Set("response", c)
	}
	return s.Respond(context.Background(), r.id, form, "")
}

func TestPresentationAccepted(t *testing.T) {
	is := newIssuer(t, "outside")
	s := newService(t, is, is.ca)
	for _, mode := range []string{DirectPostJWT, DirectPost} {
		t.Run(mode, func(t *testing.T) {
			holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r := ask(t, s, "rp-1", mode, pidQuery)
			cred := is.credential(t, holder, 5, time.Now().Add(time.Hour))
			// The wallet discloses one claim more than asked: it is not passed on.
			p := present(t, cred, holder, r.clientID, r.nonce, "family_name", "given_name", "age_equal_or_over", "18")
			ans, err := r.answer(t, s, map[string]any{"pid": []string{p}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ans.RedirectURI, "https://rp.example/back?") || !strings.Contains(ans.RedirectURI, "state=rp-state") ||
				!strings.Contains(ans.RedirectURI, "response_code=") {
				t.Fatalf("redirect %q", ans.RedirectURI)
			}
			res, err := s.Result(context.Background(), r.id, "rp-1")
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != Accepted || len(res.Credentials) != 1 {
				t.Fatalf("result %+v", res)
			}
			c := res.Credentials[0]
			if c.Trust != "trusted" || c.Status != "valid" || c.KeyBinding != "ok" || !strings.Contains(c.Issuer, "outside PID issuer") {
				t.Fatalf("credential result %+v", c)
			}
			got, _ := json.Marshal(c.Claims)
			if string(got) != `[{"path":["family_name"],"value":"Berisha"},{"path":["age_equal_or_over","18"],"value":true}]` {
				t.Fatalf("claims %s", got)
			}
			// Another client does not see it; a second answer is refused.
			if _, err := s.Result(context.Background(), r.id, "rp-2"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("another client's fetch: %v", err)
			}
			if _, err := r.answer(t, s, map[string]any{"pid": []string{p}}); !errors.Is(err, ErrResponse) {
				t.Fatalf("a replayed response: %v", err)
			}
		})
	}
}

func TestPresentationRefused(t *testing.T) {
	is := newIssuer(t, "outside")
	stranger := newIssuer(t, "stranger")
	s := newService(t, is, is.ca)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.revoked[9] = true
	fresh := func() string { return is.credential(t, holder, 5, time.Now().Add(time.Hour)) }
	all := []string{"family_name", "age_equal_or_over", "18"}
	for _, tc := range []struct {
		name, want string
		query      string
		make       func(r request) string
	}{
		{"another verifier's audience", "aud", pidQuery, func(r request) string {
			return present(t, fresh(), holder, "x509_hash:someone-else", r.nonce, all...)
		}},
		{"a wrong nonce", "nonce", pidQuery, func(r request) string { return present(t, fresh(), holder, r.clientID, "n-other", all...) }},
		{"an expired credential", "expired", pidQuery, func(r request) string {
			return present(t, is.credential(t, holder, 5, time.Now().Add(-time.Hour)), holder, r.clientID, r.nonce, all...)
		}},
		{"a revoked credential", "status is invalid", pidQuery, func(r request) string {
			return present(t, is.credential(t, holder, 9, time.Now().Add(time.Hour)), holder, r.clientID, r.nonce, all...)
		}},
		{"a tampered disclosure", "disclosure", pidQuery, func(r request) string {
			p := present(t, fresh(), holder, r.clientID, r.nonce, all...)
			parts := strings.Split(p, "~")
			parts[1] = b64.EncodeToString([]byte(`["salt","family_name","Someone Else"]`))
			return strings.Join(parts, "~")
		}},
		{"a key binding by another key", "signature", pidQuery, func(r request) string {
			return present(t, fresh(), other, r.clientID, r.nonce, all...)
		}},
		{"claims the credential lacks", "email", `{"credentials":[{"id":"pid","format":"dc+sd-jwt","meta":{"vct_values":["urn:eudi:pid:1"]},
			"claims":[{"path":["email"]}]}]}`, func(r request) string { return present(t, fresh(), holder, r.clientID, r.nonce, all...) }},
		{"an issuer not under a trust anchor", "not trusted", pidQuery, func(r request) string {
			return present(t, stranger.credential(t, holder, 5, time.Now().Add(time.Hour)), holder, r.clientID, r.nonce, all...)
		}},
		{"another vct", "vct", `{"credentials":[{"id":"pid","format":"dc+sd-jwt","meta":{"vct_values":["urn:other"]}}]}`,
			func(r request) string { return present(t, fresh(), holder, r.clientID, r.nonce, all...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, s, "rp-1", DirectPostJWT, tc.query)
			_, err := r.answer(t, s, map[string]any{"pid": tc.make(r)})
			if pt, _ := problem.Of(err); !errors.Is(err, ErrResponse) || pt != problem.InvalidRequest {
				t.Fatalf("answer: %v", err)
			}
			res, _ := s.Result(context.Background(), r.id, "rp-1")
			if res.Status != Refused || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("result %+v, want a refusal naming %q", res, tc.want)
			}
			for _, c := range res.Credentials {
				if len(c.Claims) > 0 {
					t.Fatalf("a refused presentation passed on claims %+v", c.Claims)
				}
			}
		})
	}
	t.Run("the person declines: the wallet's error response is taken, the result says so", func(t *testing.T) {
		r := ask(t, s, "rp-1", DirectPost, pidQuery)
		ans, err := s.Respond(context.Background(), r.id, url.Values{"error": {"access_denied"}, "state": {r.state}}, "")
		if err != nil || !strings.Contains(ans.RedirectURI, "state=rp-state") {
			t.Fatalf("answer %+v, %v", ans, err)
		}
		if res, _ := s.Result(context.Background(), r.id, "rp-1"); res.Status != Refused || !strings.Contains(res.Reason, "access_denied") {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("a response with a stranger's state leaves the transaction pending", func(t *testing.T) {
		r := ask(t, s, "rp-1", DirectPost, pidQuery)
		good := r
		r.state = "not-this"
		if _, err := r.answer(t, s, map[string]any{"pid": present(t, fresh(), holder, r.clientID, r.nonce, all...)}); !errors.Is(err, ErrResponse) {
			t.Fatalf("answer: %v", err)
		}
		if res, _ := s.Result(context.Background(), r.id, "rp-1"); res.Status != Pending {
			t.Fatalf("result %+v", res)
		}
		if _, err := good.answer(t, s, map[string]any{"pid": present(t, fresh(), holder, r.clientID, r.nonce, all...)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct{ name, q, want string }{
		{"unknown format", `{"credentials":[{"id":"a","format":"ldp_vc","meta":{}}]}`, "unknown"},
		{"empty path", `{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]},"claims":[{"path":[]}]}]}`, "path"},
		{"no credentials", `{"credentials":[]}`, "empty"},
		{"too many credentials", `{"credentials":[` + strings.Repeat(`{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]}},`, 8) +
			`{"id":"b","format":"dc+sd-jwt","meta":{"vct_values":["x"]}}]}`, "at most"},
		{"duplicate ids", `{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]}},{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]}}]}`, "unique"},
		{"negative index", `{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]},"claims":[{"path":["a",-1]}]}]}`, "index"},
		{"set names an unknown credential", `{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]}}],"credential_sets":[{"options":[["b"]]}]}`, "does not have"},
		{"mdoc without a doctype", `{"credentials":[{"id":"a","format":"mso_mdoc","meta":{}}]}`, "doctype_value"},
		{"mdoc with vct_values", `{"credentials":[{"id":"a","format":"mso_mdoc","meta":{"doctype_value":"d","vct_values":["x"]}}]}`, "vct_values"},
		{"mdoc path of one element", `{"credentials":[{"id":"a","format":"mso_mdoc","meta":{"doctype_value":"d"},"claims":[{"path":["family_name"]}]}]}`, "[namespace, element]"},
		{"not json", `{"credentials":`, "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuery([]byte(tc.q))
			if pt, _ := problem.Of(err); err == nil || !strings.Contains(err.Error(), tc.want) || pt.Status/100 != 4 {
				t.Fatalf("ParseQuery: %v, want a 4xx naming %q", err, tc.want)
			}
		})
	}
	if _, err := ParseQuery([]byte(pidQuery)); err != nil {
		t.Fatal(err)
	}
}

// The SD-JWT reader refuses what RFC 9901 §7.1 says a verifier must refuse.
func TestSDJWTClaims(t *testing.T) {
	is := newIssuer(t, "outside")
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cred := is.credential(t, holder, 1, time.Now().Add(time.Hour))
	parts := strings.Split(cred, "~")
	for name, s := range map[string]string{
		"a disclosure twice":        strings.Join(append(parts[:len(parts)-1], parts[1], ""), "~"),
		"a disclosure of no digest": strings.Join(append(parts[:len(parts)-1], b64.EncodeToString([]byte(`["s","x",1]`)), ""), "~"),
	} {
		p, err := sdjwt.Parse(s)
		if err == nil {
			_, err = p.Claims()
		}
		if !errors.Is(err, sdjwt.ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
