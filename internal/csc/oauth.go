package csc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
)

// Credential authorization through OAuth (CSC API v2 §8.4.2, "oauth2code" for credentials):
// the official authorizes exact digests on one credential by a fresh password + TOTP login at
// the identity provider, which checks the credential with CheckCredential, records the
// authorization in the audit log with RecordAuthorization (action csc.authorize, mode
// oauth2code: the authorization event is written when the official allows it, before the code
// is issued) and issues an access token with scope credential whose session carries the
// digests. That token, sent as the Authorization header of signatures/signHash (or signDoc)
// without a SAD (§11.10), stands in for a SAD: at first use a SAD record is made for it under
// a name derived from the token's SHA-256, holding the credential, the official, the digests,
// the token's expiry (at most SADTTL) and the authorization's audit sequence number, and from
// there on it is redeemed exactly as an explicit SAD is (each digest once, by compare-and-swap;
// the credential's status read at every use; every signature audited naming the authorization).

var _ auth.CredentialAuthorizer = (*Service)(nil)

// CheckCredential says whether subject may authorize credential id now: ErrCredentialRefused
// for a credential that is not theirs (or none) and for a revoked or expired one.
func (s *Service) CheckCredential(ctx context.Context, subject, id string) error {
	c, err := s.Credential(ctx, subject, id)
	if errors.Is(err, errUnknownCredential) {
		return fmt.Errorf("%w: not a credential of this official", auth.ErrCredentialRefused)
	}
	if err != nil {
		return err
	}
	if !c.Valid(s.now()) {
		return fmt.Errorf("%w: the credential's certificate is revoked or expired", auth.ErrCredentialRefused)
	}
	return nil
}

// RecordAuthorization appends the csc.authorize event of an OAuth credential authorization
// (granted when refusal is "") with its digests and labels, and returns its sequence number.
func (s *Service) RecordAuthorization(ctx context.Context, subject, clientID string, a auth.CredentialAuthorization, refusal string) (int64, error) {
	if s.audit == nil {
		return 0, errors.New("csc: no audit log")
	}
	key := ""
	if c, err := s.Credential(ctx, subject, a.CredentialID); err == nil {
		key = c.KeyURI
	}
	result := "ok"
	if refusal != "" {
		result = refusal
	}
	hexes := make([]string, len(a.DocumentDigests))
	labels := make([]string, len(a.DocumentDigests))
	all := sha256.New()
	for i, d := range a.DocumentDigests {
		hexes[i], labels[i] = hex.EncodeToString(d.Hash), d.Label
		all.Write(d.Hash)
	}
	detail, _ := json.Marshal(map[string]any{"mode": "oauth2code", "client": clientID, "credential": a.CredentialID,
		"num_signatures": len(a.DocumentDigests), "hash_algorithm": a.HashAlgorithmOID, "hashes": hexes, "labels": labels})
	r, err := s.audit.Append(ctx, audit.Event{Actor: subject, Action: "csc.authorize", Key: key,
		Digest: all.Sum(nil), Result: result, Detail: detail, RequestID: requestID(ctx)})
	if err != nil {
		s.log.ErrorContext(ctx, "csc: audit of an OAuth authorization", "err", err)
		return 0, err
	}
	return r.Seq, nil
}

// TokenSAD returns the SAD a credential token (scope credential) stands for, making its record
// at first use. token is the access token itself; only its hash is kept. A token whose expiry
// has passed, by the service's clock, gets errSADExpired.
func (s *Service) TokenSAD(ctx context.Context, c auth.Caller, token string) (string, error) {
	a := c.Credential
	if a == nil || token == "" || c.Subject == "" {
		return "", errInvalidSAD
	}
	sum := sha256.Sum256([]byte(token))
	// Explicit SADs are 43 characters of base64url; this one cannot be mistaken for one, and
	// only the token's holder can name it.
	sad := "oauth2:" + base64.RawURLEncoding.EncodeToString(sum[:])
	key := sadKey(sad)
	now := s.now()
	exp := c.ExpiresAt
	if exp.IsZero() || exp.After(now.Add(s.cfg.SADTTL)) {
		exp = now.Add(s.cfg.SADTTL)
	}
	if _, err := s.eph.Get(ctx, key); err == nil {
		return sad, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if !now.Before(exp) {
		return "", errSADExpired
	}
	cr, err := s.Credential(ctx, c.Subject, a.CredentialID)
	if err != nil {
		return "", err
	}
	rec := sadRecord{Credential: cr.ID, Subject: c.Subject, KeyURI: cr.KeyURI, HashOID: a.HashAlgorithmOID, Hashes: a.Hashes(),
		Used: make([]bool, len(a.DocumentDigests)), Expires: exp, AuditSeq: c.AuthorizationSeq,
		// The token's expiry is the end: extendTransaction cannot go past it.
		Limit: exp}
	v, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	// Two first uses at once write the same record; the second finds the first's.
	err = s.eph.PutIfAbsent(ctx, key, v, exp.Sub(now)+time.Minute)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return "", err
	}
	return sad, nil
}

type tokenSADKey struct{}

// tokenSADOf is what credentialOr found: the token and the SAD it stands for.
type tokenSADOf struct{ token, sad string }

// credentialOr serves a signing method for a credential token in the Authorization header,
// which stands in for the SAD (see tokenSAD); any other token goes through authed, the service
// authorization.
func (h Handler) credentialOr(next func(w http.ResponseWriter, r *http.Request, subject string)) http.HandlerFunc {
	service := h.authed(next)
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := h.Auth.Bearer(r, auth.CredentialScope)
		if err != nil || c.Credential == nil {
			service(w, r)
			return
		}
		if c.Subject == "" || !auth.AtLeast(c.ACR, auth.LoASubstantial) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied",
				"error_description": "a credential authorization must come from the official's own two-factor login"})
			return
		}
		ctx := WithRequestID(r.Context(), server.RequestID(r.Context()))
		tok := auth.TokenOf(r) // Bearer or DPoP
		sad, err := h.S.TokenSAD(ctx, c, tok)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		next(w, r.WithContext(context.WithValue(ctx, tokenSADKey{}, tokenSADOf{token: tok, sad: sad})), c.Subject)
	}
}

// tokenSAD fills *sad with the SAD the request's credential token stands for, if it came with
// one. CSC lets a client also pass the token itself as SAD; any other SAD beside the token is
// refused, since it would be unclear which authorization signs.
func tokenSAD(ctx context.Context, sad *string) error {
	t, ok := ctx.Value(tokenSADKey{}).(tokenSADOf)
	if !ok {
		return nil
	}
	if *sad != "" && *sad != t.token {
		return invalidRequest("Invalid parameter SAD: the credential token in the Authorization header is the authorization; omit SAD")
	}
	*sad = t.sad
	return nil
}

// authModes adds to a credential's auth description the modes it can be authorized in: the
// spec's auth/mode names one (explicit, described by its objects); "modes" lists every one
// offered, oauth2code when the identity provider does credential authorization.
func (h Handler) authModes(v credInfoView) credInfoView {
	if o, ok := h.Auth.(interface{ OffersCredentialAuthorization() bool }); ok && o.OffersCredentialAuthorization() {
		v.Auth["modes"] = []string{"explicit", "oauth2code"}
	} else {
		v.Auth["modes"] = []string{"explicit"}
	}
	return v
}
