package idp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/signing"
)

// Credential authorization through OAuth (CSC API v2 §8.4.2, RFC 9396): a signing application
// asks the official to authorize signatures over exact document digests on one credential,
// either with scope "credential" and the CSC request parameters (credentialID, numSignatures,
// hashes, hashAlgorithmOID) or with authorization_details of type "credential"
// (credentialID, documentDigests [{hash, label}], hashAlgorithmOID), best pushed through PAR.
// The login for such a request is always fresh (no single sign-on), with password and TOTP
// (substantial), and only an official may complete it: that login is the official's
// two-factor authorization of exactly those digests (sole control, SCAL2). The consent page
// shows what is signed and is never remembered. The access token's session carries the
// checked details, the token lives at most CredentialTokenTTL, gets no refresh token, and the
// token response echoes authorization_details (RFC 9396 §7).

// CredentialScope is the scope of a credential authorization token (CSC API v2 §8.4.2).
const CredentialScope = "credential"

// CredentialDetailsType is the authorization_details type of a credential authorization.
const CredentialDetailsType = "credential"

// CredentialTokenTTL bounds the lifetime of an access token that authorizes signatures.
const CredentialTokenTTL = 5 * time.Minute

// MaxDocumentDigests bounds the digests of one credential authorization.
const MaxDocumentDigests = 100

// maxLabel bounds a document's label (characters), which the consent page shows.
const maxLabel = 200

// credentialHashes are the hash algorithms a credential authorization may name, with the
// length of their digests.
var credentialHashes = map[string]struct {
	name string
	size int
}{
	"2.16.840.1.101.3.4.2.1": {"SHA-256", 32},
	"2.16.840.1.101.3.4.2.2": {"SHA-384", 48},
	"2.16.840.1.101.3.4.2.3": {"SHA-512", 64},
}

// DocumentDigest and CredentialAuthorization are auth's: the services read them from a Caller.
type (
	DocumentDigest          = auth.DocumentDigest
	CredentialAuthorization = auth.CredentialAuthorization
)

// ErrCredentialRefused: the credential named is not one the official may authorize now
// (another's, unknown, revoked, expired).
var ErrCredentialRefused = errors.New("idp: the credential cannot be authorized by this person")

// CredentialAuthorizer is the signing service as the identity provider needs it for
// credential authorization (implemented by the CSC service).
type CredentialAuthorizer interface {
	// CheckCredential MUST return nil only when credentialID names one of subject's own
	// credentials, valid now; an error wrapping ErrCredentialRefused when it does not; any
	// other error when it cannot tell.
	CheckCredential(ctx context.Context, subject, credentialID string) error
	// RecordAuthorization appends the authorization's audit event, with its digests: granted
	// when refusal is "", refused for that reason otherwise. It returns the event's sequence
	// number; a granted authorization whose event could not be written MUST NOT be issued.
	RecordAuthorization(ctx context.Context, subject, clientID string, a CredentialAuthorization, refusal string) (int64, error)
}

// SetCredentials enables credential authorization with a; without it such requests are
// refused. Call it before serving.
func (p *Provider) SetCredentials(a CredentialAuthorizer) { p.creds = a }

// OffersCredentialAuthorization reports whether credential authorization through OAuth is on.
func (p *Provider) OffersCredentialAuthorization() bool { return p.creds != nil }

// errDetails is RFC 9396's invalid_authorization_details.
func errDetails(hint string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "invalid_authorization_details", CodeField: http.StatusBadRequest,
		DescriptionField: "The authorization details are not valid.", HintField: hint}
}

// The CSC request parameters of the scope form (§8.4.2).
var credentialParams = []string{"credentialID", "numSignatures", "hashes", "hashAlgorithmOID"}

// credentialRequest reads the credential authorization an authorization request asks for: nil
// when it asks for none, an OAuth error (invalid_authorization_details or invalid_request) when
// it is not valid. Whether the credential is the person's is checked after the login.
func credentialRequest(ar fosite.AuthorizeRequester) (*CredentialAuthorization, error) {
	form := ar.GetRequestForm()
	rawDetails := form.Get("authorization_details")
	scopes := ar.GetRequestedScopes()
	scoped := scopes.Has(CredentialScope)
	hasParams := slices.ContainsFunc(credentialParams, func(k string) bool { return form.Has(k) })
	if rawDetails == "" && !scoped {
		if hasParams {
			return nil, fosite.ErrInvalidRequest.WithHint("The CSC credential parameters need scope credential.")
		}
		return nil, nil
	}
	for _, s := range scopes {
		if s != CredentialScope && s != "openid" {
			// CSC: the service and credential scopes are used separately.
			return nil, fosite.ErrInvalidRequest.WithHintf("Scope %q cannot be asked together with a credential authorization.", s)
		}
	}
	if !slices.Contains(ar.GetClient().GetScopes(), CredentialScope) {
		return nil, fosite.ErrInvalidScope.WithHint("This client may not ask for credential authorization.")
	}
	if rawDetails != "" {
		if scoped || hasParams {
			return nil, fosite.ErrInvalidRequest.WithHint("Give authorization_details or scope credential with its parameters, not both.")
		}
		a, err := ParseAuthorizationDetails([]byte(rawDetails))
		if err != nil {
			return nil, errDetails(err.Error())
		}
		return a, nil
	}
	a, err := parseCredentialParams(form)
	if err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint(err.Error())
	}
	return a, nil
}

// rawDetail is an authorization_details entry as sent; unknown members are refused.
type rawDetail struct {
	Type               string      `json:"type"`
	CredentialID       string      `json:"credentialID"`
	HashAlgorithmOID   string      `json:"hashAlgorithmOID"`
	DocumentDigests    []rawDigest `json:"documentDigests"`
	SignatureQualifier string      `json:"signatureQualifier"`
}

type rawDigest struct {
	Hash  string `json:"hash"`
	Label string `json:"label"`
}

// maxDetails bounds the authorization_details text: 100 SHA-512 digests with long labels fit.
const maxDetails = 64 << 10

// ParseAuthorizationDetails reads and checks an authorization_details parameter (a JSON array,
// RFC 9396 §2) holding exactly one entry of type credential: a credentialID, a known
// hashAlgorithmOID, 1 to MaxDocumentDigests documentDigests whose hashes (base64) have that
// algorithm's length and are all different, labels of at most 200 printable characters.
// signatureQualifier may only be eu_eidas_qes (the officials' certificates are qualified);
// any other member is refused. Every error wraps signing.ErrInvalid; its text, without a
// prefix, is the hint the client gets.
func ParseAuthorizationDetails(raw []byte) (*CredentialAuthorization, error) {
	if len(raw) > maxDetails {
		return nil, invalid("authorization_details is longer than %d bytes", maxDetails)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, invalid("authorization_details is not a JSON array of objects")
	}
	if len(entries) != 1 {
		return nil, invalid("authorization_details must hold exactly one entry, of type credential")
	}
	dec := json.NewDecoder(bytes.NewReader(entries[0]))
	dec.DisallowUnknownFields()
	var d rawDetail
	if err := dec.Decode(&d); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, invalid("authorization_details: member %q has the wrong type", ute.Field)
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return nil, invalid("authorization_details: unknown member %s", strings.TrimPrefix(msg, "json: unknown field "))
		}
		return nil, invalid("authorization_details: the entry is not a JSON object")
	}
	if dec.More() {
		return nil, invalid("authorization_details: trailing data")
	}
	if d.Type != CredentialDetailsType {
		return nil, invalid("authorization_details type %q is not supported (want credential)", truncate(d.Type))
	}
	if d.SignatureQualifier != "" && d.SignatureQualifier != "eu_eidas_qes" {
		return nil, invalid("signatureQualifier %q is not offered (eu_eidas_qes is)", truncate(d.SignatureQualifier))
	}
	hashes := make([][]byte, len(d.DocumentDigests))
	labels := make([]string, len(d.DocumentDigests))
	for i, dd := range d.DocumentDigests {
		h, err := decodeDigest(dd.Hash)
		if err != nil {
			return nil, invalid("documentDigests[%d].hash: %v", i, err)
		}
		if err := checkLabel(dd.Label); err != nil {
			return nil, invalid("documentDigests[%d].label: %v", i, err)
		}
		hashes[i], labels[i] = h, dd.Label
	}
	return newCredentialAuthorization(d.CredentialID, d.HashAlgorithmOID, hashes, labels)
}

// parseCredentialParams reads the scope form: credentialID, numSignatures (as many as hashes),
// hashes (base64url, comma-separated) and hashAlgorithmOID.
func parseCredentialParams(form url.Values) (*CredentialAuthorization, error) {
	for _, k := range credentialParams {
		if len(form[k]) > 1 {
			return nil, invalid("parameter %s is given more than once", k)
		}
	}
	if form.Get("hashes") == "" {
		return nil, invalid("scope credential needs the hashes parameter")
	}
	parts := strings.Split(form.Get("hashes"), ",")
	if len(parts) > MaxDocumentDigests {
		return nil, invalid("more than %d hashes", MaxDocumentDigests)
	}
	n, err := strconv.Atoi(form.Get("numSignatures"))
	if err != nil || n != len(parts) {
		return nil, invalid("numSignatures must be the number of hashes (%d)", len(parts))
	}
	hashes := make([][]byte, len(parts))
	for i, p := range parts {
		if hashes[i], err = decodeDigest(p); err != nil {
			return nil, invalid("hashes[%d]: %v", i, err)
		}
	}
	return newCredentialAuthorization(form.Get("credentialID"), form.Get("hashAlgorithmOID"), hashes, make([]string, len(hashes)))
}

func newCredentialAuthorization(credentialID, oid string, hashes [][]byte, labels []string) (*CredentialAuthorization, error) {
	if credentialID == "" || len(credentialID) > 64 || strings.ContainsFunc(credentialID, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, invalid("credentialID is missing or not valid")
	}
	alg, ok := credentialHashes[oid]
	if !ok {
		return nil, invalid("hashAlgorithmOID %q is not supported (SHA-256, SHA-384 or SHA-512)", truncate(oid))
	}
	if len(hashes) == 0 || len(hashes) > MaxDocumentDigests {
		return nil, invalid("want 1 to %d document digests, got %d", MaxDocumentDigests, len(hashes))
	}
	a := &CredentialAuthorization{Type: CredentialDetailsType, CredentialID: credentialID, HashAlgorithmOID: oid}
	for i, h := range hashes {
		if len(h) != alg.size {
			return nil, invalid("digest %d has %d bytes, %s digests have %d", i, len(h), alg.name, alg.size)
		}
		for j := range i {
			if bytes.Equal(h, hashes[j]) {
				return nil, invalid("digest %d is the same as digest %d", i, j)
			}
		}
		a.DocumentDigests = append(a.DocumentDigests, DocumentDigest{Hash: h, Label: labels[i]})
	}
	return a, nil
}

// decodeDigest reads a base64 digest: CSC writes standard base64 in JSON and base64url in
// query parameters; both are accepted, padded or not.
func decodeDigest(s string) ([]byte, error) {
	if s == "" || len(s) > 128 {
		return nil, invalid("missing or too long")
	}
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, invalid("not base64")
	}
	return b, nil
}

func checkLabel(l string) error {
	if !utf8.ValidString(l) || utf8.RuneCountInString(l) > maxLabel {
		return invalid("not UTF-8 text of at most %d characters", maxLabel)
	}
	if strings.ContainsFunc(l, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return invalid("holds control or invisible characters")
	}
	return nil
}

// detailsError is a refused credential authorization request; its text is the OAuth hint.
type detailsError struct{ msg string }

func (e *detailsError) Error() string { return e.msg }
func (e *detailsError) Unwrap() error { return signing.ErrInvalid }

func invalid(format string, args ...any) error {
	return &detailsError{msg: fmt.Sprintf(format, args...)}
}

// truncate shortens a value quoted back in an error.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// --- the consent page's view of a credential authorization

type documentLine struct {
	Label, Digest, Full string
}

type credentialConsentData struct {
	Flow, CSRF, Client, Credential, Algorithm string
	Documents                                 []documentLine
	Minutes                                   int
}

func credentialConsent(f *flow, client string) credentialConsentData {
	a := f.Credential
	d := credentialConsentData{Flow: f.ID, CSRF: f.CSRF, Client: client, Credential: a.CredentialID,
		Algorithm: credentialHashes[a.HashAlgorithmOID].name, Minutes: int(CredentialTokenTTL / time.Minute)}
	for _, dd := range a.DocumentDigests {
		full := fmt.Sprintf("%x", dd.Hash)
		d.Documents = append(d.Documents, documentLine{Label: dd.Label, Digest: full[:8] + "…" + full[len(full)-8:], Full: full})
	}
	return d
}

// --- the pages' steps for a credential authorization

// credentialRequest is credentialRequest when the provider offers credential authorization.
func (g *Pages) credentialRequest(ar fosite.AuthorizeRequester) (*CredentialAuthorization, error) {
	a, err := credentialRequest(ar)
	if err == nil && a != nil && g.p.creds == nil {
		return nil, errDetails("Credential authorization is not offered here.")
	}
	return a, err
}

// reached checks that the login reached the level the flow requires (a browser that skips
// the one-time code page gets no further); when not, the client hears so.
func (g *Pages) reached(w http.ResponseWriter, r *http.Request, f *flow) bool {
	if f.ACR != "" && levelOf(f.ACR) >= levelOf(f.Required) {
		return true
	}
	g.finishError(w, r, f, errUnmet("The login did not reach "+f.Required+"."))
	return false
}

// credentialRefused checks, once the person is known, that they are an official and that the
// credential is their own and valid; when not, the refusal is recorded and sent to the client.
func (g *Pages) credentialRefused(w http.ResponseWriter, r *http.Request, f *flow) bool {
	ctx := r.Context()
	p, err := g.p.db.Person(ctx, f.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return true
	}
	if !p.Official {
		g.finishError(w, r, f, fosite.ErrAccessDenied.WithHint("Only an official can authorize a signing credential."))
		return true
	}
	err = g.p.creds.CheckCredential(ctx, f.Subject, f.Credential.CredentialID)
	if errors.Is(err, ErrCredentialRefused) {
		if _, aerr := g.p.creds.RecordAuthorization(ctx, f.Subject, f.Client, *f.Credential, "invalid_authorization_details: "+err.Error()); aerr != nil {
			g.p.log.ErrorContext(ctx, "audit of a refused credential authorization", "err", aerr)
		}
		g.finishError(w, r, f, errDetails("The credential is not one of this official's valid credentials."))
		return true
	}
	if err != nil {
		g.unavailable(w, r, err)
		return true
	}
	return false
}

// finishCredential issues the code of a credential authorization the official allowed: the
// credential is checked again, the authorization is in the audit log before the code goes out,
// and the session carries the details and the scope credential.
func (g *Pages) finishCredential(w http.ResponseWriter, r *http.Request, f *flow) {
	if g.p.creds == nil || g.credentialRefused(w, r, f) {
		return
	}
	// Claimed before the event is written: a second submission records nothing.
	ar, err := g.takeRequest(r.Context(), f)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	seq, err := g.p.creds.RecordAuthorization(r.Context(), f.Subject, f.Client, *f.Credential, "")
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.issue(w, r, f, ar, func(s *Session, ar fosite.AuthorizeRequester) {
		ar.GrantScope(CredentialScope)
		s.Credential, s.AuthorizationSeq = f.Credential, seq
		s.JWTClaims.Extra["authorization_details"] = []*CredentialAuthorization{f.Credential}
	})
}
