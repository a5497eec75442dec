package verifier

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/sdjwt"
	"github.com/vula-eid/vula/internal/store"
)

// ErrResponse is a wallet's response this verifier refuses; the wallet is told why (400), and
// the transaction's result says so to the relying party.
var ErrResponse = problem.New(problem.InvalidRequest, "invalid authorization response")

// Answer is what the response endpoint tells the wallet: where to send the browser, if anywhere.
type Answer struct {
	RedirectURI string `json:"redirect_uri,omitempty"`
}

// Respond takes the wallet's response to transaction id: the form of a direct_post
// (vp_token, state) or of a direct_post.jwt (response: a JWE). The first response that reaches
// a pending transaction decides it; any later one gets ErrResponse.
func (s *Service) Respond(ctx context.Context, id string, form url.Values, requestID string) (Answer, error) {
	tx, old, err := s.load(ctx, id)
	if err != nil {
		return Answer{}, err
	}
	now := s.now()
	if tx.Status != Pending {
		return Answer{}, fmt.Errorf("%w: the transaction has already been answered", ErrResponse)
	}
	if !now.Before(tx.Expires) {
		return Answer{}, fmt.Errorf("%w: the transaction has expired", ErrResponse)
	}
	params, err := s.responseParams(tx, form)
	if err != nil {
		return Answer{}, err // not from the wallet of this transaction: it stays pending
	}
	res := s.evaluate(ctx, tx, params, now)
	received := now.UTC().Truncate(time.Second)
	res.Received = &received
	tx.Status, tx.Result = res.Status, &res
	var answer Answer
	if tx.RedirectURI != "" {
		if tx.ResponseCode, err = randomID(16); err != nil {
			return Answer{}, err
		}
		tx.Result.ResponseCode = tx.ResponseCode
		answer.RedirectURI = s.returnURI(tx)
	}
	b, err := json.Marshal(tx)
	if err != nil {
		return Answer{}, err
	}
	// Only the first of concurrent responses moves the transaction on.
	if err := s.eph.CompareAndSwap(ctx, txPrefix+tx.ID, old, b, s.cfg.ResultTTL); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return Answer{}, fmt.Errorf("%w: the transaction has already been answered", ErrResponse)
	} else if err != nil {
		return Answer{}, err
	}
	var names []string
	for _, c := range res.Credentials {
		for _, d := range c.Claims {
			names = append(names, c.ID+":"+pathString(d.Path))
		}
	}
	s.record(ctx, audit.Event{Actor: "wallet", Action: "verifier.response", Result: map[string]string{Accepted: "ok", Refused: "refused"}[res.Status],
		RequestID: requestID}, map[string]any{"transaction": tx.ID, "client": tx.ClientID, "claims": names, "reason": res.Reason})
	// A wallet's error response (the person declined, OpenID4VP §8.5) is a well-formed answer:
	// the wallet is told where to go on; a presentation refused is the wallet's fault: 400.
	if _, walletError := params["error"]; res.Status == Refused && !walletError {
		return answer, fmt.Errorf("%w: %s", ErrResponse, res.Reason)
	}
	return answer, nil
}

// returnURI is the relying party's redirect URI with its state and the response code.
func (s *Service) returnURI(tx transaction) string {
	u, err := url.Parse(tx.RedirectURI)
	if err != nil {
		return ""
	}
	q := u.Query()
	if tx.State != "" {
		q.Set("state", tx.State)
	}
	if tx.ResponseCode != "" {
		q.Set("response_code", tx.ResponseCode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// responseParams are the response's parameters: the form itself for direct_post, the decrypted
// JWE's claims for direct_post.jwt. A response that is not for this transaction (wrong state,
// not decryptable with its key) is refused without touching the transaction, so that a
// stranger cannot spoil it.
func (s *Service) responseParams(tx transaction, form url.Values) (map[string]any, error) {
	params := map[string]any{}
	if tx.ResponseMode == DirectPostJWT {
		jwe := form.Get("response")
		if jwe == "" {
			return nil, fmt.Errorf("%w: direct_post.jwt: the form has no response", ErrResponse)
		}
		plain, err := decryptResponse(jwe, tx)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrResponse, err)
		}
		dec := json.NewDecoder(bytes.NewReader(plain))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil || params == nil {
			return nil, fmt.Errorf("%w: the decrypted response is not a JSON object", ErrResponse)
		}
	} else {
		if form.Has("response") {
			return nil, fmt.Errorf("%w: an encrypted response to a direct_post request", ErrResponse)
		}
		for _, k := range []string{"vp_token", "state", "error", "error_description"} {
			if v := form.Get(k); v != "" {
				params[k] = v
			}
		}
	}
	if st, _ := params["state"].(string); st != tx.WalletState {
		return nil, fmt.Errorf("%w: state is not this transaction's", ErrResponse)
	}
	return params, nil
}

// decryptResponse opens a direct_post.jwt response: compact JWE, ECDH-ES with the
// transaction's key, A128GCM or A256GCM, no compression.
func decryptResponse(s string, tx transaction) ([]byte, error) {
	if len(s) > maxResponse || strings.HasPrefix(strings.TrimSpace(s), "{") {
		return nil, errors.New("response is not a compact JWE of an acceptable size")
	}
	obj, err := jose.ParseEncrypted(s)
	if err != nil {
		return nil, errors.New("response is not a JWE")
	}
	if obj.Header.Algorithm != string(jose.ECDH_ES) {
		return nil, fmt.Errorf("JWE alg %q (want ECDH-ES)", obj.Header.Algorithm)
	}
	if enc, _ := obj.Header.ExtraHeaders["enc"].(string); !slices.Contains(EncValues, enc) {
		return nil, fmt.Errorf("JWE enc %q (want one of %v)", enc, EncValues)
	}
	if _, zip := obj.Header.ExtraHeaders["zip"]; zip {
		return nil, errors.New("compressed JWE is not accepted")
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(tx.Key); err != nil {
		return nil, fmt.Errorf("transaction key: %w", err)
	}
	plain, err := obj.Decrypt(key.Key)
	if err != nil {
		return nil, errors.New("the JWE does not decrypt with this transaction's key")
	}
	return plain, nil
}

// maxMultiple bounds the presentations for one credential query that asks for multiple: each
// costs some signature checks.
const maxMultiple = 8

// maxResponse bounds a response's form value (the handler bounds the body as a whole).
const maxResponse = 512 << 10

// evaluate checks the response's presentations against the transaction's query.
func (s *Service) evaluate(ctx context.Context, tx transaction, params map[string]any, now time.Time) Result {
	refuse := func(format string, a ...any) Result {
		return Result{Status: Refused, Reason: fmt.Sprintf(format, a...)}
	}
	if e, ok := params["error"].(string); ok && e != "" {
		d, _ := params["error_description"].(string)
		return refuse("the wallet answered with error %s %s", e, d)
	}
	token, err := parseVPToken(params["vp_token"])
	if err != nil {
		return refuse("%v", err)
	}
	byID := map[string]CredentialQuery{}
	for _, c := range tx.Query.Credentials {
		byID[c.ID] = c
	}
	ids := make([]string, 0, len(token))
	for id := range token {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	res := Result{Status: Accepted}
	answered := map[string]bool{}
	for _, id := range ids {
		q, ok := byID[id]
		if !ok {
			return refuse("vp_token has a presentation for %q, which the query does not ask for", id)
		}
		if len(token[id]) > 1 && !q.Multiple {
			return refuse("vp_token has %d presentations for %q, which asks for one", len(token[id]), id)
		}
		if len(token[id]) > maxMultiple {
			return refuse("vp_token has %d presentations for %q, at most %d are taken", len(token[id]), id, maxMultiple)
		}
		for _, p := range token[id] {
			var cr CredentialResult
			if q.Format == FormatMdoc {
				cr = s.verifyMdoc(ctx, tx, q, p, now)
			} else {
				cr = s.verifySDJWT(ctx, tx, q, p, now)
			}
			if cr.Refusal != "" && res.Reason == "" {
				res.Status, res.Reason = Refused, fmt.Sprintf("credential %s: %s", id, cr.Refusal)
			}
			res.Credentials = append(res.Credentials, cr)
		}
		answered[id] = true
	}
	if res.Status == Accepted {
		if err := tx.Query.satisfied(answered); err != nil {
			res.Status, res.Reason = Refused, err.Error()
		}
	}
	if res.Status == Refused {
		// A refused response gives the relying party no claim.
		for i := range res.Credentials {
			res.Credentials[i].Claims = nil
		}
	}
	return res
}

// parseVPToken reads a DCQL vp_token: a JSON object from credential query ids to a
// presentation or an array of them (OpenID4VP 1.0 §8.1), given as a JSON string in a form.
func parseVPToken(v any) (map[string][]string, error) {
	var raw map[string]json.RawMessage
	switch t := v.(type) {
	case string:
		if err := json.Unmarshal([]byte(t), &raw); err != nil {
			return nil, errors.New("vp_token is not a JSON object (a DCQL response)")
		}
	case map[string]any:
		b, _ := json.Marshal(t)
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, errors.New("vp_token is not a JSON object")
		}
	case nil:
		return nil, errors.New("the response has no vp_token")
	default:
		return nil, errors.New("vp_token is not a JSON object (a DCQL response)")
	}
	if len(raw) == 0 {
		return nil, errors.New("vp_token is empty")
	}
	out := map[string][]string{}
	for id, r := range raw {
		var one string
		if json.Unmarshal(r, &one) == nil {
			out[id] = []string{one}
			continue
		}
		var many []string
		if err := json.Unmarshal(r, &many); err != nil || len(many) == 0 {
			return nil, fmt.Errorf("vp_token[%q] is neither a presentation string nor a non-empty array of them", id)
		}
		out[id] = many
	}
	return out, nil
}

// kbClaims are the claims of a key binding JWT.
type kbClaims struct {
	Iat    int64        `json:"iat"`
	Aud    jwt.Audience `json:"aud"` // a string or an array of strings
	Nonce  string       `json:"nonce"`
	SDHash string       `json:"sd_hash"`
}

// verifySDJWT checks one dc+sd-jwt presentation for query q.
func (s *Service) verifySDJWT(ctx context.Context, tx transaction, q CredentialQuery, pres string, now time.Time) CredentialResult {
	r := CredentialResult{ID: q.ID, Format: q.Format, Trust: "unchecked", Status: "unchecked", KeyBinding: "unchecked"}
	refuse := func(format string, a ...any) CredentialResult {
		r.Refusal = fmt.Sprintf(format, a...)
		r.Claims = nil
		return r
	}
	sd, err := sdjwt.Parse(pres)
	if err != nil {
		return refuse("%v", err)
	}
	// The issuer: its certificate chain (x5c) to a trust anchor, then its signature.
	leaf, err := s.issuerCert(sd.JWT, now)
	if leaf != nil {
		r.Issuer = leaf.Subject.String()
	}
	if err != nil {
		r.Trust = err.Error()
		return refuse("the issuer is not trusted: %v", err)
	}
	if _, _, err := verifyJWS(sd.JWT, FormatSDJWT, leaf.PublicKey); err != nil {
		r.Trust = "signature: " + err.Error()
		return refuse("the issuer's signature: %v", err)
	}
	r.Trust = "trusted"
	claims, err := sd.Claims()
	if err != nil {
		return refuse("disclosures: %v", err)
	}
	vct, _ := claims["vct"].(string)
	r.VCT = vct
	if len(q.Meta.VCTValues) > 0 && !slices.Contains(q.Meta.VCTValues, vct) {
		return refuse("vct %q is not one of %v", vct, q.Meta.VCTValues)
	}
	if err := validity(claims, now); err != nil {
		return refuse("%v", err)
	}
	// The key binding.
	if err := s.keyBinding(sd, claims, tx, now); err != nil {
		r.KeyBinding = err.Error()
		return refuse("key binding: %v", err)
	}
	r.KeyBinding = "ok"
	// The status.
	st, err := s.checkStatus(ctx, claims, now)
	r.Status = st
	if err != nil {
		return refuse("status: %v", err)
	}
	if st != "valid" && st != "none" {
		return refuse("the credential's status is %s", st)
	}
	picked, err := q.pick(claims)
	if err != nil {
		return refuse("%v", err)
	}
	r.Claims = picked
	return r
}

// issuerCert returns the issuer's leaf certificate from the JWT's x5c once its chain is
// verified to a trust anchor at now. The leaf must be for digital signatures (a seal
// certificate, for non-repudiation only, is not a credential issuer's).
func (s *Service) issuerCert(jwt string, now time.Time) (*x509.Certificate, error) {
	hb, err := base64.RawURLEncoding.DecodeString(strings.SplitN(jwt, ".", 2)[0])
	if err != nil {
		return nil, errors.New("the JWT header is not base64url")
	}
	var h struct {
		X5c []string `json:"x5c"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, errors.New("the JWT header is not JSON")
	}
	if len(h.X5c) == 0 || len(h.X5c) > 8 {
		return nil, errors.New("no x5c certificate chain in the header")
	}
	var chain []*x509.Certificate
	for i, c := range h.X5c {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d] is not base64", i)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d] is not a certificate", i)
		}
		chain = append(chain, cert)
	}
	if err := s.trusted(chain, now); err != nil {
		return chain[0], err
	}
	if chain[0].KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return chain[0], errors.New("the issuer certificate is not for digital signatures")
	}
	return chain[0], nil
}

// trusted checks that chain (leaf first) leads at now to a trust anchor the leaf may use: a
// certificate of the PID issuer's profile any anchor, any other certificate an outside anchor
// only; under Vula's own CA (an organization's seal, the TSA's) it is not a credential issuer.
func (s *Service) trusted(chain []*x509.Certificate, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verify := func(roots *x509.CertPool) error {
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	if certs.IsPIDIssuer(chain[0]) {
		if err := verify(s.anchors); err != nil {
			return fmt.Errorf("the x5c chain does not lead to a trust anchor: %v", err)
		}
		return nil
	}
	err := verify(s.outside)
	if err != nil && verify(s.own) == nil {
		return errors.New("the certificate under Vula's CA is not the PID issuer's")
	}
	if err != nil {
		return fmt.Errorf("the x5c chain does not lead to a trust anchor: %v", err)
	}
	return nil
}

// validity checks exp and nbf (and an iat in the future) with a minute of clock skew.
func validity(claims map[string]any, now time.Time) error {
	const skew = time.Minute
	num := func(name string) (time.Time, bool, error) {
		v, ok := claims[name]
		if !ok {
			return time.Time{}, false, nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return time.Time{}, true, fmt.Errorf("%s is not a number", name)
		}
		f, err := n.Float64()
		if err != nil {
			return time.Time{}, true, fmt.Errorf("%s is not a number", name)
		}
		return time.Unix(int64(f), 0), true, nil
	}
	if exp, ok, err := num("exp"); err != nil {
		return err
	} else if ok && !now.Add(-skew).Before(exp) {
		return fmt.Errorf("the credential expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := num("nbf"); err != nil {
		return err
	} else if ok && now.Add(skew).Before(nbf) {
		return fmt.Errorf("the credential is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok, err := num("iat"); err != nil {
		return err
	} else if ok && now.Add(skew).Before(iat) {
		return errors.New("the credential is issued in the future")
	}
	return nil
}

// keyBinding checks the key binding JWT: signed by cnf.jwk, typ kb+jwt, for this verifier's
// client id and this transaction's nonce, issued within the freshness window, over exactly the
// SD-JWT presented (sd_hash).
func (s *Service) keyBinding(sd *sdjwt.SDJWT, claims map[string]any, tx transaction, now time.Time) error {
	if sd.KB == "" {
		return errors.New("the presentation has no key binding JWT")
	}
	cnf, ok := claims["cnf"].(map[string]any)
	if !ok || cnf["jwk"] == nil {
		return errors.New("the credential has no cnf.jwk")
	}
	jb, _ := json.Marshal(cnf["jwk"])
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(jb); err != nil || !key.Valid() || !key.IsPublic() {
		return errors.New("cnf.jwk is not a public JWK")
	}
	_, payload, err := verifyJWS(sd.KB, "kb+jwt", &key)
	if err != nil {
		return err
	}
	var c kbClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return errors.New("its claims are not a JSON object")
	}
	clientID, err := s.clientIDOf(tx)
	if err != nil {
		return err
	}
	if len(c.Aud) != 1 || c.Aud[0] != clientID {
		return fmt.Errorf("aud %v is not this verifier (%s)", []string(c.Aud), clientID)
	}
	if c.Nonce != tx.Nonce {
		return errors.New("nonce is not this transaction's")
	}
	iat := time.Unix(c.Iat, 0)
	if c.Iat == 0 || iat.Before(now.Add(-s.cfg.Freshness)) || iat.After(now.Add(s.cfg.Freshness)) {
		return fmt.Errorf("iat is missing or not within %s of now", s.cfg.Freshness)
	}
	if c.SDHash != sd.SDHash() {
		return errors.New("sd_hash does not match the presentation")
	}
	return nil
}

// clientIDOf is the client id the transaction's request was made under.
func (s *Service) clientIDOf(tx transaction) (string, error) {
	if tx.Verifier == "" {
		return "", errors.New("the transaction names no verifier")
	}
	return tx.Verifier, nil
}
