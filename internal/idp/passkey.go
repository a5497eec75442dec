package idp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/vula-eid/vula/internal/store"
)

// Passkeys (WebAuthn Level 3, github.com/go-webauthn/webauthn): enrolled after a login at
// substantial (or at activation), used to log in as the first factor (a discoverable
// credential, user verification required) or as the second after the password.
//
// The level a passkey reaches is fixed at enrolment: high when it is device-bound (not backup
// eligible) and its attestation chains to a configured trust root; substantial otherwise (a
// synced passkey, or attestation none, self or from an authenticator nobody listed).
//
// Each ceremony's challenge lives in the ephemeral store and is taken once (any replica
// finishes what another began; a replayed response finds no challenge). A sign counter that
// does not advance is refused as a cloned authenticator.

const (
	ceremonyTTL    = 5 * time.Minute
	maxPasskeyBody = 64 << 10 // a registration response with an attestation chain fits easily
	maxPasskeyName = 64
)

// PasskeyTrust is what makes a passkey count as high.
type PasskeyTrust struct {
	// Anchors are the attestation trust anchors (from the configured PEM files): a CA
	// certificate the attestation chains to, or an attestation (batch) certificate itself, as
	// FIDO metadata may list it, matched by name and public key (RFC 5280 §6.1.1 d: a trust
	// anchor is a name and a key). An attestation matching none counts as substantial.
	Anchors []*x509.Certificate
	// MDS3 is a verified FIDO MDS3 BLOB (ParseMDS3), nil when none is configured. A model it
	// lists counts as high only as its statement says (its attestation roots, no compromised or
	// revoked status), whatever Anchors hold; an out-of-date BLOB vouches for nothing.
	MDS3 *MDS3
}

// passkeys is the WebAuthn relying party.
type passkeys struct {
	wa    *webauthn.WebAuthn
	trust PasskeyTrust
}

// EnablePasskeys turns passkeys on, the relying party being the issuer's host. Call it before
// Register.
func (g *Pages) EnablePasskeys(trust PasskeyTrust) error {
	u, err := url.Parse(g.p.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("idp: passkeys: issuer: %w", err)
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  u.Hostname(),
		RPDisplayName:         "Vula",
		RPOrigins:             []string{u.Scheme + "://" + u.Host},
		AttestationPreference: protocol.PreferDirectAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
	})
	if err != nil {
		return fmt.Errorf("idp: passkeys: %w", err)
	}
	g.passkeys = &passkeys{wa: wa, trust: trust}
	g.methods = append(g.methods, LoginMethod{ID: "passkey", Reaches: LoAHigh})
	return nil
}

func (g *Pages) registerPasskeys(mux *http.ServeMux) {
	mux.HandleFunc("GET /account/passkeys", g.passkeysPage)
	mux.HandleFunc("POST /account/passkeys/begin", g.passkeyEnrolBegin)
	mux.HandleFunc("POST /account/passkeys/finish", g.passkeyEnrolFinish)
	mux.HandleFunc("POST /account/passkeys/delete", g.passkeyDelete)
	mux.HandleFunc("POST /login/passkey/begin", g.passkeyLoginBegin)
	mux.HandleFunc("POST /login/passkey/finish", g.passkeyLoginFinish)
}

// waUser is a person as go-webauthn sees them: the user handle is the subject id.
type waUser struct {
	p     store.Person
	creds []webauthn.Credential
}

func (u waUser) WebAuthnID() []byte                         { return []byte(u.p.SubjectID) }
func (u waUser) WebAuthnName() string                       { return u.p.PersonalNumber }
func (u waUser) WebAuthnDisplayName() string                { return u.p.GivenName + " " + u.p.FamilyName }
func (u waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

var _ webauthn.User = waUser{}

// user loads subject with the passkeys that reach level.
func (g *Pages) user(ctx context.Context, subject, level string) (waUser, []store.Passkey, error) {
	p, err := g.p.db.Person(ctx, subject)
	if err != nil {
		return waUser{}, nil, err
	}
	all, err := g.p.db.PasskeysOf(ctx, subject)
	if err != nil {
		return waUser{}, nil, err
	}
	u := waUser{p: p}
	var keys []store.Passkey
	for _, k := range all {
		if levelOf(k.Level) < levelOf(level) {
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal(k.Record, &c); err != nil {
			return waUser{}, nil, fmt.Errorf("idp: passkey record of %s: %w", subject, err)
		}
		u.creds = append(u.creds, c)
		keys = append(keys, k)
	}
	return u, keys, nil
}

// hasPasskey reports whether subject has a passkey reaching level.
func (g *Pages) hasPasskey(ctx context.Context, subject, level string) (bool, error) {
	if g.passkeys == nil {
		return false, nil
	}
	keys, err := g.p.db.PasskeysOf(ctx, subject)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(keys, func(k store.Passkey) bool { return levelOf(k.Level) >= levelOf(level) }), nil
}

// ceremony is a WebAuthn ceremony in progress, kept in the ephemeral store.
type ceremony struct {
	Session webauthn.SessionData `json:"session"`
	Subject string               `json:"subject,omitempty"` // enrolment; second-factor login
	Flow    string               `json:"flow,omitempty"`    // login
	Level   string               `json:"level,omitempty"`   // second-factor login: passkeys reaching it
}

func (g *Pages) putCeremony(ctx context.Context, c ceremony) (string, error) {
	id := randomID()
	b, _ := json.Marshal(c)
	return id, g.p.eph.Put(ctx, "idp:webauthn:"+id, b, ceremonyTTL)
}

// takeCeremony claims a ceremony once: a second answer to the same challenge finds nothing.
func (g *Pages) takeCeremony(ctx context.Context, id string) (ceremony, error) {
	var c ceremony
	if id == "" {
		return c, store.ErrNotFound
	}
	b, err := g.p.eph.Take(ctx, "idp:webauthn:"+id)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// jsonError is a refusal the script shows: the message key is translated into the page's language.
func (g *Pages) jsonError(w http.ResponseWriter, r *http.Request, status int, key string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, status, map[string]string{"error": key, "message": g.web.T(w, r, key)})
}

// jsonUnavailable logs err and answers 503 with Retry-After, or 400 when err is a store miss
// the request caused (an unknown or expired ceremony).
func (g *Pages) jsonUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrNotFound) {
		g.jsonError(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	g.p.log.ErrorContext(r.Context(), "passkey", "err", err)
	g.jsonError(w, r, http.StatusServiceUnavailable, "error.unavailable")
}

// --- enrolment

type passkeysData struct {
	CSRF, Error, Done string
	Keys              []passkeyLine
}

type passkeyLine struct {
	ID, Name, Level, Created string
	High                     bool
}

// enrolSession is the single sign-on session that may manage passkeys: a login at substantial
// or more.
func (g *Pages) enrolSession(r *http.Request) (ssoSession, bool) {
	s, ok := g.sso(r)
	return s, ok && (s.Activation || levelOf(s.ACR) >= levelOf(LoASubstantial))
}

func (g *Pages) passkeysPage(w http.ResponseWriter, r *http.Request) {
	s, ok := g.enrolSession(r)
	if !ok {
		g.fail(w, r, http.StatusUnauthorized, "passkey.needlogin")
		return
	}
	keys, err := g.p.db.PasskeysOf(r.Context(), s.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	d := passkeysData{CSRF: s.CSRF, Done: r.URL.Query().Get("done")}
	if d.Done != "added" && d.Done != "removed" {
		d.Done = ""
	}
	for _, k := range keys {
		d.Keys = append(d.Keys, passkeyLine{ID: base64.RawURLEncoding.EncodeToString(k.ID), Name: k.Name,
			Created: k.Created.Format("2006-01-02"), High: k.Level == LoAHigh})
	}
	g.web.Render(w, r, http.StatusOK, "passkeys", d)
}

// enrolling is the preamble of an enrolment request: a session that may manage passkeys, and
// its CSRF token in the request.
func (g *Pages) enrolling(w http.ResponseWriter, r *http.Request) (ssoSession, bool) {
	s, ok := g.enrolSession(r)
	if !ok {
		g.jsonError(w, r, http.StatusUnauthorized, "passkey.needlogin")
		return s, false
	}
	return s, g.sameCSRF(w, r, s.CSRF)
}

// loggingIn is the preamble of a passkey login request: the login's flow, and its CSRF token in
// the request.
func (g *Pages) loggingIn(w http.ResponseWriter, r *http.Request) (*flow, bool) {
	f, ok := g.loadFlow(r)
	if !ok {
		g.jsonError(w, r, http.StatusBadRequest, "error.flow")
		return nil, false
	}
	return f, g.sameCSRF(w, r, f.CSRF)
}

// sameCSRF checks the script's X-CSRF-Token against the session's or the flow's.
func (g *Pages) sameCSRF(w http.ResponseWriter, r *http.Request, want string) bool {
	if !sameToken(want, r.Header.Get("X-CSRF-Token")) {
		g.jsonError(w, r, http.StatusForbidden, "error.csrf")
		return false
	}
	return true
}

// answer is the preamble of a ceremony's finish: the ceremony named in the query, taken once
// and begun by the same caller (began), and the authenticator's answer, bounded.
func (g *Pages) answer(w http.ResponseWriter, r *http.Request, began func(ceremony) bool) (ceremony, []byte, bool) {
	c, err := g.takeCeremony(r.Context(), r.URL.Query().Get("ceremony"))
	if err != nil || !began(c) {
		g.jsonError(w, r, http.StatusBadRequest, "error.flow")
		return c, nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPasskeyBody))
	if err != nil {
		g.jsonError(w, r, http.StatusRequestEntityTooLarge, "passkey.bad")
		return c, nil, false
	}
	return c, body, true
}

// passkeyEnrolBegin answers the creation options for a new passkey of the logged-in person.
func (g *Pages) passkeyEnrolBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := g.enrolling(w, r)
	if !ok {
		return
	}
	u, _, err := g.user(ctx, s.Subject, LoALow)
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	opts, sess, err := g.passkeys.wa.BeginRegistration(u, webauthn.WithExclusions(exclude))
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	id, err := g.putCeremony(ctx, ceremony{Session: *sess, Subject: s.Subject})
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ceremony": id, "publicKey": opts.Response})
}

// passkeyEnrolFinish checks the authenticator's answer and stores the passkey with its level.
func (g *Pages) passkeyEnrolFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := g.enrolling(w, r)
	if !ok {
		return
	}
	name := strings.TrimSpace(r.URL.Query().Get("name"))
	if name == "" || len(name) > maxPasskeyName || strings.ContainsAny(name, "\x00\r\n") {
		g.jsonError(w, r, http.StatusBadRequest, "passkey.badname")
		return
	}
	c, body, ok := g.answer(w, r, func(c ceremony) bool { return c.Subject == s.Subject })
	if !ok {
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		g.jsonError(w, r, http.StatusBadRequest, "passkey.bad")
		return
	}
	u, _, err := g.user(ctx, s.Subject, LoALow)
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	cred, err := g.passkeys.wa.CreateCredential(u, c.Session, parsed)
	if err != nil {
		g.p.log.InfoContext(ctx, "passkey enrolment refused", "err", err)
		g.jsonError(w, r, http.StatusBadRequest, "passkey.bad")
		return
	}
	level, why := g.passkeys.level(cred, parsed, g.p.now())
	g.p.log.InfoContext(ctx, "passkey enrolled", "level", level, "why", why, "format", cred.AttestationFormat)
	record, _ := json.Marshal(cred)
	now := g.p.now().UTC()
	if err := g.p.db.CreatePasskey(ctx, store.Passkey{ID: cred.ID, SubjectID: s.Subject, Name: name, Level: level, Record: record, Created: now}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			g.jsonError(w, r, http.StatusConflict, "passkey.exists")
			return
		}
		g.jsonUnavailable(w, r, err)
		return
	}
	g.recordPasskey(ctx, s.Subject, "idp.passkey.add", cred.ID, level)
	writeJSON(w, http.StatusOK, map[string]string{"level": level, "redirect": "/account/passkeys?done=added"})
}

// level is the level of assurance a new passkey reaches at now, and why (for the log).
func (pk *passkeys) level(c *webauthn.Credential, parsed *protocol.ParsedCredentialCreationData, now time.Time) (string, string) {
	if c.Flags.BackupEligible {
		return LoASubstantial, "synced (backup eligible)" // as safe as the account it syncs through
	}
	mds := pk.trust.MDS3
	if mds != nil && mds.Expired(now) {
		mds = nil // out of date: treated as no list (the start's warning said so)
	}
	if len(pk.trust.Anchors) == 0 && mds == nil {
		return LoASubstantial, "no attestation trust list"
	}
	x5c, ok := parsed.Response.AttestationObject.AttStatement["x5c"].([]any)
	if !ok || len(x5c) == 0 {
		return LoASubstantial, "attestation none or self" // nobody vouches for the device
	}
	var chain []*x509.Certificate
	for _, raw := range x5c {
		der, ok := raw.([]byte)
		if !ok {
			return LoASubstantial, "attestation chain not DER"
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return LoASubstantial, "attestation certificate: " + err.Error()
		}
		chain = append(chain, cert)
	}
	// The library has checked the attestation signature with the first certificate.
	if mds != nil {
		listed, ok, why := mds.vouch(c.Authenticator.AAGUID, chain, now)
		if ok {
			return LoAHigh, why
		}
		if listed {
			// The BLOB knows the model and does not vouch for this attestation (a revoked
			// model, or a chain not to its roots): no other list raises it.
			return LoASubstantial, why
		}
	}
	if chainsTo(chain, pk.trust.Anchors, now) {
		return LoAHigh, "device-bound, attestation chains to the trust list"
	}
	return LoASubstantial, "attestation not from a listed authenticator"
}

// recordPasskey audits a change to a person's passkeys (best effort beyond the log line: the
// change is made and the person sees it).
func (g *Pages) recordPasskey(ctx context.Context, subject, action string, id []byte, level string) {
	if g.p.audit == nil {
		return
	}
	detail, _ := json.Marshal(map[string]string{"passkey": base64.RawURLEncoding.EncodeToString(id), "level": level})
	if _, err := g.p.audit.Append(ctx, auditEvent(subject, action, level, detail)); err != nil {
		g.p.log.ErrorContext(ctx, "audit of a passkey change", "action", action, "err", err)
	}
}

func (g *Pages) passkeyDelete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := g.enrolSession(r)
	if !ok {
		g.fail(w, r, http.StatusUnauthorized, "passkey.needlogin")
		return
	}
	if !sameToken(s.CSRF, r.PostFormValue("csrf")) {
		g.fail(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("passkey"))
	if err != nil || len(id) == 0 {
		g.fail(w, r, http.StatusBadRequest, "error.request")
		return
	}
	if err := g.p.db.DeletePasskey(ctx, s.Subject, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			g.fail(w, r, http.StatusNotFound, "error.request") // not one of this person's
			return
		}
		g.unavailable(w, r, err)
		return
	}
	g.recordPasskey(ctx, s.Subject, "idp.passkey.remove", id, "")
	http.Redirect(w, r, "/account/passkeys?done=removed", http.StatusSeeOther)
}

// --- login

// passkeyLoginBegin answers the request options of a login: any discoverable passkey as the
// first factor, or the person's own passkeys reaching the level after the password.
func (g *Pages) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := g.loggingIn(w, r)
	if !ok {
		return
	}
	var (
		opts *protocol.CredentialAssertion
		sess *webauthn.SessionData
		err  error
		c    = ceremony{Flow: f.ID}
	)
	if f.Subject != "" && f.ACR == "" {
		// The second factor: only this person's passkeys, only those reaching the level.
		u, _, uerr := g.user(ctx, f.Subject, f.Required)
		if uerr != nil {
			g.jsonUnavailable(w, r, uerr)
			return
		}
		if len(u.creds) == 0 {
			g.jsonError(w, r, http.StatusBadRequest, "passkey.none")
			return
		}
		c.Subject, c.Level = f.Subject, f.Required
		opts, sess, err = g.passkeys.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	} else {
		opts, sess, err = g.passkeys.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	}
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	c.Session = *sess
	id, err := g.putCeremony(ctx, c)
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ceremony": id, "publicKey": opts.Response})
}

// passkeyLoginFinish checks the assertion: the challenge once, the origin, user verification,
// the signature by the passkey, a sign counter that advanced, and (second factor) the owner.
func (g *Pages) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := g.loggingIn(w, r)
	if !ok {
		return
	}
	c, body, ok := g.answer(w, r, func(c ceremony) bool { return c.Flow == f.ID })
	if !ok {
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		g.jsonError(w, r, http.StatusBadRequest, "passkey.bad")
		return
	}
	key, err := g.p.db.Passkey(ctx, parsed.RawID)
	if errors.Is(err, store.ErrNotFound) {
		g.jsonError(w, r, http.StatusUnauthorized, "passkey.unknown")
		return
	} else if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	if c.Subject != "" && key.SubjectID != c.Subject {
		g.jsonError(w, r, http.StatusUnauthorized, "passkey.unknown") // another person's passkey
		return
	}
	level := LoALow
	if c.Level != "" {
		level = c.Level
	}
	u, _, err := g.user(ctx, key.SubjectID, level)
	if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	var cred *webauthn.Credential
	if c.Subject != "" {
		cred, err = g.passkeys.wa.ValidateLogin(u, c.Session, parsed)
	} else {
		cred, err = g.passkeys.wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			if !bytes.Equal(rawID, key.ID) || string(userHandle) != key.SubjectID {
				return nil, errors.New("the user handle is not the passkey's owner")
			}
			return u, nil
		}, c.Session, parsed)
	}
	if err == nil && cred.Authenticator.CloneWarning {
		err = errors.New("the sign counter did not advance: a cloned authenticator or a replay")
	}
	if err != nil {
		g.p.log.InfoContext(ctx, "passkey login refused", "err", err)
		g.jsonError(w, r, http.StatusUnauthorized, "passkey.bad")
		return
	}
	if err := g.p.db.UpdatePasskey(ctx, key.ID, func(k store.Passkey) (store.Passkey, error) {
		var stored webauthn.Credential
		if err := json.Unmarshal(k.Record, &stored); err != nil {
			return k, err
		}
		if cred.Authenticator.SignCount != 0 && cred.Authenticator.SignCount <= stored.Authenticator.SignCount {
			return k, errReplay // a concurrent login with the same counter got there first
		}
		stored.Authenticator.SignCount = cred.Authenticator.SignCount
		stored.Flags.BackupState = cred.Flags.BackupState
		k.Record, _ = json.Marshal(stored)
		k.LastUsed = g.p.now().UTC()
		return k, nil
	}); err != nil {
		if errors.Is(err, errReplay) {
			g.jsonError(w, r, http.StatusUnauthorized, "passkey.bad")
			return
		}
		g.jsonUnavailable(w, r, err)
		return
	}
	// RFC 8176: hwk for a device-bound key, swk for one that syncs (a software copy exists);
	// user verification makes it two factors by itself.
	method := "hwk"
	if cred.Flags.BackupEligible {
		method = "swk"
	}
	if c.Subject == "" {
		f.Subject, f.AMR, f.AuthTime = key.SubjectID, nil, g.p.now().UTC().Truncate(time.Second)
	}
	f.AMR = append(f.AMR, method, "user", "mfa")
	// A level below the one asked is answered to the client at the consent page (reached).
	f.AuthLevel = key.Level
	cookie, err := g.signIn(ctx, r, f)
	if errors.Is(err, ErrInactive) {
		g.jsonError(w, r, http.StatusForbidden, "login.inactive")
		return
	} else if err != nil {
		g.jsonUnavailable(w, r, err)
		return
	}
	http.SetCookie(w, cookie)
	writeJSON(w, http.StatusOK, map[string]string{"redirect": "/consent?flow=" + f.ID})
}

var errReplay = errors.New("idp: passkey sign counter replayed")
