package verifier

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/rawsig"
	"github.com/vula-eid/vula/internal/store"
)

// Response modes (OpenID4VP 1.0 §8.2, §8.3).
const (
	DirectPost    = "direct_post"
	DirectPostJWT = "direct_post.jwt"
)

// Transaction states.
const (
	Pending  = "pending"
	Accepted = "accepted"
	Refused  = "refused"
)

// EncValues are the content encryptions accepted of direct_post.jwt responses (HAIP: A128GCM
// and A256GCM), with ECDH-ES on P-256.
var EncValues = []string{"A128GCM", "A256GCM"}

// Ask is what a relying party asks for.
type Ask struct {
	ClientID     string // the relying party, from its access token
	Query        Query
	ResponseMode string // DirectPost or DirectPostJWT (the default)
	// RedirectURI is where the browser goes once the wallet answered (optional), with State.
	RedirectURI string
	State       string
	RequestID   string
}

// transaction is what the ephemeral store keeps of one request, from creation to result.
type transaction struct {
	ID           string          `json:"id"`
	ClientID     string          `json:"client_id"`
	Verifier     string          `json:"verifier"` // the verifier's client id the request is made under
	Query        Query           `json:"query"`
	ResponseMode string          `json:"response_mode"`
	RedirectURI  string          `json:"redirect_uri,omitempty"`
	State        string          `json:"state,omitempty"`
	Nonce        string          `json:"nonce"`
	WalletState  string          `json:"wallet_state"`
	Key          json.RawMessage `json:"key,omitempty"` // the private JWK that direct_post.jwt responses are encrypted to
	Created      time.Time       `json:"created"`
	Expires      time.Time       `json:"expires"`
	Status       string          `json:"status"`
	Result       *Result         `json:"result,omitempty"`
	ResponseCode string          `json:"response_code,omitempty"`
}

// Result is what the relying party fetches.
type Result struct {
	Status      string             `json:"status"` // Pending, Accepted or Refused
	Reason      string             `json:"reason,omitempty"`
	Received    *time.Time         `json:"received,omitempty"`
	Credentials []CredentialResult `json:"credentials,omitempty"`
	// ResponseCode is the one-time code that was added to the redirect URI: a relying party
	// compares it with the one its browser brought back (session fixation, OpenID4VP §13.3).
	ResponseCode string `json:"response_code,omitempty"`
}

// CredentialResult is the verification of one presentation.
type CredentialResult struct {
	ID     string `json:"id"` // the DCQL credential query's id
	Format string `json:"format"`
	VCT    string `json:"vct,omitempty"`
	// DocType is an mso_mdoc's docType.
	DocType string `json:"doctype,omitempty"`
	// Issuer is the subject DN of the issuer's certificate.
	Issuer string `json:"issuer,omitempty"`
	// Trust is "trusted" when the issuer's chain ends at a trust anchor, else why not.
	Trust string `json:"trust"`
	// Status is the credential's status list entry: valid, invalid, suspended, or none when
	// the credential has no status; unchecked when verification stopped before.
	Status string `json:"status"`
	// KeyBinding is "ok" when the key binding JWT (dc+sd-jwt) or the device signature
	// (mso_mdoc) verified, else why not.
	KeyBinding string      `json:"key_binding"`
	Claims     []Disclosed `json:"claims,omitempty"`
	// Refusal is why the presentation was refused; "" when accepted.
	Refusal string `json:"refusal,omitempty"`
}

// Created is what the relying party is given for a new transaction.
type Created struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"client_id"` // the verifier's, as the wallet sees it
	RequestURI  string    `json:"request_uri"`
	DeepLink    string    `json:"deep_link"`
	HAIPLink    string    `json:"haip_link"`
	ResultURI   string    `json:"result_uri"`
	PageURI     string    `json:"page_uri"`
	ExpiresAt   time.Time `json:"expires_at"`
	ResponseURI string    `json:"response_uri"`
}

// Errors of the service.
var (
	ErrInvalid  = problem.New(problem.InvalidRequest, "invalid presentation request")
	ErrNotFound = problem.New(problem.NotFound, "no such presentation transaction")
)

const txPrefix = "vp:tx:"

func randomID(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// checkRedirect accepts an absolute https URI without a fragment, or http on a loopback host
// (a relying party being developed).
func checkRedirect(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%w: redirect_uri must be an absolute URI with a host and without a fragment", ErrInvalid)
	}
	if u.Scheme == "https" {
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); u.Scheme == "http" && (u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())) {
		return nil
	}
	return fmt.Errorf("%w: redirect_uri must be https (http only on a loopback host)", ErrInvalid)
}

// Create starts a transaction for ask.
func (s *Service) Create(ctx context.Context, ask Ask) (Created, error) {
	if err := ask.Query.Check(); err != nil {
		return Created{}, err
	}
	switch ask.ResponseMode {
	case "":
		ask.ResponseMode = DirectPostJWT
	case DirectPost, DirectPostJWT:
	default:
		return Created{}, fmt.Errorf("%w: response_mode %q (want %s or %s)", ErrInvalid, ask.ResponseMode, DirectPostJWT, DirectPost)
	}
	if ask.RedirectURI != "" {
		if err := checkRedirect(ask.RedirectURI); err != nil {
			return Created{}, err
		}
	}
	if len(ask.State) > 512 {
		return Created{}, fmt.Errorf("%w: state is longer than 512 characters", ErrInvalid)
	}
	if ask.State != "" && ask.RedirectURI == "" {
		return Created{}, fmt.Errorf("%w: state without redirect_uri", ErrInvalid)
	}
	k, err := s.key(ctx)
	if err != nil {
		return Created{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	tx := transaction{ClientID: ask.ClientID, Verifier: k.clientID, Query: ask.Query, ResponseMode: ask.ResponseMode, RedirectURI: ask.RedirectURI,
		State: ask.State, Created: now, Expires: now.Add(s.cfg.TTL), Status: Pending}
	for _, f := range []*string{&tx.ID, &tx.Nonce, &tx.WalletState} {
		if *f, err = randomID(16); err != nil {
			return Created{}, err
		}
	}
	if tx.ResponseMode == DirectPostJWT {
		// A key of this transaction only: a response is readable by no other, and the key
		// dies with the transaction.
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Created{}, err
		}
		if tx.Key, err = json.Marshal(jose.JSONWebKey{Key: priv, KeyID: tx.ID, Algorithm: "ECDH-ES", Use: "enc"}); err != nil {
			return Created{}, err
		}
	}
	b, err := json.Marshal(tx)
	if err != nil {
		return Created{}, err
	}
	if err := s.eph.PutIfAbsent(ctx, txPrefix+tx.ID, b, s.cfg.TTL+s.cfg.ResultTTL); err != nil {
		return Created{}, err
	}
	var names []string
	for _, c := range ask.Query.Credentials {
		for _, cl := range c.Claims {
			names = append(names, c.ID+":"+pathString(cl.Path))
		}
	}
	s.record(ctx, audit.Event{Actor: "client:" + ask.ClientID, Action: "verifier.request", Key: k.uri, Result: "ok",
		RequestID: ask.RequestID}, map[string]any{"transaction": tx.ID, "response_mode": tx.ResponseMode, "claims": names})
	return s.created(tx, k.clientID), nil
}

// created is a transaction's addresses.
func (s *Service) created(tx transaction, clientID string) Created {
	reqURI := s.cfg.BaseURL + "/openid4vp/request/" + tx.ID
	q := url.Values{"client_id": {clientID}, "request_uri": {reqURI}}.Encode()
	return Created{ID: tx.ID, ClientID: clientID, RequestURI: reqURI, DeepLink: "openid4vp://?" + q, HAIPLink: "haip-vp://?" + q,
		ResultURI: s.cfg.BaseURL + "/api/v1/presentations/" + tx.ID, PageURI: s.cfg.BaseURL + "/verify/" + tx.ID,
		ResponseURI: s.responseURI(tx), ExpiresAt: tx.Expires}
}

// record appends an audit event with detail; a failure is logged, not returned: the audit log
// is written before signatures by the key layer itself, and these records only describe.
func (s *Service) record(ctx context.Context, ev audit.Event, detail map[string]any) {
	if s.audit == nil {
		return
	}
	ev.Detail, _ = json.Marshal(detail)
	if _, err := s.audit.Append(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "verifier: audit record", "action", ev.Action, "err", err)
	}
}

// load reads a transaction. An id longer than any we make is not looked up.
func (s *Service) load(ctx context.Context, id string) (transaction, []byte, error) {
	var tx transaction
	if id == "" || len(id) > 64 {
		return tx, nil, ErrNotFound
	}
	b, err := s.eph.Get(ctx, txPrefix+id)
	if errors.Is(err, store.ErrNotFound) {
		return tx, nil, ErrNotFound
	}
	if err != nil {
		return tx, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // paths' indexes stay json.Number, as ParseQuery made them
	if err := dec.Decode(&tx); err != nil {
		return tx, nil, fmt.Errorf("verifier: transaction %s in the store: %w", id, err)
	}
	return tx, b, nil
}

// RequestObject is the signed request (JAR, typ oauth-authz-req+jwt) of transaction id, as the
// wallet fetches it from the request URI. walletNonce is the wallet's wallet_nonce when it
// POSTed to the request URI (request_uri_method=post), else "".
func (s *Service) RequestObject(ctx context.Context, id, walletNonce string) (string, error) {
	tx, _, err := s.load(ctx, id)
	if err != nil {
		return "", err
	}
	now := s.now()
	if tx.Status != Pending || !now.Before(tx.Expires) {
		return "", fmt.Errorf("%w: the transaction is answered or expired", ErrNotFound)
	}
	k, err := s.key(ctx)
	if err != nil {
		return "", err
	}
	if k.clientID != tx.Verifier {
		// The verifier key changed since: the wallet would see another client id.
		return "", fmt.Errorf("%w: the verifier's certificate changed since the transaction was made", ErrNotFound)
	}
	meta := map[string]any{
		"vp_formats_supported": map[string]any{
			FormatSDJWT: map[string]any{"sd-jwt_alg_values": Algs, "kb-jwt_alg_values": Algs},
		},
	}
	if tx.ResponseMode == DirectPostJWT {
		var priv jose.JSONWebKey
		if err := priv.UnmarshalJSON(tx.Key); err != nil {
			return "", fmt.Errorf("verifier: transaction key: %w", err)
		}
		meta["jwks"] = map[string]any{"keys": []jose.JSONWebKey{priv.Public()}}
		meta["encrypted_response_enc_values_supported"] = EncValues
	}
	claims := map[string]any{
		"iss":             k.clientID,
		"aud":             "https://self-issued.me/v2", // static discovery of the wallet (OpenID4VP §5.8)
		"iat":             now.Unix(),
		"exp":             tx.Expires.Unix(),
		"client_id":       k.clientID,
		"response_type":   "vp_token",
		"response_mode":   tx.ResponseMode,
		"response_uri":    s.responseURI(tx),
		"nonce":           tx.Nonce,
		"state":           tx.WalletState,
		"dcql_query":      tx.Query,
		"client_metadata": meta,
	}
	if walletNonce != "" {
		claims["wallet_nonce"] = walletNonce
	}
	return rawsig.JWS(ctx, k.signer, map[string]any{"typ": "oauth-authz-req+jwt", "x5c": k.x5c}, claims)
}

// responseURI is where the wallet posts its response to tx.
func (s *Service) responseURI(tx transaction) string {
	return s.cfg.BaseURL + "/openid4vp/response/" + tx.ID
}
