package pid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// GrantPreAuthorized is the OpenID4VCI pre-authorized code grant type.
const GrantPreAuthorized = "urn:ietf:params:oauth:grant-type:pre-authorized_code"

const (
	offerTTL    = 15 * time.Minute
	tokenTTL    = 10 * time.Minute
	nonceTTL    = 5 * time.Minute
	maxTxErrors = 5 // wrong transaction codes before the offer is burnt
)

// Errors of the token endpoint.
var (
	ErrInvalidGrant = errors.New("the pre-authorized code is unknown, used or expired")
	ErrWrongTxCode  = errors.New("the transaction code is wrong")
)

// Offer is a credential offer with a pre-authorized code, for one person.
type Offer struct {
	ID string // names the offer's page and the offer served by reference
	// URI is the deep link for the QR code: openid-credential-offer://?credential_offer_uri=...,
	// short enough for a QR code a phone reads at a glance; OfferURI is where the wallet
	// fetches the offer, and Value the offer itself (credential_offer, by value).
	URI      string
	OfferURI string
	Value    json.RawMessage
	TxCode   string // the transaction code the person types in their wallet; told apart from the URI
	Until    time.Time
}

// offerRecord is what the ephemeral store keeps under the code's digest.
type offerRecord struct {
	Subject string `json:"sub"`
	Actor   string `json:"actor"`
	TxHash  []byte `json:"tx"`
	URI     string `json:"uri"`
	Page    string `json:"page"` // the offer's id: its page and its offer by reference go with the code
}

func digestKey(prefix, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return prefix + hex.EncodeToString(h[:])
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// AuthServer is the issuer's own authorization server for the pre-authorized code grant; the
// authorization code flow goes through Vula's identity provider.
func (s *Service) AuthServer() string { return s.cfg.Issuer + "/pid" }

// NewOffer makes a pre-authorized offer of the PID to the person with personalNumber, with a
// six-digit transaction code, for an operator at the registration desk (actor).
func (s *Service) NewOffer(ctx context.Context, personalNumber, actor string) (Offer, error) {
	p, err := s.persons.PersonByPersonalNumber(ctx, personalNumber)
	if errors.Is(err, store.ErrNotFound) {
		return Offer{}, fmt.Errorf("%w: no person with that personal number", ErrNotEligible)
	}
	if err != nil {
		return Offer{}, err
	}
	if p.Official {
		return Offer{}, fmt.Errorf("%w: an official's account, not a citizen's", ErrNotEligible)
	}
	if p.Status == store.EIDSuspended || p.Status == store.EIDRevoked {
		return Offer{}, fmt.Errorf("%w: the person's eID means is %s", ErrNotEligible, p.Status)
	}
	code, err := randomToken()
	if err != nil {
		return Offer{}, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return Offer{}, err
	}
	tx := fmt.Sprintf("%06d", n.Int64())
	id, err := randomToken()
	if err != nil {
		return Offer{}, err
	}
	offer, err := json.Marshal(map[string]any{
		"credential_issuer":            s.cfg.Issuer,
		"credential_configuration_ids": []string{ConfigSDJWT, ConfigMdoc},
		"grants": map[string]any{GrantPreAuthorized: map[string]any{
			"pre-authorized_code":  code,
			"tx_code":              map[string]any{"input_mode": "numeric", "length": 6, "description": "The code the registration desk gave you"},
			"authorization_server": s.AuthServer(),
		}},
	})
	if err != nil {
		return Offer{}, err
	}
	// The offer goes by reference (OpenID4VCI §4.1.3): the code stays out of the QR code and
	// the deep link, which only name where the wallet fetches the offer.
	ref := s.cfg.Issuer + "/pid/credential-offer/" + id
	uri := "openid-credential-offer://?credential_offer_uri=" + url.QueryEscape(ref)
	txh := sha256.Sum256([]byte(tx))
	rec, err := json.Marshal(offerRecord{Subject: p.SubjectID, Actor: actor, TxHash: txh[:], URI: uri, Page: id})
	if err != nil {
		return Offer{}, err
	}
	if err := s.eph.Put(ctx, digestKey("pid:pre:", code), rec, offerTTL); err != nil {
		return Offer{}, err
	}
	if err := s.eph.Put(ctx, digestKey("pid:offer:", id), offer, offerTTL); err != nil {
		return Offer{}, err
	}
	// The page shows the offer (its QR code) by the same id.
	if err := s.eph.Put(ctx, digestKey("pid:page:", id), []byte(uri), offerTTL); err != nil {
		return Offer{}, err
	}
	return Offer{ID: id, URI: uri, OfferURI: ref, Value: offer, TxCode: tx, Until: s.now().Add(offerTTL)}, nil
}

// OfferURI is the deep link of the offer page id.
func (s *Service) OfferURI(ctx context.Context, id string) (string, error) {
	b, err := s.eph.Get(ctx, digestKey("pid:page:", id))
	return string(b), err
}

// CredentialOffer is the offer id by value, as its credential_offer_uri serves it; ErrNotFound
// once it is redeemed, withdrawn or expired.
func (s *Service) CredentialOffer(ctx context.Context, id string) ([]byte, error) {
	return s.eph.Get(ctx, digestKey("pid:offer:", id))
}

// dropOffer removes what serves offer id (its page and its offer by reference): the code is
// spent or withdrawn.
func (s *Service) dropOffer(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	return errors.Join(s.eph.Delete(ctx, digestKey("pid:offer:", id)), s.eph.Delete(ctx, digestKey("pid:page:", id)))
}

// tokenRecord is what an access token of the issuer stands for.
type tokenRecord struct {
	Subject string `json:"sub"`
	Actor   string `json:"actor"`
	JKT     string `json:"jkt,omitempty"` // DPoP key thumbprint the token is bound to
	// Configs are the configurations authorization_details granted (their credential
	// identifiers); nil when the token was asked without them.
	Configs []string `json:"configs,omitempty"`
}

// Grant is what a token request asks beside the code: the DPoP key to bind the token to (the
// thumbprint, "" for a bearer token) and the configurations its authorization_details name.
type Grant struct {
	JKT     string
	Configs []string
}

// Redeem exchanges a pre-authorized code and its transaction code for an access token. A wrong
// transaction code counts against the offer: after maxTxErrors the offer is gone.
func (s *Service) Redeem(ctx context.Context, code, txCode string, g Grant) (string, error) {
	key := digestKey("pid:pre:", code)
	b, err := s.eph.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrInvalidGrant
	}
	if err != nil {
		return "", err
	}
	var rec offerRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", err
	}
	txh := sha256.Sum256([]byte(txCode))
	if subtle.ConstantTimeCompare(txh[:], rec.TxHash) != 1 {
		n, err := s.eph.Incr(ctx, digestKey("pid:txfail:", code), offerTTL)
		if err != nil {
			return "", err
		}
		if n >= maxTxErrors {
			if err := errors.Join(s.eph.Delete(ctx, key), s.dropOffer(ctx, rec.Page)); err != nil {
				return "", err
			}
			return "", fmt.Errorf("%w: too many wrong transaction codes, the offer is withdrawn", ErrWrongTxCode)
		}
		return "", fmt.Errorf("%w (%d of %d tries left)", ErrWrongTxCode, maxTxErrors-n, maxTxErrors)
	}
	// One redemption only, however many replicas race for it.
	if _, err := s.eph.Take(ctx, key); errors.Is(err, store.ErrNotFound) {
		return "", ErrInvalidGrant
	} else if err != nil {
		return "", err
	}
	if err := s.dropOffer(ctx, rec.Page); err != nil {
		// The code is spent; the offer it served expires with its TTL.
		s.log.WarnContext(ctx, "pid: redeemed offer not removed", "err", err)
	}
	tok, err := randomToken()
	if err != nil {
		return "", err
	}
	tr, err := json.Marshal(tokenRecord{Subject: rec.Subject, Actor: rec.Actor, JKT: g.JKT, Configs: g.Configs})
	if err != nil {
		return "", err
	}
	return tok, s.eph.Put(ctx, digestKey("pid:at:", tok), tr, tokenTTL)
}

// accessToken reads what an issuer access token stands for; ErrNotFound when it is not one.
func (s *Service) accessToken(ctx context.Context, tok string) (tokenRecord, error) {
	b, err := s.eph.Get(ctx, digestKey("pid:at:", tok))
	if err != nil {
		return tokenRecord{}, err
	}
	var tr tokenRecord
	return tr, json.Unmarshal(b, &tr)
}

// Nonce hands out a fresh c_nonce for proofs of possession.
func (s *Service) Nonce(ctx context.Context) (string, error) {
	n, err := randomToken()
	if err != nil {
		return "", err
	}
	return n, s.eph.Put(ctx, "pid:nonce:"+n, []byte{1}, nonceTTL)
}

// OfferPage is the page that shows offer id as a QR code.
func (s *Service) OfferPage(id string) string { return s.cfg.Issuer + "/pid/offer/" + id }

// DPoPNonce hands out a server nonce for DPoP proofs at the token endpoint (RFC 9449 §8); it
// is good for nonceTTL, on every replica (it lives in the ephemeral store).
func (s *Service) DPoPNonce(ctx context.Context) (string, error) {
	n, err := randomToken()
	if err != nil {
		return "", err
	}
	return n, s.eph.Put(ctx, digestKey("pid:dpop-nonce:", n), []byte{1}, nonceTTL)
}

func (s *Service) validDPoPNonce(ctx context.Context, n string) (bool, error) {
	if n == "" || len(n) > 64 {
		return false, nil
	}
	_, err := s.eph.Get(ctx, digestKey("pid:dpop-nonce:", n))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
