package idp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
)

// Activation: the citizen redeems the code of the letter a registration desk gave them
// (package eid) with their personal number, and sets a password. The code is used once and
// refused after it expires; wrong attempts count against the personal number and the address
// like wrong passwords (the same back-off). An activated citizen has a single sign-on session
// marked as such, in which they enrol their authenticator app and passkeys.

// ErrActivation is a personal number and code that do not match a pending, unexpired code.
var ErrActivation = errors.New("idp: unknown, used or expired activation code")

// Activate checks number's activation code from address ip and sets password; the code is
// spent. ErrActivation when it does not match, ErrLockedOut after too many failures.
func (a *Accounts) Activate(ctx context.Context, number, code, password, ip string) (store.Person, error) {
	id := throttleKey("activate:" + number)
	ipID := "ip:" + ip
	for _, k := range []string{id, ipID} {
		if _, err := a.eph.Get(ctx, "idp:lock:"+k); err == nil {
			return store.Person{}, ErrLockedOut
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Person{}, err
		}
	}
	fail := func() (store.Person, error) {
		if err := a.failed(ctx, ipID, ipFailuresFree); err != nil {
			return store.Person{}, err
		}
		if err := a.failed(ctx, id, failuresFree); err != nil {
			return store.Person{}, err
		}
		return store.Person{}, ErrActivation
	}
	p, err := a.db.PersonByPersonalNumber(ctx, strings.TrimSpace(number))
	if errors.Is(err, store.ErrNotFound) {
		return fail()
	} else if err != nil {
		return store.Person{}, err
	}
	if !active(p) {
		return store.Person{}, ErrInactive
	}
	hash, err := HashPassword(password)
	if err != nil {
		return store.Person{}, err
	}
	want := store.HashActivationCode(code)
	err = a.db.UpdateCredential(ctx, p.SubjectID, func(c store.Credential) (store.Credential, error) {
		if len(c.ActivationHash) == 0 || subtle.ConstantTimeCompare(c.ActivationHash, want) != 1 || !a.now().Before(c.ActivationExpires) {
			return c, ErrActivation
		}
		c.ActivationHash, c.ActivationExpires = nil, time.Time{} // used once
		c.PasswordHash, c.Updated = hash, a.now().UTC()
		return c, nil
	})
	if errors.Is(err, ErrActivation) || errors.Is(err, store.ErrNotFound) {
		return fail()
	}
	if err != nil {
		return store.Person{}, err
	}
	return p, a.eph.Delete(ctx, "idp:fail:"+id)
}

type activateData struct {
	Number, Code, Error string
	Done                bool
}

// activationCodeRe is what a printed activation code can look like (base32 in groups): the
// page puts only such a ?code= into its form.
var activationCodeRe = regexp.MustCompile(`^[A-Za-z2-7]{4}(-?[A-Za-z2-7]{4}){0,9}$`)

// activatePage is the form. The letter's QR code opens it with ?code=: the code is put in the
// form for the citizen to complete and send, never sent on its own (a code in an address may
// have been read by someone else; the personal number and the new password are the citizen's).
func (g *Pages) activatePage(w http.ResponseWriter, r *http.Request) {
	var data activateData
	if c := r.URL.Query().Get("code"); activationCodeRe.MatchString(c) {
		data.Code = strings.ToUpper(c)
	}
	g.web.Render(w, r, http.StatusOK, "activate", data)
}

func (g *Pages) activate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	number, pw := strings.TrimSpace(r.PostFormValue("number")), r.PostFormValue("password")
	data := activateData{Number: number}
	if len(pw) < 10 || pw != r.PostFormValue("password2") {
		data.Error = "activate.password"
		g.web.Render(w, r, http.StatusBadRequest, "activate", data)
		return
	}
	p, err := g.accounts.Activate(ctx, number, r.PostFormValue("code"), pw, clientIP(r))
	switch {
	case errors.Is(err, ErrActivation):
		data.Error = "activate.bad"
		g.web.Render(w, r, http.StatusUnauthorized, "activate", data)
		return
	case errors.Is(err, ErrLockedOut):
		data.Error = "login.locked"
		g.web.Render(w, r, http.StatusTooManyRequests, "activate", data)
		return
	case errors.Is(err, ErrInactive):
		data.Error = "login.inactive"
		g.web.Render(w, r, http.StatusForbidden, "activate", data)
		return
	case err != nil:
		g.unavailable(w, r, err)
		return
	}
	if g.p.audit != nil {
		if _, err := g.p.audit.Append(ctx, audit.Event{Actor: p.SubjectID, Action: "idp.activate", Result: "ok", Subject: p.SubjectID}); err != nil {
			g.unavailable(w, r, err)
			return
		}
	}
	// A session for enrolling authenticators: the letter was handed over in person.
	s := ssoSession{ID: randomID(), Subject: p.SubjectID, AMR: []string{"pwd"}, ACR: LoALow, AuthTime: g.p.now().UTC().Truncate(time.Second),
		CSRF: randomID(), Activation: true}
	b, _ := json.Marshal(s)
	if err := g.p.eph.Put(ctx, "idp:sso:"+s.ID, b, flowTTL); err != nil {
		g.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: s.ID, Path: "/", MaxAge: int(flowTTL.Seconds()),
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode})
	g.web.Render(w, r, http.StatusOK, "activate", activateData{Done: true, Number: number})
}
