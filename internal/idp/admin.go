package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
)

// Admin is the REST administration of clients and persons under /api/v1/admin, for callers with
// an access token carrying the admin scope (a client_credentials client given that scope). The
// same operations as `vula clients` and `vula persons`; described in api/openapi.yaml.
type Admin struct {
	p        *Provider
	accounts *Accounts
}

// NewAdmin makes the admin API.
func NewAdmin(p *Provider, accounts *Accounts) *Admin { return &Admin{p: p, accounts: accounts} }

// Register adds the admin routes.
func (a *Admin) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/clients", a.auth(a.listClients))
	mux.HandleFunc("POST /api/v1/admin/clients", a.auth(a.createClient))
	mux.HandleFunc("GET /api/v1/admin/clients/{id}", a.auth(a.getClient))
	mux.HandleFunc("DELETE /api/v1/admin/clients/{id}", a.auth(a.deleteClient))
	mux.HandleFunc("GET /api/v1/admin/persons", a.auth(a.listPersons))
	mux.HandleFunc("POST /api/v1/admin/persons", a.auth(a.createPerson))
	mux.HandleFunc("GET /api/v1/admin/persons/{id}", a.auth(a.getPerson))
	mux.HandleFunc("POST /api/v1/admin/persons/{id}/totp", a.auth(a.enrollTOTP))
}

// auth lets through requests whose bearer token is active and has the admin scope.
func (a *Admin) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.p.Bearer(r, "admin"); err != nil {
			auth.WriteBearerError(w, r, "vula-admin", "admin", err)
			return
		}
		next(w, r)
	}
}

// fail answers with err's problem (ErrInvalidClient and ErrInvalidPerson are invalid requests).
func fail(w http.ResponseWriter, r *http.Request, err error) {
	server.WriteError(w, r, err)
}

// decode reads a JSON body of at most 64 KiB, refusing unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", ErrInvalidClient, err)
	}
	return nil
}

// ClientView is a client as the API shows it: never the secret's hash.
type ClientView struct {
	ID                     string    `json:"client_id"`
	Name                   string    `json:"client_name,omitempty"`
	RedirectURIs           []string  `json:"redirect_uris"`
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes             []string  `json:"grant_types"`
	Scopes                 []string  `json:"scopes"`
	AuthMethod             string    `json:"token_endpoint_auth_method"`
	JWKS                   any       `json:"jwks,omitempty"`
	JWKSURI                string    `json:"jwks_uri,omitempty"`
	RequirePAR             bool      `json:"require_pushed_authorization_requests"`
	AllowedACR             []string  `json:"allowed_acr_values,omitempty"`
	SectorIdentifier       string    `json:"sector_identifier,omitempty"`
	OrganizationID         string    `json:"organization_id,omitempty"`
	Introspection          bool      `json:"introspection,omitempty"`
	IDTokenAlg             string    `json:"id_token_signed_response_alg,omitempty"`
	RequestObjectAlg       string    `json:"request_object_signing_alg,omitempty"`
	DPoP                   string    `json:"dpop,omitempty"`
	Profile                string    `json:"profile,omitempty"`
	Created                time.Time `json:"created"`
	Secret                 string    `json:"client_secret,omitempty"` // only in the answer to a create
}

// ViewClient is c as shown to operators.
func ViewClient(c store.Client) ClientView {
	v := ClientView{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		GrantTypes: c.GrantTypes, Scopes: c.Scopes, AuthMethod: c.TokenEndpointAuthMethod, JWKSURI: c.JWKSURI,
		RequirePAR: c.RequirePAR, AllowedACR: c.AllowedACR, SectorIdentifier: c.SectorIdentifier, OrganizationID: c.OrganizationID, Created: c.Created,
		Introspection: c.Policy.Introspection, IDTokenAlg: c.Policy.IDTokenAlg, RequestObjectAlg: c.Policy.RequestObjectAlg, DPoP: c.Policy.DPoP, Profile: c.Policy.Profile}
	if len(c.JWKS) > 0 {
		v.JWKS = json.RawMessage(c.JWKS)
	}
	return v
}

func (a *Admin) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := a.p.db.Clients(r.Context())
	if err != nil {
		fail(w, r, err)
		return
	}
	out := []ClientView{}
	for _, c := range cs {
		out = append(out, ViewClient(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Admin) createClient(w http.ResponseWriter, r *http.Request) {
	var in ClientView
	if err := decode(r, &in); err != nil {
		fail(w, r, err)
		return
	}
	spec := ClientSpec{ID: in.ID, Name: in.Name, RedirectURIs: in.RedirectURIs, PostLogoutRedirectURIs: in.PostLogoutRedirectURIs,
		GrantTypes: in.GrantTypes, Scopes: in.Scopes, AuthMethod: in.AuthMethod, JWKSURI: in.JWKSURI, RequirePAR: in.RequirePAR,
		AllowedACR: in.AllowedACR, SectorIdentifier: in.SectorIdentifier, OrganizationID: in.OrganizationID,
		Introspection: in.Introspection, IDTokenAlg: in.IDTokenAlg, RequestObjectAlg: in.RequestObjectAlg, DPoP: in.DPoP, Profile: in.Profile}
	if in.JWKS != nil {
		spec.JWKS, _ = json.Marshal(in.JWKS)
	}
	rec, secret, err := NewClient(spec)
	if err != nil {
		fail(w, r, err)
		return
	}
	rec.Created = a.p.now().UTC()
	if err := RegisterClient(r.Context(), a.p.db, rec); err != nil {
		fail(w, r, err)
		return
	}
	v := ViewClient(rec)
	v.Secret = secret
	w.Header().Set("Location", "/api/v1/admin/clients/"+rec.ID)
	writeJSON(w, http.StatusCreated, v)
}

func (a *Admin) getClient(w http.ResponseWriter, r *http.Request) {
	c, err := a.p.db.Client(r.Context(), r.PathValue("id"))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ViewClient(c))
}

func (a *Admin) deleteClient(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := a.p.db.Client(ctx, r.PathValue("id")); err != nil {
		fail(w, r, err)
		return
	}
	// Its tokens are void first, on every replica: a failure here deletes nothing (503).
	if err := a.p.VoidClientTokens(ctx, r.PathValue("id")); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.p.db.DeleteClient(ctx, r.PathValue("id")); err != nil {
		fail(w, r, err)
		return
	}
	a.p.st.cache.forget(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// PersonView is a person as the API shows them.
type PersonView struct {
	Subject        string    `json:"sub"`
	PersonalNumber string    `json:"personal_number"`
	GivenName      string    `json:"given_name"`
	FamilyName     string    `json:"family_name"`
	BirthDate      string    `json:"birthdate,omitempty"`
	Email          string    `json:"email,omitempty"`
	Official       bool      `json:"official"`
	Proofing       string    `json:"proofing,omitempty"`
	Status         string    `json:"status,omitempty"`
	TOTP           bool      `json:"totp"`
	Created        time.Time `json:"created"`
	OTPAuthURI     string    `json:"otpauth_uri,omitempty"` // only in the answer to an enrolment
}

// ViewPerson is p as shown to operators.
func (a *Accounts) ViewPerson(ctx context.Context, p store.Person) PersonView {
	return PersonView{Subject: p.SubjectID, PersonalNumber: p.PersonalNumber, GivenName: p.GivenName, FamilyName: p.FamilyName,
		BirthDate: p.BirthDate, Email: p.Email, Official: p.Official, Proofing: p.Proofing, Status: p.Status, TOTP: a.HasTOTP(ctx, p.SubjectID), Created: p.Created}
}

// personIn is a create request: the person and their first password.
type personIn struct {
	PersonalNumber string `json:"personal_number"`
	GivenName      string `json:"given_name"`
	FamilyName     string `json:"family_name"`
	BirthDate      string `json:"birthdate"`
	Email          string `json:"email"`
	Official       bool   `json:"official"`
	Password       string `json:"password"`
}

func (a *Admin) listPersons(w http.ResponseWriter, r *http.Request) {
	ps, err := a.p.db.Persons(r.Context())
	if err != nil {
		fail(w, r, err)
		return
	}
	out := []PersonView{}
	for _, p := range ps {
		out = append(out, a.accounts.ViewPerson(r.Context(), p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Admin) createPerson(w http.ResponseWriter, r *http.Request) {
	var in personIn
	if err := decode(r, &in); err != nil {
		fail(w, r, fmt.Errorf("%w: %v", ErrInvalidPerson, err))
		return
	}
	p, err := a.accounts.CreatePerson(r.Context(), store.Person{PersonalNumber: in.PersonalNumber, GivenName: in.GivenName,
		FamilyName: in.FamilyName, BirthDate: in.BirthDate, Email: in.Email, Official: in.Official}, in.Password)
	if err != nil {
		fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/admin/persons/"+p.SubjectID)
	writeJSON(w, http.StatusCreated, a.accounts.ViewPerson(r.Context(), p))
}

// person finds by personal number or subject id.
func (a *Admin) person(r *http.Request) (store.Person, error) {
	id := r.PathValue("id")
	if p, err := a.p.db.PersonByPersonalNumber(r.Context(), id); err == nil {
		return p, nil
	}
	return a.p.db.Person(r.Context(), id)
}

func (a *Admin) getPerson(w http.ResponseWriter, r *http.Request) {
	p, err := a.person(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.accounts.ViewPerson(r.Context(), p))
}

func (a *Admin) enrollTOTP(w http.ResponseWriter, r *http.Request) {
	p, err := a.person(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	key, err := a.accounts.NewTOTP(p)
	if err == nil {
		err = a.accounts.EnrollTOTP(r.Context(), p.SubjectID, key)
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	v := a.accounts.ViewPerson(r.Context(), p)
	v.OTPAuthURI = key.URL()
	writeJSON(w, http.StatusOK, v)
}
