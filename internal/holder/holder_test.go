package holder

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newWallet(t *testing.T, passphrase string, trust ...*x509.Certificate) *Wallet {
	t.Helper()
	w, err := Create(filepath.Join(t.TempDir(), "wallet.json"), passphrase, trust)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWalletFile(t *testing.T) {
	pki := newPKI(t)
	w := newWallet(t, "a passphrase", pki.root)
	if fi, err := os.Stat(w.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	if _, err := Create(w.Path(), "", nil); !errors.Is(err, ErrExists) {
		t.Errorf("a second init: %v", err)
	}
	b, _ := os.ReadFile(w.Path())
	var f walletFile
	json.Unmarshal(b, &f)
	if f.Version != Version || f.Encryption == nil || len(f.Keys) != 1 {
		t.Fatalf("the file: %+v", f)
	}
	if _, err := x509.ParsePKCS8PrivateKey(f.Keys[0].PKCS8); err == nil {
		t.Error("an encrypted wallet holds a private key in the clear")
	}
	if _, err := Open(w.Path(), ""); !errors.Is(err, ErrPassphrase) {
		t.Errorf("open without the passphrase: %v", err)
	}
	if _, err := Open(w.Path(), "another"); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("open with a wrong passphrase: %v", err)
	}
	w2, err := Open(w.Path(), "a passphrase")
	if err != nil {
		t.Fatal(err)
	}
	k, err := w2.Key(w2.KeyIDs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := thumbprint(&k.PublicKey); id != w2.KeyIDs()[0] {
		t.Error("the key is not the one its id names")
	}
	if len(w2.Trust()) != 1 || !w2.Trust()[0].Equal(pki.root) {
		t.Error("the trust anchor was not kept")
	}
	os.Chmod(w.Path(), 0o640)
	if _, err := Open(w.Path(), "a passphrase"); !errors.Is(err, ErrPermissions) {
		t.Errorf("a group-readable wallet: %v", err)
	}
	os.Chmod(w.Path(), 0o600)
	f.Version = 99
	b, _ = json.Marshal(f)
	os.WriteFile(w.Path(), b, 0o600)
	if _, err := Open(w.Path(), "a passphrase"); !errors.Is(err, ErrWrongVersion) {
		t.Errorf("a future version: %v", err)
	}
	plain := newWallet(t, "")
	b, _ = os.ReadFile(plain.Path())
	f = walletFile{}
	json.Unmarshal(b, &f)
	if _, err := x509.ParsePKCS8PrivateKey(f.Keys[0].PKCS8); err != nil || f.Encryption != nil {
		t.Errorf("a wallet without passphrase: %v", err)
	}
}

func TestAccept(t *testing.T) {
	pki := newPKI(t)
	_, uri := fakeIssuer(t, pki, nil)
	w := newWallet(t, "", pki.root)
	c := Client{}
	ctx := context.Background()
	o, err := c.ParseOfferURI(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accept(ctx, w, o, "", 0); !errors.Is(err, ErrNeedTxCode) {
		t.Errorf("without the tx code: %v", err)
	}
	if _, err := c.Accept(ctx, w, o, "999999", 0); !errors.Is(err, ErrTxCode) || !strings.Contains(err.Error(), "wrong") {
		t.Errorf("a wrong tx code: %v", err)
	}
	got, err := c.Accept(ctx, w, o, "123456", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Credentials) != 4 || len(w.Credentials()) != 4 {
		t.Fatalf("%d credentials (want 2 of each format, the batch size)", len(got.Credentials))
	}
	keys := map[string]bool{}
	for _, cr := range w.Credentials() {
		keys[cr.KeyID] = true
		if _, err := w.Key(cr.KeyID); err != nil {
			t.Error(err)
		}
	}
	if len(keys) != 4 {
		t.Errorf("%d keys for 4 credentials", len(keys))
	}
	if err := w.Save(); err != nil {
		t.Fatal(err)
	}
	l := c.List(ctx, w)
	if len(l) != 4 || l[0].Status != "no status list" || !slices.Contains(l[0].Claims, "age_equal_or_over.18") || !slices.Contains(l[2].Claims, "age_over_18") {
		t.Errorf("list: %+v", l)
	}
}

// TestAcceptRefuses: a credential that does not verify is refused and nothing is kept.
func TestAcceptRefuses(t *testing.T) {
	pki := newPKI(t)
	other := newPKI(t)
	swapDisclosure := func(format, cred string) string {
		if format != formatSDJWT {
			return cred
		}
		parts := strings.Split(cred, "~")
		raw, _ := b64.DecodeString(parts[1])
		var d []any
		json.Unmarshal(raw, &d)
		d[2] = "Someone Else"
		b, _ := json.Marshal(d)
		parts[1] = b64.EncodeToString(b)
		return strings.Join(parts, "~")
	}
	for _, tc := range []struct {
		name   string
		tamper func(format, cred string) string
		want   error
		trust  *x509.Certificate
	}{
		{"a changed disclosure", swapDisclosure, ErrInvalid, nil},
		{"an added disclosure", func(f, c string) string {
			if f != formatSDJWT {
				return c
			}
			d, _ := disclose(t, "nationality", "XX")
			return c + d + "~"
		}, ErrInvalid, nil},
		{"a changed signature", func(f, c string) string {
			if f != formatSDJWT {
				return c
			}
			jwt, rest, _ := strings.Cut(c, "~")
			p := strings.Split(jwt, ".")
			sig, _ := b64.DecodeString(p[2])
			sig[5] ^= 1
			return p[0] + "." + p[1] + "." + b64.EncodeToString(sig) + "~" + rest
		}, ErrInvalid, nil},
		{"an mdoc item changed", func(f, c string) string {
			if f != formatMdoc {
				return c
			}
			raw, _ := b64.DecodeString(c)
			i := strings.Index(string(raw), "Gashi")
			raw[i] = 'X'
			return b64.EncodeToString(raw)
		}, ErrInvalid, nil},
		{"bound to another key", func(f, c string) string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if f == formatMdoc {
				return pki.mdocFor(t, &k.PublicKey)
			}
			return c
		}, ErrInvalid, nil},
		{"a chain to another root", nil, ErrUntrusted, other.root},
		{"not a credential", func(string, string) string { return "garbage" }, ErrInvalid, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, uri := fakeIssuer(t, pki, tc.tamper)
			trust := pki.root
			if tc.trust != nil {
				trust = tc.trust
			}
			w := newWallet(t, "", trust)
			c := Client{}
			o, err := c.ParseOfferURI(context.Background(), uri)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Accept(context.Background(), w, o, "123456", 0)
			if !errors.Is(err, tc.want) {
				t.Errorf("accepted or refused for another reason: %v", err)
			}
			if len(w.Credentials()) != 0 {
				t.Errorf("%d credentials kept", len(w.Credentials()))
			}
		})
	}
}

func TestParseOfferURI(t *testing.T) {
	// By reference: credential_offer_uri is fetched.
	offer := `{"credential_issuer":"https://i.example","credential_configuration_ids":["a"],"grants":{"urn:ietf:params:oauth:grant-type:pre-authorized_code":{"pre-authorized_code":"c"}}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(offer)) }))
	defer srv.Close()
	o, err := (Client{}).ParseOfferURI(context.Background(), "openid-credential-offer://?credential_offer_uri="+url.QueryEscape(srv.URL+"/offer/1"))
	if err != nil || o.Issuer != "https://i.example" || o.Grants.PreAuthorized.Code != "c" {
		t.Errorf("by reference: %+v %v", o, err)
	}
	for _, bad := range []string{
		"openid-credential-offer://",
		`openid-credential-offer://?credential_offer={"credential_issuer":"http://example.com","credential_configuration_ids":["a"],"grants":{}}`,
		`openid-credential-offer://?credential_offer={"credential_issuer":"https://example.com","credential_configuration_ids":[],"grants":{}}`,
		`openid-credential-offer://?credential_offer={"credential_issuer":"https://example.com","credential_configuration_ids":["a"],"grants":{"authorization_code":{}}}`,
		"openid-credential-offer://?credential_offer=not json",
	} {
		if _, err := (Client{}).ParseOfferURI(context.Background(), bad); !errors.Is(err, ErrOffer) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	// An offer for the authorization code flow is refused saying so, and what to do instead.
	_, err = (Client{}).ParseOfferURI(context.Background(),
		`openid-credential-offer://?credential_offer={"credential_issuer":"https://example.com","credential_configuration_ids":["a"],"grants":{"authorization_code":{"issuer_state":"s"}}}`)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "only the authorization_code grant") ||
		!strings.Contains(err.Error(), "ask the issuer for a pre-authorized offer") {
		t.Errorf("an authorization code offer: %v", err)
	}
}

func TestSDJWTPresentDisclosesOnlyWhatIsAsked(t *testing.T) {
	pki := newPKI(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cred := pki.sdJWTFor(t, "https://issuer.example", &k.PublicKey, nil)
	sd, err := parseSDJWT(cred, []*x509.Certificate{pki.root}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		paths [][]any
		want  []string
	}{
		{[][]any{{"age_equal_or_over", "18"}}, []string{"age_equal_or_over", "18"}},
		{[][]any{{"family_name"}, {"given_name"}}, []string{"family_name", "given_name"}},
		{[][]any{{"age_equal_or_over"}}, []string{"age_equal_or_over", "18", "65"}},
		{nil, nil},
	} {
		p := sd.present(tc.paths)
		var got []string
		for _, d := range strings.Split(p, "~")[1:] {
			if d == "" {
				continue
			}
			dd, err := parseDisclosure(d)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, dd.name)
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: disclosed %v, want %v", tc.paths, got, tc.want)
		}
		// What is presented still verifies, and shows only what was chosen.
		again, err := parseSDJWT(p, []*x509.Certificate{pki.root}, time.Now())
		if err != nil {
			t.Fatalf("%v: %v", tc.paths, err)
		}
		if _, ok := again.claims["birthdate"]; ok {
			t.Errorf("%v: birthdate shown", tc.paths)
		}
	}
}

// TestInsecureURLRefused: plain http only on the loopback, and a redirect does not get around it.
func TestInsecureURLRefused(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://issuer.example/.well-known/openid-credential-issuer", http.StatusFound))
	defer srv.Close()
	var v any
	if err := (Client{}).getJSON(context.Background(), srv.URL, &v); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("a redirect to plain http: %v", err)
	}
	if err := (Client{}).getJSON(context.Background(), "http://issuer.example/x", &v); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("plain http off the loopback: %v", err)
	}
}
