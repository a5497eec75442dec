package idp

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

// pendingCode gives number a pending activation code as the registration desk does (hashed,
// expiring at exp) and no password.
func (f *fixture) pendingCode(t *testing.T, number, code string, exp time.Time) store.Person {
	t.Helper()
	ctx := context.Background()
	p := store.Person{SubjectID: "s-" + number, PersonalNumber: number, GivenName: "Arta", FamilyName: "Krasniqi",
		Proofing: store.ProofingHigh, Status: store.EIDActive, Created: time.Now()}
	if err := f.db.CreatePerson(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := f.db.PutCredential(ctx, store.Credential{SubjectID: p.SubjectID, ActivationHash: store.HashActivationCode(code), ActivationExpires: exp}); err != nil {
		t.Fatal(err)
	}
	return p
}

// Activation: the right code once sets the password and opens a session in which the citizen
// may enrol passkeys; a used, expired or wrong code is refused, and guessing is slowed down
// like wrong passwords; a suspended person cannot activate.
func TestActivation(t *testing.T) {
	f := newFixtureWith(t, Config{Issuer: "localhost"}, false)
	const code = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX"
	f.pendingCode(t, "1000000001", code, time.Now().Add(time.Hour))
	f.pendingCode(t, "1000000002", code, time.Now().Add(-time.Minute))
	b := idptest.New(t, f.srv.URL)
	activate := func(number, code, pw string) idptest.Response {
		return b.Post("/activate", url.Values{"number": {number}, "code": {code}, "password": {pw}, "password2": {pw}})
	}
	if r := b.Get("/activate"); r.Status != http.StatusOK || !strings.Contains(r.Body, `name="code"`) {
		t.Fatalf("activation page: %d", r.Status)
	}
	// The letter's QR code opens the page with the code, which goes into the form, and only
	// there: nothing is activated by the address alone; what is not a code is left out.
	if r := b.Get("/activate?code=" + strings.ToLower(code) + "&lang=sq"); r.Status != http.StatusOK ||
		!strings.Contains(r.Body, `value="`+code+`"`) || strings.Contains(r.Body, `id="activated"`) {
		t.Fatalf("the activation page with ?code=: %d\n%s", r.Status, r.Body)
	}
	if r := b.Get("/activate?code=%22%3E%3Cscript%3E"); r.Status != http.StatusOK || strings.Contains(r.Body, "script&gt;") ||
		!strings.Contains(r.Body, `name="code" value=""`) {
		t.Fatalf("the activation page with a ?code= that is no code: %d\n%s", r.Status, r.Body)
	}
	if r := activate("1000000001", code, "short"); r.Status != http.StatusBadRequest {
		t.Errorf("short password: %d", r.Status)
	}
	if r := activate("1000000002", code, "a long new password"); r.Status != http.StatusUnauthorized {
		t.Errorf("expired code: %d", r.Status)
	}
	if r := activate("1000000001", "ABCD-EFGH-IJKL-MNOP-QRST-UVWY", "a long new password"); r.Status != http.StatusUnauthorized {
		t.Errorf("wrong code: %d", r.Status)
	}
	// Typed in lower case without dashes: the same code.
	r := activate("1000000001", strings.ToLower(strings.ReplaceAll(code, "-", "")), "a long new password")
	if r.Status != http.StatusOK || !strings.Contains(r.Body, `id="activated"`) {
		t.Fatalf("activation: %d %s", r.Status, r.Body)
	}
	if _, err := f.accounts.Password(context.Background(), "1000000001", "a long new password", "192.0.2.1"); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if page := b.Get("/account/passkeys"); page.Status != http.StatusOK || !strings.Contains(page.Body, `id="passkey-add"`) {
		t.Fatalf("passkey enrolment after activation: %d", page.Status)
	}
	if r := activate("1000000001", code, "another long password"); r.Status != http.StatusUnauthorized {
		t.Errorf("a used code: %d", r.Status)
	}
	// Guessing: after the free failures the personal number is locked.
	f.pendingCode(t, "1000000003", code, time.Now().Add(time.Hour))
	var last int
	for i := 0; i < failuresFree+1; i++ {
		last = activate("1000000003", "WRONG-CODE", "a long new password").Status
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("guessing: %d, want 429", last)
	}
	if r := activate("1000000003", code, "a long new password"); r.Status != http.StatusTooManyRequests {
		t.Errorf("the right code while locked: %d", r.Status)
	}
	// Suspended.
	f.pendingCode(t, "1000000004", code, time.Now().Add(time.Hour))
	if err := f.db.UpdatePerson(context.Background(), "s-1000000004", func(q store.Person) (store.Person, error) {
		q.Status = store.EIDSuspended
		return q, nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := activate("1000000004", code, "a long new password"); r.Status != http.StatusForbidden {
		t.Errorf("suspended: %d", r.Status)
	}
}
