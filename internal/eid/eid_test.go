package eid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

type env struct {
	desk *Desk
	db   *sqlstore.DB
	now  time.Time
}

// newEnv is a desk on a real SQLite store and audit log, with one registrar ("reg") and one
// official without the role ("clerk").
func newEnv(t testing.TB) *env {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf := filepath.Join(dir, "k")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	raw, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "vula.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ak, err := raw.CreateKey(ctx, hsm.KeySpec{Label: "audit", Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(ctx, db, raw, ak.URI, audit.Options{}, time.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, now: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	e.desk = New(Config{CodeTTL: 10 * 24 * time.Hour}, db, l, func() time.Time { return e.now })
	for _, p := range []store.Person{
		{SubjectID: "reg", PersonalNumber: "9000000001", GivenName: "Besa", FamilyName: "Gashi", Roles: []string{store.RoleRegistrar}, Status: store.EIDActive},
		{SubjectID: "clerk", PersonalNumber: "9000000002", GivenName: "Dren", FamilyName: "Hoxha", Official: true, Status: store.EIDActive},
	} {
		if err := db.CreatePerson(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

var arta = Registration{PersonalNumber: "1234567890", GivenName: "Arta", FamilyName: "Krasniqi", BirthDate: "1990-04-12",
	DocumentNumber: "P0012345", DocumentExpiry: "2031-01-01"}

// A registrar registers a person proofed at high with a letter whose code is kept only as a
// hash and expires; a reset replaces the code and clears the credentials; suspend, resume,
// revoke change the status (revoked is final); every action is in the person's history with
// the registrar as actor. Someone without the role is refused everything.
func TestDesk(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.desk.Register(ctx, "clerk", arta); !errors.Is(err, ErrNotRegistrar) {
		t.Fatalf("an official without the role registered a person: %v", err)
	}
	bad := arta
	bad.DocumentExpiry = "2020-01-01"
	if _, err := e.desk.Register(ctx, "reg", bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an expired document: %v", err)
	}
	l, err := e.desk.Register(ctx, "reg", arta)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Person
	if p.Proofing != store.ProofingHigh || p.ProofedBy != "reg" || p.DocumentNumber != "P0012345" || !l.Expires.Equal(e.now.Add(10*24*time.Hour)) {
		t.Fatalf("registered %+v, letter until %v", p, l.Expires)
	}
	if len(strings.ReplaceAll(l.Code, "-", "")) != 24 {
		t.Fatalf("code %q", l.Code)
	}
	c, err := e.db.Credential(ctx, p.SubjectID)
	if err != nil || !bytes.Equal(c.ActivationHash, store.HashActivationCode(strings.ToLower(l.Code))) || bytes.Contains(c.ActivationHash, []byte(l.Code)) {
		t.Fatalf("stored credential %+v, %v", c, err)
	}
	// A reset: a new code, the old one and the password gone.
	if err := e.db.UpdateCredential(ctx, p.SubjectID, func(c store.Credential) (store.Credential, error) { c.PasswordHash = "x"; return c, nil }); err != nil {
		t.Fatal(err)
	}
	l2, err := e.desk.Reset(ctx, "reg", p.SubjectID)
	if err != nil || l2.Code == l.Code {
		t.Fatalf("reset: %v", err)
	}
	if c, _ := e.db.Credential(ctx, p.SubjectID); c.PasswordHash != "" || !bytes.Equal(c.ActivationHash, store.HashActivationCode(l2.Code)) {
		t.Fatalf("after reset: %+v", c)
	}
	for _, st := range []string{store.EIDSuspended, store.EIDActive, store.EIDRevoked} {
		if err := e.desk.SetStatus(ctx, "reg", p.SubjectID, st); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.db.Person(ctx, p.SubjectID); got.Status != st {
			t.Fatalf("status %s, want %s", got.Status, st)
		}
	}
	if err := e.desk.SetStatus(ctx, "reg", p.SubjectID, store.EIDActive); !errors.Is(err, ErrRevoked) {
		t.Fatalf("resumed a revoked means: %v", err)
	}
	if _, err := e.desk.Reset(ctx, "reg", p.SubjectID); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a letter for a revoked means: %v", err)
	}
	if c, _ := e.db.Credential(ctx, p.SubjectID); c.ActivationHash != nil {
		t.Fatal("a revoked means kept its activation code")
	}
	if err := e.desk.SetStatus(ctx, "clerk", p.SubjectID, store.EIDSuspended); !errors.Is(err, ErrNotRegistrar) {
		t.Fatalf("suspended by a non-registrar: %v", err)
	}
	h, err := e.desk.History(ctx, "reg", p.SubjectID)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range h {
		if r.Actor != "reg" {
			t.Errorf("%s by %q", r.Action, r.Actor)
		}
		var d map[string]string
		json.Unmarshal(r.Detail, &d)
		if d["subject"] != p.SubjectID {
			t.Errorf("%s about %q", r.Action, d["subject"])
		}
		actions = append(actions, r.Action)
	}
	want := "eid.register eid.letter eid.reset eid.letter eid.suspend eid.resume eid.revoke"
	if strings.Join(actions, " ") != want {
		t.Fatalf("history %v, want %s", actions, want)
	}
	if _, err := e.desk.History(ctx, "clerk", p.SubjectID); !errors.Is(err, ErrNotRegistrar) {
		t.Fatalf("history for a non-registrar: %v", err)
	}
}

// TestDeskLookupsAudited: a registrar's search for a person and each look at their record are in
// the audit log before they are answered, with the registrar as actor and the person as subject
// (so the person's history shows them), and the personal number searched for is nowhere in the
// log, neither for a hit nor for a miss. Before, reading a person's data left no trace.
func TestDeskLookupsAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, err := e.desk.Register(ctx, "reg", arta)
	if err != nil {
		t.Fatal(err)
	}
	sub := l.Person.SubjectID
	if _, err := e.desk.Find(ctx, "reg", " "+arta.PersonalNumber+" "); err != nil {
		t.Fatal(err)
	}
	if _, err := e.desk.Look(ctx, "reg", sub); err != nil {
		t.Fatal(err)
	}
	const unknown = "5550001112"
	if _, err := e.desk.Find(ctx, "reg", unknown); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown number: %v", err)
	}
	if _, err := e.desk.Find(ctx, "clerk", arta.PersonalNumber); !errors.Is(err, ErrNotRegistrar) {
		t.Fatalf("a search by a non-registrar: %v", err)
	}
	if _, err := e.desk.Look(ctx, "clerk", sub); !errors.Is(err, ErrNotRegistrar) {
		t.Fatalf("a look by a non-registrar: %v", err)
	}

	h, err := e.desk.History(ctx, "reg", sub)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range h {
		actions = append(actions, r.Action)
	}
	if got, want := strings.Join(actions, " "), "eid.register eid.letter eid.find eid.view"; got != want {
		t.Fatalf("history %s, want %s", got, want)
	}
	found, viewed := h[2], h[3]
	if found.Actor != "reg" || found.Subject != sub || found.Result != "ok" || !strings.Contains(string(found.Detail), `"by":"personal number"`) ||
		viewed.Actor != "reg" || viewed.Subject != sub {
		t.Fatalf("find %+v, view %+v", found, viewed)
	}

	all, err := e.db.AuditRecords(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var misses int
	for _, r := range all {
		if r.Action == "eid.find" && r.Result == "not_found" {
			misses++
			if r.Actor != "reg" || r.Subject != "" {
				t.Errorf("a miss recorded as %+v", r)
			}
		}
		if r.Actor == "clerk" {
			t.Errorf("a refused lookup recorded as done: %+v", r)
		}
		b, _ := json.Marshal(r)
		for _, n := range []string{unknown, arta.PersonalNumber} {
			if strings.Contains(string(b), n) {
				t.Errorf("personal number %s in the audit log: %s", n, b)
			}
		}
	}
	if misses != 1 {
		t.Fatalf("%d misses recorded, want 1", misses)
	}
}

// BenchmarkHistory reads one person's history from a log of 50,000 records about others: the
// index keeps it to that person's records (go test ./internal/eid -bench History -run X).
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	p := store.Person{SubjectID: "arta", PersonalNumber: "7000000001", GivenName: "Arta", FamilyName: "Krasniqi", Status: store.EIDActive}
	if err := e.db.CreatePerson(ctx, p); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := e.db.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			var out []store.AuditRecord
			seq := int64(1)
			if last != nil {
				seq = last.Seq + 1
			}
			for j := 0; j < 500; j++ {
				subject := fmt.Sprintf("other-%d", j)
				if j == 0 && i%10 == 0 {
					subject = "arta"
				}
				out = append(out, store.AuditRecord{Seq: seq, Time: e.now, Actor: "reg", Action: "eid.letter", Result: "ok",
					PrevHash: make([]byte, 32), Hash: make([]byte, 32), Subject: subject})
				seq++
			}
			return out, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			h, err := e.desk.History(ctx, "reg", "arta")
			if err != nil || len(h) != 10 {
				b.Fatalf("%d records, %v", len(h), err)
			}
		}
	})
	// What History did before the index: read the whole log and filter.
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for from := int64(1); ; {
				recs, err := e.db.AuditRecords(ctx, from, 1000)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					break
				}
				for _, r := range recs {
					if r.Subject == "arta" {
						n++
					}
				}
				from = recs[len(recs)-1].Seq + 1
			}
			if n != 10 {
				b.Fatalf("%d records", n)
			}
		}
	})
}
