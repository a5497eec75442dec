package idp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
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

// The contract with the signing service is auth's; these are its names here.
const (
	CredentialScope       = auth.CredentialScope
	CredentialDetailsType = auth.CredentialDetailsType
	CredentialTokenTTL    = auth.CredentialTokenTTL
)

type (
	DocumentDigest          = auth.DocumentDigest
	CredentialAuthorization = auth.CredentialAuthorization
)

// ErrCredentialRefused is auth.ErrCredentialRefused.
var ErrCredentialRefused = auth.ErrCredentialRefused

// OffersCredentialAuthorization reports whether credential authorization through OAuth is on
// (Config.Credentials is set).
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
// it is not valid. The signing service's parse reads the details (nil parse: credential
// authorization is not offered). Whether the credential is the person's is checked after the
// login.
func credentialRequest(parse auth.CredentialRequests, ar fosite.AuthorizeRequester) (*CredentialAuthorization, error) {
	form := ar.GetRequestForm()
	rawDetails := form.Get("authorization_details")
	scopes := ar.GetRequestedScopes()
	scoped := scopes.Has(CredentialScope)
	hasParams := slices.ContainsFunc(credentialParams, func(k string) bool { return form.Has(k) })
	if auth.IsOpenIDCredentialDetails(rawDetails) {
		return nil, nil // the wallet's (walletRequest)
	}
	if rawDetails != "" && !hasDetailsType(rawDetails, CredentialDetailsType) {
		return nil, errDetails("The authorization_details types are not supported here: want " + CredentialDetailsType + " or " + auth.OpenIDCredentialType + ".")
	}
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
		if parse == nil {
			return nil, errDetails("Credential authorization is not offered here.")
		}
		a, err := parse.ParseDetails([]byte(rawDetails))
		if err != nil {
			return nil, errDetails(err.Error())
		}
		return a, nil
	}
	if parse == nil {
		return nil, errDetails("Credential authorization is not offered here.")
	}
	a, err := parse.ParseParams(form)
	if err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint(err.Error())
	}
	return a, nil
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

func credentialConsent(creds auth.CredentialRequests, f *flow, client string) credentialConsentData {
	a := f.Credential
	d := credentialConsentData{Flow: f.ID, CSRF: f.CSRF, Client: client, Credential: a.CredentialID,
		Algorithm: creds.HashName(a.HashAlgorithmOID), Minutes: int(CredentialTokenTTL / time.Minute)}
	for _, dd := range a.DocumentDigests {
		full := fmt.Sprintf("%x", dd.Hash)
		d.Documents = append(d.Documents, documentLine{Label: dd.Label, Digest: full[:8] + "…" + full[len(full)-8:], Full: full})
	}
	return d
}

// --- the pages' steps for a credential authorization

// credentialRequest is credentialRequest with the provider's signing service.
func (g *Pages) credentialRequest(ar fosite.AuthorizeRequester) (*CredentialAuthorization, error) {
	return credentialRequest(g.p.creds, ar)
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

// hasDetailsType reports whether authorization_details raw has an entry of type typ.
func hasDetailsType(raw, typ string) bool {
	var ds []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal([]byte(raw), &ds) != nil {
		return true // not parsable: the signing service's parser says why
	}
	return slices.ContainsFunc(ds, func(d struct {
		Type string `json:"type"`
	}) bool {
		return d.Type == typ
	})
}
