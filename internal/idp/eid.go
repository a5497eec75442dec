package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
)

// The level of assurance of a login (Regulation 2015/1502, annex §2) is the lower of how the
// person's identity was proofed and what the authenticator used reaches: a passkey that counts
// as high gives a self-registered person only low.

// proofingLoA is the level of assurance a proofing level allows at most. A person stored before
// proofing was recorded ("") counts as substantial: such persons were made by an operator at
// the command line (see the 0005 migration).
func proofingLoA(proofing string) string {
	switch proofing {
	case store.ProofingLow:
		return LoALow
	case store.ProofingHigh:
		return LoAHigh
	}
	return LoASubstantial
}

// minLoA is the lower of two levels; an unknown level counts as none (low).
func minLoA(a, b string) string {
	return levels[max(0, min(levelOf(a), levelOf(b)))]
}

// ErrInactive is an eID means that is suspended or revoked: it does not log in.
var ErrInactive = errors.New("idp: the eID means is suspended or revoked")

// active reports whether p's eID means may log in (a person stored before the status was kept
// has "" and is active).
func active(p store.Person) bool { return p.Status == "" || p.Status == store.EIDActive }

// Auditor appends an event to the audit log (implemented by *audit.Log).
type Auditor interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

var _ Auditor = (*audit.Log)(nil)

func auditEvent(actor, action, result string, detail []byte) audit.Event {
	return audit.Event{Actor: actor, Action: action, Result: result, Detail: detail, Subject: actor}
}

// loginRecord is the detail of an idp.login audit event.
type loginRecord struct {
	Client        string   `json:"client"`
	ACR           string   `json:"acr"`
	AMR           []string `json:"amr"`
	Proofing      string   `json:"proofing"`
	Authenticator string   `json:"authenticator_level"`
}

// recordLogin writes the login's audit event; a login that could not be recorded does not go on.
func (p *Provider) recordLogin(ctx context.Context, f *flow, proofing string) error {
	if p.audit == nil {
		return nil
	}
	detail, _ := json.Marshal(loginRecord{Client: f.Client, ACR: f.ACR, AMR: f.AMR, Proofing: proofing, Authenticator: f.AuthLevel})
	if _, err := p.audit.Append(ctx, audit.Event{Actor: f.Subject, Action: "idp.login", Result: f.ACR, Detail: detail, Subject: f.Subject}); err != nil {
		return fmt.Errorf("idp: audit of a login: %w", err)
	}
	return nil
}

// LoginMethod is one way to log in that the login page offers: the password (with a second
// factor), a passkey, and whatever else is added with Pages.AddMethod (the ID card). The page
// lists only the methods that can reach the level the login asks for.
type LoginMethod struct {
	// ID names the method in the page ("password", "passkey", "card") and its texts
	// (login.method.<ID>).
	ID string
	// Reaches is the highest level of assurance the method can give.
	Reaches string
	// Href is where a method of its own pages starts; the flow id is appended as ?flow=.
	// Empty for the methods the login page itself carries.
	Href string
}

// AddMethod offers another way to log in on the login page (say, the ID card's endpoint on its
// own TLS listener). Call it before serving.
func (g *Pages) AddMethod(m LoginMethod) { g.methods = append(g.methods, m) }

// methodsFor are the methods that can reach required.
func (g *Pages) methodsFor(required string) []LoginMethod {
	var out []LoginMethod
	for _, m := range g.methods {
		if levelOf(m.Reaches) >= levelOf(required) {
			out = append(out, m)
		}
	}
	return out
}
