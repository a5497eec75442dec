package holder

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// GrantPreAuthorized is OpenID4VCI's pre-authorized code grant type.
const GrantPreAuthorized = "urn:ietf:params:oauth:grant-type:pre-authorized_code"

// Errors of an issuance.
var (
	ErrOffer        = errors.New("the credential offer")
	ErrTxCode       = errors.New("the issuer refused the transaction code")
	ErrNeedTxCode   = errors.New("the offer asks for a transaction code")
	ErrUnsupported  = errors.New("not supported by this wallet")
	ErrIssuerAnswer = errors.New("the issuer's answer")
)

// maxBatch bounds how many credentials (keys) the wallet asks for at once.
const maxBatch = 10

// Offer is a parsed credential offer (OpenID4VCI 1.0 §4.1.1).
type Offer struct {
	Issuer         string   `json:"credential_issuer"`
	Configurations []string `json:"credential_configuration_ids"`
	Grants         struct {
		PreAuthorized *struct {
			Code   string `json:"pre-authorized_code"`
			TxCode *struct {
				InputMode   string `json:"input_mode"`
				Length      int    `json:"length"`
				Description string `json:"description"`
			} `json:"tx_code"`
			AuthorizationServer string `json:"authorization_server"`
		} `json:"urn:ietf:params:oauth:grant-type:pre-authorized_code"`
		// AuthorizationCode is read only to say why such an offer is refused.
		AuthorizationCode *struct{} `json:"authorization_code"`
	} `json:"grants"`
}

// ParseOfferURI reads an offer URI: the offer by value (credential_offer) or by reference
// (credential_offer_uri, fetched here). Any scheme is accepted (openid-credential-offer://,
// haip-vci://, https): what counts is the query.
func (c Client) ParseOfferURI(ctx context.Context, raw string) (*Offer, error) {
	if len(raw) > maxJSON {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrOffer, maxJSON)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: not a URI: %v", ErrOffer, err)
	}
	q := u.Query()
	var body []byte
	switch {
	case q.Has("credential_offer") && q.Has("credential_offer_uri"):
		return nil, fmt.Errorf("%w: both credential_offer and credential_offer_uri", ErrOffer)
	case q.Has("credential_offer"):
		body = []byte(q.Get("credential_offer"))
	case q.Has("credential_offer_uri"):
		var o json.RawMessage
		if err := c.getJSON(ctx, q.Get("credential_offer_uri"), &o); err != nil {
			return nil, fmt.Errorf("%w: credential_offer_uri: %v", ErrOffer, err)
		}
		body = o
	default:
		return nil, fmt.Errorf("%w: no credential_offer or credential_offer_uri in the URI", ErrOffer)
	}
	return parseOffer(body)
}

func parseOffer(body []byte) (*Offer, error) {
	var o Offer
	if err := json.Unmarshal(body, &o); err != nil {
		return nil, fmt.Errorf("%w: not a JSON credential offer: %v", ErrOffer, err)
	}
	if _, err := checkURL(o.Issuer); err != nil {
		return nil, fmt.Errorf("%w: credential_issuer: %v", ErrOffer, err)
	}
	if len(o.Configurations) == 0 || len(o.Configurations) > 16 {
		return nil, fmt.Errorf("%w: credential_configuration_ids must name 1 to 16 configurations", ErrOffer)
	}
	pa := o.Grants.PreAuthorized
	if pa == nil || pa.Code == "" {
		grant := "no pre-authorized_code grant"
		if o.Grants.AuthorizationCode != nil {
			grant = "only the authorization_code grant"
		}
		return nil, fmt.Errorf("%w has %s: %w: it runs the pre-authorized code flow only (the authorization code "+
			"flow needs a browser login at the issuer); ask the issuer for a pre-authorized offer (at Vula: from a registration "+
			"desk, or vula pid offer)", ErrOffer, grant, ErrUnsupported)
	}
	return &o, nil
}

// issuerMetadata is what the wallet reads of the credential issuer's metadata.
type issuerMetadata struct {
	Issuer               string                         `json:"credential_issuer"`
	AuthorizationServers []string                       `json:"authorization_servers"`
	CredentialEndpoint   string                         `json:"credential_endpoint"`
	NonceEndpoint        string                         `json:"nonce_endpoint"`
	Batch                *batchInfo                     `json:"batch_credential_issuance"`
	Configurations       map[string]credentialConfigRaw `json:"credential_configurations_supported"`
}

type credentialConfigRaw struct {
	Format  string `json:"format"`
	VCT     string `json:"vct"`
	DocType string `json:"doctype"`
	Proofs  map[string]struct {
		Algs []string `json:"proof_signing_alg_values_supported"`
	} `json:"proof_types_supported"`
}

type batchInfo struct {
	Size int `json:"batch_size"`
}

// asMetadata is what the wallet reads of the authorization server's metadata (RFC 8414).
type asMetadata struct {
	Issuer        string   `json:"issuer"`
	TokenEndpoint string   `json:"token_endpoint"`
	DPoPAlgs      []string `json:"dpop_signing_alg_values_supported"`
}

// Accepted is what an accepted offer brought.
type Accepted struct {
	Issuer      string
	Credentials []Credential
}

// Accept runs the pre-authorized code flow of offer into w: metadata, token (with DPoP when
// the authorization server supports it), a nonce and proofs of possession (one new key for
// each credential), a credential request for each configuration offered, and the check of
// every credential before it is kept. The caller saves w.
func (c Client) Accept(ctx context.Context, w *Wallet, o *Offer, txCode string, batch int) (*Accepted, error) {
	pa := o.Grants.PreAuthorized
	if pa.TxCode != nil && txCode == "" {
		return nil, ErrNeedTxCode
	}
	mdURL, err := wellKnown(o.Issuer, "openid-credential-issuer")
	if err != nil {
		return nil, err
	}
	var md issuerMetadata
	if err := c.getJSON(ctx, mdURL, &md); err != nil {
		return nil, fmt.Errorf("the issuer's metadata: %w", err)
	}
	if md.Issuer != o.Issuer {
		return nil, fmt.Errorf("%w: the metadata at %s is of issuer %q, not %q", ErrIssuerAnswer, mdURL, md.Issuer, o.Issuer)
	}
	if _, err := checkURL(md.CredentialEndpoint); err != nil {
		return nil, fmt.Errorf("%w: credential_endpoint: %v", ErrIssuerAnswer, err)
	}
	as := pa.AuthorizationServer
	switch {
	case as != "" && !slices.Contains(md.AuthorizationServers, as):
		return nil, fmt.Errorf("%w: the offer's authorization server %s is not in the issuer's metadata", ErrOffer, as)
	case as == "" && len(md.AuthorizationServers) > 1:
		return nil, fmt.Errorf("%w: the issuer has several authorization servers and the offer names none", ErrOffer)
	case as == "" && len(md.AuthorizationServers) == 1:
		as = md.AuthorizationServers[0]
	case as == "":
		as = o.Issuer
	}
	asURL, err := wellKnown(as, "oauth-authorization-server")
	if err != nil {
		return nil, err
	}
	var am asMetadata
	if err := c.getJSON(ctx, asURL, &am); err != nil {
		return nil, fmt.Errorf("the authorization server's metadata: %w", err)
	}
	if am.Issuer != as {
		return nil, fmt.Errorf("%w: the metadata at %s is of %q, not %q", ErrIssuerAnswer, asURL, am.Issuer, as)
	}
	if _, err := checkURL(am.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("%w: token_endpoint: %v", ErrIssuerAnswer, err)
	}
	var configs []credentialConfigRaw
	for _, id := range o.Configurations {
		cfg, ok := md.Configurations[id]
		if !ok {
			return nil, fmt.Errorf("%w: configuration %q is not in the issuer's metadata", ErrOffer, id)
		}
		if cfg.Format != formatSDJWT && cfg.Format != formatMdoc {
			return nil, fmt.Errorf("%w: configuration %q has format %q (this wallet takes %s and %s)", ErrUnsupported, id, cfg.Format, formatSDJWT, formatMdoc)
		}
		if p, ok := cfg.Proofs["jwt"]; cfg.Proofs != nil && (!ok || len(p.Algs) > 0 && !slices.Contains(p.Algs, "ES256")) {
			return nil, fmt.Errorf("%w: configuration %q takes no ES256 proofs.jwt", ErrUnsupported, id)
		}
		configs = append(configs, cfg)
	}

	// DPoP (RFC 9449) when the authorization server supports ES256 for it: one key for the flow.
	var dp *dpop
	if slices.Contains(am.DPoPAlgs, "ES256") {
		if dp, err = newDPoP(); err != nil {
			return nil, err
		}
	}
	tok, err := c.token(ctx, am.TokenEndpoint, pa.Code, txCode, pa.TxCode != nil, dp)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(tok.Type, "DPoP") {
		dp = nil // a Bearer token: the server did not bind it
	}
	anchors := w.Trust()
	size := 1
	if md.Batch != nil && md.Batch.Size > 1 {
		size = md.Batch.Size
	}
	if batch > 0 {
		size = min(size, batch)
	}
	size = min(size, maxBatch)
	out := &Accepted{Issuer: o.Issuer}
	for i, id := range o.Configurations {
		nonce := ""
		if md.NonceEndpoint != "" {
			if nonce, err = c.nonce(ctx, md.NonceEndpoint); err != nil {
				return nil, err
			}
		}
		creds, err := c.credential(ctx, w, tok, dp, md.CredentialEndpoint, o.Issuer, id, configs[i], nonce, size, anchors)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		out.Credentials = append(out.Credentials, creds...)
	}
	w.add(out.Credentials...)
	return out, nil
}

// accessToken is the token endpoint's answer.
type accessToken struct {
	Token string `json:"access_token"`
	Type  string `json:"token_type"`
}

func (c Client) token(ctx context.Context, endpoint, code, tx string, sendTx bool, dp *dpop) (accessToken, error) {
	form := url.Values{"grant_type": {GrantPreAuthorized}, "pre-authorized_code": {code}}
	if sendTx {
		form.Set("tx_code", tx)
	}
	var at accessToken
	for attempt := 0; ; attempt++ {
		h := http.Header{}
		if dp != nil {
			p, err := dp.proof(http.MethodPost, endpoint, "")
			if err != nil {
				return at, err
			}
			h.Set("DPoP", p)
		}
		resp, b, err := c.postForm(ctx, endpoint, form, h, maxJSON)
		var he *httpError
		if errors.As(err, &he) && he.Code == "use_dpop_nonce" && dp != nil && attempt == 0 {
			dp.nonce = resp.Header.Get("DPoP-Nonce")
			continue
		}
		if errors.As(err, &he) && he.Code == "invalid_grant" && sendTx {
			return at, fmt.Errorf("%w: %s", ErrTxCode, he.Desc)
		}
		if err != nil {
			return at, fmt.Errorf("the token request: %w", err)
		}
		if dp != nil {
			if n := resp.Header.Get("DPoP-Nonce"); n != "" {
				dp.nonce = n
			}
		}
		if err := json.Unmarshal(b, &at); err != nil || at.Token == "" {
			return at, fmt.Errorf("%w: the token endpoint sent no access_token", ErrIssuerAnswer)
		}
		if strings.EqualFold(at.Type, "DPoP") && dp == nil {
			return at, fmt.Errorf("%w: a DPoP token the wallet did not ask for", ErrIssuerAnswer)
		}
		return at, nil
	}
}

func (c Client) nonce(ctx context.Context, endpoint string) (string, error) {
	_, b, err := c.postForm(ctx, endpoint, nil, nil, maxJSON)
	if err != nil {
		return "", fmt.Errorf("the nonce request: %w", err)
	}
	var n struct {
		Nonce string `json:"c_nonce"`
	}
	if json.Unmarshal(b, &n) != nil || n.Nonce == "" {
		return "", fmt.Errorf("%w: the nonce endpoint sent no c_nonce", ErrIssuerAnswer)
	}
	return n.Nonce, nil
}

// credential asks for size credentials of one configuration, each bound to a new key, checks
// them, and returns them ready to keep.
func (c Client) credential(ctx context.Context, w *Wallet, tok accessToken, dp *dpop, endpoint, issuer, configID string,
	cfg credentialConfigRaw, nonce string, size int, anchors []*x509.Certificate) ([]Credential, error) {
	ids := make([]string, size)
	keys := make([]*ecdsa.PrivateKey, size)
	proofs := make([]string, size)
	for i := range size {
		id, k, err := w.NewKey()
		if err != nil {
			return nil, err
		}
		ids[i], keys[i] = id, k
		claims := map[string]any{"aud": issuer, "iat": c.now().Unix()}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		if proofs[i], err = signJWT(k, "openid4vci-proof+jwt", true, nil, claims); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(map[string]any{"credential_configuration_id": configID, "proofs": map[string]any{"jwt": proofs}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if dp != nil {
		p, err := dp.proof(http.MethodPost, endpoint, tok.Token)
		if err != nil {
			return nil, err
		}
		req.Header.Set("DPoP", p)
		req.Header.Set("Authorization", "DPoP "+tok.Token)
	} else {
		req.Header.Set("Authorization", "Bearer "+tok.Token)
	}
	_, b, err := c.do(req, maxCredential)
	if err != nil {
		return nil, fmt.Errorf("the credential request: %w", err)
	}
	var resp struct {
		Credentials []struct {
			Credential json.RawMessage `json:"credential"`
		} `json:"credentials"`
		TransactionID string `json:"transaction_id"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("%w: not a JSON credential response", ErrIssuerAnswer)
	}
	if resp.TransactionID != "" && len(resp.Credentials) == 0 {
		return nil, fmt.Errorf("%w: deferred issuance", ErrUnsupported)
	}
	if len(resp.Credentials) != size {
		return nil, fmt.Errorf("%w: %d credentials for %d proofs", ErrIssuerAnswer, len(resp.Credentials), size)
	}
	now := c.now()
	var out []Credential
	bound := map[string]bool{}
	for i, rc := range resp.Credentials {
		var s string
		if err := json.Unmarshal(rc.Credential, &s); err != nil {
			return nil, fmt.Errorf("%w: credential %d is not a string", ErrIssuerAnswer, i)
		}
		cr := Credential{Format: cfg.Format, Configuration: configID, Issuer: issuer, Credential: s, Received: now.UTC()}
		// Credentials come in the proofs' order in practice, but nothing says so: bind each to
		// the key it names.
		var key string
		switch cfg.Format {
		case formatSDJWT:
			t, err := parseSDJWT(s, anchors, now)
			if err != nil {
				return nil, fmt.Errorf("credential %d: %w", i, err)
			}
			if t.iss != issuer {
				return nil, fmt.Errorf("%w: credential %d: iss %q is not the issuer %q", ErrInvalid, i, t.iss, issuer)
			}
			if cfg.VCT != "" && t.vct != cfg.VCT {
				return nil, fmt.Errorf("%w: credential %d: vct %q, the metadata says %q", ErrInvalid, i, t.vct, cfg.VCT)
			}
			if t.cnf == nil {
				return nil, fmt.Errorf("%w: credential %d is bound to no key (cnf.jwk)", ErrInvalid, i)
			}
			if key, err = thumbprint(t.cnf.Key); err != nil {
				return nil, err
			}
			cr.Type, cr.Expires = t.vct, t.exp
		case formatMdoc:
			m, err := parseMdoc(s, anchors, now)
			if err != nil {
				return nil, fmt.Errorf("credential %d: %w", i, err)
			}
			if cfg.DocType != "" && m.DocType != cfg.DocType {
				return nil, fmt.Errorf("%w: credential %d: doctype %q, the metadata says %q", ErrInvalid, i, m.DocType, cfg.DocType)
			}
			if key, err = thumbprint(m.DeviceKey); err != nil {
				return nil, err
			}
			cr.Type, cr.Expires = m.DocType, m.ValidUntil
		}
		if !slices.Contains(ids, key) || bound[key] {
			return nil, fmt.Errorf("%w: credential %d is bound to a key the wallet did not prove, or to one twice", ErrInvalid, i)
		}
		bound[key] = true
		cr.KeyID = key
		idb := make([]byte, 8)
		if _, err := rand.Read(idb); err != nil {
			return nil, err
		}
		cr.ID = fmt.Sprintf("%x", idb)
		out = append(out, cr)
	}
	return out, nil
}

// dpop makes DPoP proofs (RFC 9449) with one key for the flow.
type dpop struct {
	key   *ecdsa.PrivateKey
	nonce string
}

func newDPoP() (*dpop, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &dpop{key: k}, nil
}

// proof is a DPoP proof for method and target; with an access token, its hash (ath).
func (d *dpop) proof(method, target, token string) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	u.RawQuery, u.Fragment = "", ""
	claims := map[string]any{"jti": b64.EncodeToString(jti), "htm": method, "htu": u.String(), "iat": time.Now().Unix()}
	if d.nonce != "" {
		claims["nonce"] = d.nonce
	}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		claims["ath"] = b64.EncodeToString(h[:])
	}
	return signJWT(d.key, "dpop+jwt", true, nil, claims)
}
