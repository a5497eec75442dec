// Package storetest is the conformance suite of the durable store: every store.Durable backend
// (SQLite, PostgreSQL) runs it against a real database.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// Run runs the suite. open returns a store over an empty database; called twice for the same
// test, it MUST open the same database again (migrations are checked to be idempotent that way).
func Run(t *testing.T, open func(t *testing.T) store.Durable) {
	ctx := context.Background()
	s := open(t)
	now := time.Now().UTC().Truncate(time.Microsecond)

	t.Run("Clients", func(t *testing.T) {
		c := store.Client{ID: "tax-portal", SecretHash: []byte{1, 2, 3}, RedirectURIs: []string{"https://tax.example/cb"},
			GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid", "profile"},
			TokenEndpointAuthMethod: "private_key_jwt", JWKS: []byte(`{"keys":[]}`), RequirePAR: true,
			SectorIdentifier: "https://tax.example", OrganizationID: "tax", Created: now, Name: "Tax administration",
			AllowedACR: []string{"http://eidas.europa.eu/LoA/substantial"}, PostLogoutRedirectURIs: []string{"https://tax.example/bye"},
			Policy: store.ClientPolicy{Introspection: true, IDTokenAlg: "RS256", RequestObjectAlg: "PS256"}}
		must(t, s.CreateClient(ctx, c))
		isErr(t, s.CreateClient(ctx, c), store.ErrConflict, "same client id")
		got, err := s.Client(ctx, c.ID)
		must(t, err)
		same(t, got, c)
		must(t, s.UpdateClient(ctx, c.ID, func(c store.Client) (store.Client, error) {
			c.RedirectURIs = append(c.RedirectURIs, "https://tax.example/cb2")
			return c, nil
		}))
		got, _ = s.Client(ctx, c.ID)
		if len(got.RedirectURIs) != 2 {
			t.Fatalf("update lost: %v", got.RedirectURIs)
		}
		boom := errors.New("refused")
		if err := s.UpdateClient(ctx, c.ID, func(c store.Client) (store.Client, error) { c.JWKSURI = "x"; return c, boom }); err != boom {
			t.Fatalf("updater error came back as %v, want it as it is", err)
		}
		if got, _ := s.Client(ctx, c.ID); got.JWKSURI != "" {
			t.Fatal("a refused update was written")
		}
		// An updater cannot move a record to another key.
		must(t, s.UpdateClient(ctx, c.ID, func(c store.Client) (store.Client, error) { c.ID = "stolen"; return c, nil }))
		_, err = s.Client(ctx, "stolen")
		isErr(t, err, store.ErrNotFound, "client renamed by an updater")
		// Concurrent updaters each add a redirect URI: none is lost.
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.UpdateClient(ctx, c.ID, func(c store.Client) (store.Client, error) {
					c.RedirectURIs = append(c.RedirectURIs, fmt.Sprintf("https://tax.example/cb/%d", i))
					return c, nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got, _ := s.Client(ctx, c.ID); len(got.RedirectURIs) != 12 {
			t.Fatalf("10 concurrent updaters left %d redirect URIs, want 12", len(got.RedirectURIs))
		}
		// A client with private_key_jwt has no secret; nothing comes back for what was never set.
		pkj := store.Client{ID: "health", RedirectURIs: []string{"https://health.example/cb"}, TokenEndpointAuthMethod: "private_key_jwt",
			JWKSURI: "https://health.example/jwks.json", Created: now}
		must(t, s.CreateClient(ctx, pkj))
		got, err = s.Client(ctx, "health")
		must(t, err)
		same(t, got, pkj)
		list, err := s.Clients(ctx)
		must(t, err)
		if len(list) != 2 || list[0].ID != "health" || list[1].ID != "tax-portal" {
			t.Fatalf("Clients: %+v", list)
		}
		must(t, s.DeleteClient(ctx, c.ID))
		_, err = s.Client(ctx, c.ID)
		isErr(t, err, store.ErrNotFound, "deleted client")
		isErr(t, s.DeleteClient(ctx, c.ID), store.ErrNotFound, "delete twice")
		isErr(t, s.UpdateClient(ctx, "ghost", func(c store.Client) (store.Client, error) { return c, nil }), store.ErrNotFound, "update ghost")
	})

	t.Run("PersonsAndCredentials", func(t *testing.T) {
		p := store.Person{SubjectID: "s-1", PersonalNumber: "1234567890", GivenName: "Arta", FamilyName: "Krasniqi",
			BirthDate: "1990-04-01", Email: "arta@example.org", Official: true, Created: now,
			Proofing: store.ProofingHigh, ProofedBy: "registrar-1", ProofedAt: now, DocumentNumber: "P1234567", DocumentExpiry: "2031-05-06",
			Status: store.EIDActive, Roles: []string{store.RoleRegistrar}}
		must(t, s.CreatePerson(ctx, p))
		noEmail := store.Person{SubjectID: "s-2", PersonalNumber: "2222222222", GivenName: "Milan", FamilyName: "Petrović", BirthDate: "1985-01-02", Created: now}
		must(t, s.CreatePerson(ctx, noEmail))
		// Two persons without e-mail must not collide on the unique e-mail.
		must(t, s.CreatePerson(ctx, store.Person{SubjectID: "s-3", PersonalNumber: "3333333333", Created: now}))
		isErr(t, s.CreatePerson(ctx, store.Person{SubjectID: "s-4", PersonalNumber: p.PersonalNumber}), store.ErrConflict, "same personal number")
		isErr(t, s.CreatePerson(ctx, store.Person{SubjectID: "s-5", PersonalNumber: "5", Email: p.Email}), store.ErrConflict, "same e-mail")
		isErr(t, s.CreatePerson(ctx, store.Person{SubjectID: "s-1", PersonalNumber: "6"}), store.ErrConflict, "same subject id")
		if got, err := s.Person(ctx, "s-2"); err != nil || !reflect.DeepEqual(got, noEmail) {
			t.Fatalf("person without e-mail: %+v, %v", got, err)
		}
		for name, get := range map[string]func() (store.Person, error){
			"by id":     func() (store.Person, error) { return s.Person(ctx, "s-1") },
			"by number": func() (store.Person, error) { return s.PersonByPersonalNumber(ctx, "1234567890") },
			"by e-mail": func() (store.Person, error) { return s.PersonByEmail(ctx, "arta@example.org") },
		} {
			got, err := get()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			same(t, got, p)
		}
		_, err := s.PersonByEmail(ctx, "nobody@example.org")
		isErr(t, err, store.ErrNotFound, "unknown e-mail")
		_, err = s.PersonByPersonalNumber(ctx, "0000000000")
		isErr(t, err, store.ErrNotFound, "unknown personal number")
		_, err = s.Person(ctx, "ghost")
		isErr(t, err, store.ErrNotFound, "unknown person")
		_, err = s.Credential(ctx, "s-2")
		isErr(t, err, store.ErrNotFound, "person without a credential")
		list, err := s.Persons(ctx)
		must(t, err)
		if len(list) != 3 || list[0].SubjectID != "s-1" {
			t.Fatalf("Persons: %+v", list)
		}

		c := store.Credential{SubjectID: "s-1", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA", TOTPSeedSealed: []byte{9, 9}, Updated: now,
			ActivationHash: []byte{7, 7, 7}, ActivationExpires: now.Add(30 * 24 * time.Hour)}
		must(t, s.PutCredential(ctx, c))
		isErr(t, s.PutCredential(ctx, store.Credential{SubjectID: "ghost"}), store.ErrNotFound, "credential of nobody")
		got, err := s.Credential(ctx, "s-1")
		must(t, err)
		same(t, got, c)
		// Concurrent updaters lose nothing.
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.UpdateCredential(ctx, "s-1", func(c store.Credential) (store.Credential, error) {
					c.FailedAttempts++
					return c, nil
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			must(t, err)
		}
		if got, _ := s.Credential(ctx, "s-1"); got.FailedAttempts != 20 {
			t.Fatalf("20 concurrent increments gave %d", got.FailedAttempts)
		}
		must(t, s.UpdatePerson(ctx, "s-2", func(p store.Person) (store.Person, error) {
			p.Email, p.Status, p.Roles = "milan@example.org", store.EIDSuspended, []string{store.RoleRegistrar}
			return p, nil
		}))
		if got, _ := s.Person(ctx, "s-2"); got.Status != store.EIDSuspended || len(got.Roles) != 1 {
			t.Fatalf("UpdatePerson lost the status or roles: %+v", got)
		}
		if got, _ := s.PersonByEmail(ctx, "milan@example.org"); got.SubjectID != "s-2" {
			t.Fatal("UpdatePerson lost the e-mail")
		}
		isErr(t, s.UpdatePerson(ctx, "s-2", func(p store.Person) (store.Person, error) { p.Email = "arta@example.org"; return p, nil }),
			store.ErrConflict, "update to a taken e-mail")
		isErr(t, s.UpdateCredential(ctx, "s-2", func(c store.Credential) (store.Credential, error) { return c, nil }), store.ErrNotFound, "update a missing credential")

		// PutCredential replaces: a re-enrolment clears what it does not set.
		c2 := store.Credential{SubjectID: "s-1", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$bmV3$bmV3", Updated: now.Add(time.Minute)}
		must(t, s.PutCredential(ctx, c2))
		got, err = s.Credential(ctx, "s-1")
		must(t, err)
		same(t, got, c2)

		// Passkeys: several per person, found by credential id, the owner fixed.
		pk := store.Passkey{ID: []byte{1, 2, 3}, SubjectID: "s-1", Name: "phone", Level: "http://eidas.europa.eu/LoA/substantial",
			Record: []byte(`{"id":"AQID"}`), Created: now}
		must(t, s.CreatePasskey(ctx, pk))
		isErr(t, s.CreatePasskey(ctx, pk), store.ErrConflict, "same passkey id")
		isErr(t, s.CreatePasskey(ctx, store.Passkey{ID: []byte{9}, SubjectID: "ghost", Record: []byte("{}")}), store.ErrNotFound, "passkey of nobody")
		pk2 := store.Passkey{ID: []byte{4, 5}, SubjectID: "s-1", Name: "key", Level: "http://eidas.europa.eu/LoA/high", Record: []byte("{}"), Created: now.Add(time.Second)}
		must(t, s.CreatePasskey(ctx, pk2))
		gotPK, err := s.Passkey(ctx, pk.ID)
		must(t, err)
		same(t, gotPK, pk)
		_, err = s.Passkey(ctx, []byte{7})
		isErr(t, err, store.ErrNotFound, "unknown passkey")
		pks, err := s.PasskeysOf(ctx, "s-1")
		must(t, err)
		if len(pks) != 2 || pks[0].Name != "phone" || pks[1].Name != "key" {
			t.Fatalf("PasskeysOf: %+v", pks)
		}
		must(t, s.UpdatePasskey(ctx, pk.ID, func(p store.Passkey) (store.Passkey, error) {
			p.LastUsed, p.SubjectID, p.Name = now, "s-2", "my phone"
			return p, nil
		}))
		if got, _ := s.Passkey(ctx, pk.ID); got.SubjectID != "s-1" || got.Name != "my phone" || !got.LastUsed.Equal(now) {
			t.Fatalf("UpdatePasskey: %+v", got)
		}
		isErr(t, s.DeletePasskey(ctx, "s-2", pk.ID), store.ErrNotFound, "delete another person's passkey")
		must(t, s.DeletePasskey(ctx, "s-1", pk.ID))
		isErr(t, s.DeletePasskey(ctx, "s-1", pk.ID), store.ErrNotFound, "delete a passkey twice")

		// Deleting a person takes their credential and passkeys along and frees their unique values.
		must(t, s.DeletePerson(ctx, "s-1"))
		_, err = s.Passkey(ctx, pk2.ID)
		isErr(t, err, store.ErrNotFound, "passkey of a deleted person")
		_, err = s.Person(ctx, "s-1")
		isErr(t, err, store.ErrNotFound, "deleted person")
		_, err = s.Credential(ctx, "s-1")
		isErr(t, err, store.ErrNotFound, "credential of a deleted person")
		isErr(t, s.DeletePerson(ctx, "s-1"), store.ErrNotFound, "delete a person twice")
		must(t, s.CreatePerson(ctx, store.Person{SubjectID: "s-6", PersonalNumber: p.PersonalNumber, Email: p.Email, Created: now}))
	})

	t.Run("OrganizationsAndKeys", func(t *testing.T) {
		o := store.Organization{ID: "tax", Name: "Tax Administration", Identifier: "NTRXK-810000001", Created: now}
		must(t, s.CreateOrganization(ctx, o))
		isErr(t, s.CreateOrganization(ctx, store.Organization{ID: "tax2", Identifier: o.Identifier}), store.ErrConflict, "same identifier")
		got, err := s.Organization(ctx, "tax")
		must(t, err)
		same(t, got, o)
		must(t, s.UpdateOrganization(ctx, "tax", func(o store.Organization) (store.Organization, error) { o.Name = "ATK"; return o, nil }))
		isErr(t, s.CreateOrganization(ctx, store.Organization{ID: "tax", Identifier: "NTRXK-810000002"}), store.ErrConflict, "same id")
		isErr(t, s.UpdateOrganization(ctx, "ghost", func(o store.Organization) (store.Organization, error) { return o, nil }), store.ErrNotFound, "update ghost")
		list, _ := s.Organizations(ctx)
		if len(list) != 1 || list[0].Name != "ATK" {
			t.Fatalf("Organizations: %+v", list)
		}
		must(t, s.CreateOrganization(ctx, store.Organization{ID: "gone", Name: "Gone", Identifier: "NTRXK-810000003", Created: now}))
		must(t, s.DeleteOrganization(ctx, "gone"))
		_, err = s.Organization(ctx, "gone")
		isErr(t, err, store.ErrNotFound, "deleted organization")
		isErr(t, s.DeleteOrganization(ctx, "gone"), store.ErrNotFound, "delete an organization twice")
		k := store.KeyRecord{URI: "pkcs11:token=vula;object=seal-tax", Purpose: "seal:tax", Owner: "tax", Algorithm: "EC-P256", State: "active", Created: now}
		must(t, s.PutKeyRecord(ctx, k))
		k.State = "retired"
		must(t, s.PutKeyRecord(ctx, k))
		gk, err := s.KeyRecord(ctx, k.URI)
		must(t, err)
		same(t, gk, k)
		ks, _ := s.KeyRecords(ctx)
		if len(ks) != 1 {
			t.Fatalf("KeyRecords: %d", len(ks))
		}
		must(t, s.DeleteKeyRecord(ctx, k.URI))
		_, err = s.KeyRecord(ctx, k.URI)
		isErr(t, err, store.ErrNotFound, "deleted key record")
		isErr(t, s.DeleteKeyRecord(ctx, k.URI), store.ErrNotFound, "delete a key record twice")
	})

	t.Run("Certificates", func(t *testing.T) {
		c := store.Certificate{CA: "person-ca", Serial: "0a1b", Subject: "CN=Arta Krasniqi", KeyURI: "k", Profile: "natural-person",
			DER: []byte{0x30, 0x82}, NotBefore: now, NotAfter: now.Add(365 * 24 * time.Hour)}
		must(t, s.CreateCertificate(ctx, c))
		isErr(t, s.CreateCertificate(ctx, c), store.ErrConflict, "same serial")
		other := c
		other.CA = "seal-ca" // the same serial under another CA is another certificate
		must(t, s.CreateCertificate(ctx, other))
		got, err := s.Certificate(ctx, "person-ca", "0a1b")
		must(t, err)
		same(t, got, c)
		_, err = s.Certificate(ctx, "person-ca", "ffff")
		isErr(t, err, store.ErrNotFound, "unknown serial")
		if r, err := s.CertificateRevoked(ctx, "person-ca", "0a1b"); err != nil || r {
			t.Fatalf("CertificateRevoked before revocation: %v, %v", r, err)
		}
		_, err = s.CertificateRevoked(ctx, "person-ca", "ffff")
		isErr(t, err, store.ErrNotFound, "status of an unknown serial")
		at := now.Add(time.Hour)
		must(t, s.Revoke(ctx, "person-ca", "0a1b", at, 1))
		if r, err := s.CertificateRevoked(ctx, "person-ca", "0a1b"); err != nil || !r {
			t.Fatalf("CertificateRevoked after revocation: %v, %v", r, err)
		}
		if r, err := s.CertificateRevoked(ctx, "seal-ca", "0a1b"); err != nil || r {
			t.Fatalf("CertificateRevoked of the same serial under another CA: %v, %v", r, err)
		}
		isErr(t, s.Revoke(ctx, "person-ca", "0a1b", at, 1), store.ErrConflict, "revoke twice")
		isErr(t, s.Revoke(ctx, "person-ca", "ffff", at, 1), store.ErrNotFound, "revoke unknown")
		rev, err := s.RevokedCertificates(ctx, "person-ca")
		must(t, err)
		if len(rev) != 1 || !rev[0].Revoked || !rev[0].RevokedAt.Equal(at) || rev[0].RevocationReason != 1 {
			t.Fatalf("revoked: %+v", rev)
		}
		if rev, _ := s.RevokedCertificates(ctx, "seal-ca"); len(rev) != 0 {
			t.Fatal("revocation leaked to another CA")
		}
		all, _ := s.CertificatesByCA(ctx, "seal-ca")
		if len(all) != 1 {
			t.Fatalf("CertificatesByCA: %d", len(all))
		}
		var mu sync.Mutex
		seen := map[int64]bool{}
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := s.NextCRLNumber(ctx, "person-ca")
				mu.Lock()
				defer mu.Unlock()
				if err != nil || seen[n] {
					t.Errorf("CRL number %d, %v", n, err)
				}
				seen[n] = true
			}()
		}
		wg.Wait()
		for n := int64(1); n <= 16; n++ {
			if !seen[n] {
				t.Fatalf("CRL number %d never handed out", n)
			}
		}
	})

	t.Run("Transactions", func(t *testing.T) {
		tx := store.Transaction{ID: "t-1", Kind: "seal", Actor: "client:tax", OrganizationID: "tax",
			Digests: [][]byte{{1, 2}, {3, 4}}, Format: "pades", Level: "B-T", State: "pending", Created: now}
		must(t, s.CreateTransaction(ctx, tx))
		isErr(t, s.CreateTransaction(ctx, tx), store.ErrConflict, "same id")
		must(t, s.UpdateTransaction(ctx, "t-1", func(t store.Transaction) (store.Transaction, error) {
			t.State, t.Completed = "done", now.Add(time.Second)
			return t, nil
		}))
		list, err := s.TransactionsByActor(ctx, "client:tax")
		must(t, err)
		if len(list) != 1 || list[0].State != "done" || !bytes.Equal(list[0].Digests[1], []byte{3, 4}) {
			t.Fatalf("TransactionsByActor: %+v", list)
		}
		_, err = s.Transaction(ctx, "t-2")
		isErr(t, err, store.ErrNotFound, "unknown transaction")
		isErr(t, s.UpdateTransaction(ctx, "t-2", func(t store.Transaction) (store.Transaction, error) { return t, nil }), store.ErrNotFound, "update ghost")
		got, err := s.Transaction(ctx, "t-1")
		must(t, err)
		want := tx
		want.State, want.Completed = "done", now.Add(time.Second)
		same(t, got, want)
	})

	t.Run("Settings", func(t *testing.T) {
		_, err := s.Setting(ctx, "idp.secret")
		isErr(t, err, store.ErrNotFound, "absent setting")
		got, err := s.PutSettingIfAbsent(ctx, "idp.secret", []byte("first"))
		must(t, err)
		if string(got) != "first" {
			t.Fatalf("first put returned %q", got)
		}
		// Later puts, concurrent or not, keep and return the first value.
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.PutSettingIfAbsent(ctx, "idp.secret", []byte(fmt.Sprint("later", i)))
				if err != nil || string(v) != "first" {
					t.Errorf("later put: %q %v", v, err)
				}
			}()
		}
		wg.Wait()
		if v, err := s.Setting(ctx, "idp.secret"); err != nil || string(v) != "first" {
			t.Fatalf("setting now %q %v", v, err)
		}
		must(t, s.DeleteSetting(ctx, "idp.secret"))
		_, err = s.Setting(ctx, "idp.secret")
		isErr(t, err, store.ErrNotFound, "deleted setting")
		must(t, s.DeleteSetting(ctx, "idp.secret")) // absent: no error
		if v, err := s.PutSettingIfAbsent(ctx, "idp.secret", []byte("again")); err != nil || string(v) != "again" {
			t.Fatalf("put after delete: %q %v", v, err)
		}
		// PutSetting replaces.
		must(t, s.PutSetting(ctx, "serve.base_url", []byte("http://a")))
		must(t, s.PutSetting(ctx, "serve.base_url", []byte("https://b")))
		if v, err := s.Setting(ctx, "serve.base_url"); err != nil || string(v) != "https://b" {
			t.Fatalf("replaced setting %q %v", v, err)
		}
	})

	t.Run("AuditLog", func(t *testing.T) {
		recs, err := s.AuditRecords(ctx, 1, 10)
		must(t, err)
		if len(recs) != 0 {
			t.Fatal("new log not empty")
		}
		if _, _, err := s.AuditCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("checkpoint of an empty log: %v", err)
		}
		const writers, each = 16, 5
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := s.AppendAudit(ctx, chain(fmt.Sprintf("w%d", w), now))
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			must(t, err)
		}
		all, err := s.AuditRecords(ctx, 1, 1000)
		must(t, err)
		if len(all) != writers*each {
			t.Fatalf("%d records, want %d", len(all), writers*each)
		}
		prev := make([]byte, 32)
		for i, r := range all {
			if r.Seq != int64(i+1) || !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(r.Hash, hashOf(r)) || !r.Time.Equal(now) {
				t.Fatalf("record %d broken: %+v", i+1, r)
			}
			prev = r.Hash
		}
		page, _ := s.AuditRecords(ctx, 79, 10)
		if len(page) != 2 || page[0].Seq != 79 {
			t.Fatalf("paging: %d records from 79", len(page))
		}
		boom := errors.New("no")
		if _, err := s.AppendAudit(ctx, func(*store.AuditRecord) ([]store.AuditRecord, error) { return nil, boom }); err != boom {
			t.Fatalf("refused append: %v", err)
		}
		if _, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			return []store.AuditRecord{{Seq: last.Seq + 2, PrevHash: last.Hash, Hash: last.Hash}}, nil
		}); err == nil {
			t.Fatal("a gap in seq was accepted")
		}
		// A batch whose second record skips a seq stores none of it, the first included.
		if _, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			first, _ := chain("batch", now)(last)
			return []store.AuditRecord{first[0], {Seq: last.Seq + 3, PrevHash: first[0].Hash, Hash: last.Hash}}, nil
		}); err == nil {
			t.Fatal("a batch with a gap was accepted")
		}
		if n, _ := s.AuditRecords(ctx, 1, 1000); len(n) != writers*each {
			t.Fatal("a refused append wrote something")
		}
		// A batch lands whole and in order, in one call.
		batch, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			var out []store.AuditRecord
			for i := 0; i < 3; i++ {
				r, _ := chain(fmt.Sprint("batch", i), now)(last)
				out = append(out, r[0])
				last = &out[len(out)-1]
			}
			return out, nil
		})
		must(t, err)
		if len(batch) != 3 || batch[0].Seq != writers*each+1 || batch[2].Seq != writers*each+3 {
			t.Fatalf("batch stored as %+v", batch)
		}
		if n, _ := s.AuditRecords(ctx, 1, 1000); len(n) != writers*each+3 || n[len(n)-1].Actor != "batch2" {
			t.Fatal("the batch is not the tail")
		}
		// An empty batch stores nothing and is no error.
		none, err := s.AppendAudit(ctx, func(*store.AuditRecord) ([]store.AuditRecord, error) { return nil, nil })
		must(t, err)
		if len(none) != 0 {
			t.Fatal("an empty batch returned records")
		}
		// Every field comes back as it was given, and AppendAudit returns what it stored.
		stored, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			r := store.AuditRecord{Seq: last.Seq + 1, Time: now.Add(1234 * time.Microsecond), Actor: "client:tax", Action: "checkpoint",
				Key: "pkcs11:token=vula;object=audit", Digest: []byte{0xde, 0xad}, Result: "ok", RequestID: "req-1",
				Detail: []byte(`{"seq":80}`), Signature: []byte{0x30, 0x45}, PrevHash: last.Hash, Subject: "0f3a"}
			r.Hash = hashOf(r)
			return []store.AuditRecord{r}, nil
		})
		must(t, err)
		full := stored[0]
		back, err := s.AuditRecords(ctx, full.Seq, 10)
		must(t, err)
		if len(back) != 1 {
			t.Fatalf("%d records from %d", len(back), full.Seq)
		}
		same(t, back[0], full)

		// AuditOf reads one subject's records, in order, from a seq on, and nothing of others'.
		about := func(subject string) func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			return func(last *store.AuditRecord) ([]store.AuditRecord, error) {
				r, _ := chain("registrar", now)(last)
				r[0].Subject = subject
				return r, nil
			}
		}
		var ofAlice []int64
		for i := 0; i < 3; i++ {
			a, err := s.AppendAudit(ctx, about("alice"))
			must(t, err)
			ofAlice = append(ofAlice, a[0].Seq)
			_, err = s.AppendAudit(ctx, about("bob"))
			must(t, err)
		}
		got, err := s.AuditOf(ctx, "alice", 1, 10)
		must(t, err)
		if len(got) != 3 || got[0].Seq != ofAlice[0] || got[2].Seq != ofAlice[2] || got[1].Subject != "alice" {
			t.Fatalf("alice's records: %+v", got)
		}
		if got, _ := s.AuditOf(ctx, "alice", ofAlice[1], 1); len(got) != 1 || got[0].Seq != ofAlice[1] {
			t.Fatalf("alice's records from %d: %+v", ofAlice[1], got)
		}
		if got, err := s.AuditOf(ctx, "carol", 1, 10); err != nil || len(got) != 0 {
			t.Fatalf("carol has no records: %+v %v", got, err)
		}
		if got, err := s.AuditOf(ctx, "", 1, 10); err != nil || len(got) != 0 {
			t.Fatalf("the empty subject is no one: %d records %v", len(got), err)
		}

		// Tree hashes come back by seq; the checkpoint of the last record that carries one in a
		// commit is the latest; a refused batch changes neither.
		withTree := func(last *store.AuditRecord, n int, cp string) ([]store.AuditRecord, error) {
			var out []store.AuditRecord
			for i := 0; i < n; i++ {
				r, _ := chain("tree", now)(last)
				r[0].Tree = bytes.Repeat([]byte{byte(r[0].Seq)}, 32*(1+i%2))
				out = append(out, r[0])
				last = &out[len(out)-1]
			}
			out[len(out)-1].Checkpoint = []byte(cp)
			return out, nil
		}
		treed, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) { return withTree(last, 3, "cp-1") })
		must(t, err)
		if seq, cp, err := s.AuditCheckpoint(ctx); err != nil || seq != treed[2].Seq || string(cp) != "cp-1" {
			t.Fatalf("latest checkpoint: %d %q %v", seq, cp, err)
		}
		if _, err := s.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			out, _ := withTree(last, 2, "cp-refused")
			out[1].Seq++
			return out, nil
		}); err == nil {
			t.Fatal("a batch with a gap was accepted")
		}
		if _, cp, _ := s.AuditCheckpoint(ctx); string(cp) != "cp-1" {
			t.Fatalf("a refused batch left its checkpoint: %q", cp)
		}
		trees, err := s.AuditTree(ctx, []int64{treed[0].Seq, treed[2].Seq, full.Seq, 99999})
		must(t, err)
		if len(trees) != 3 || !bytes.Equal(trees[treed[0].Seq], treed[0].Tree) || !bytes.Equal(trees[treed[2].Seq], treed[2].Tree) || trees[full.Seq] != nil {
			t.Fatalf("tree hashes by seq: %v", trees)
		}
		// Filling sets only the trees that are missing.
		must(t, s.FillAuditTree(ctx, map[int64][]byte{full.Seq: {7}, treed[0].Seq: {8}}))
		trees, _ = s.AuditTree(ctx, []int64{full.Seq, treed[0].Seq})
		if !bytes.Equal(trees[full.Seq], []byte{7}) || !bytes.Equal(trees[treed[0].Seq], treed[0].Tree) {
			t.Fatalf("after the fill: %v", trees)
		}
		back, _ = s.AuditRecords(ctx, treed[1].Seq, 1)
		if !bytes.Equal(back[0].Tree, treed[1].Tree) || back[0].Checkpoint != nil {
			t.Fatalf("a record's tree comes back with it, its checkpoint does not: %+v", back[0])
		}

		// A record's transaction is stored in the same commit, and a refused batch stores none.
		rides := func(ids ...string) func(last *store.AuditRecord) ([]store.AuditRecord, error) {
			return func(last *store.AuditRecord) ([]store.AuditRecord, error) {
				var out []store.AuditRecord
				for _, id := range ids {
					r, _ := chain("tax-batch", now)(last)
					r[0].Transaction = &store.Transaction{ID: id, Kind: "seal", Actor: "rider", OrganizationID: "tax",
						Digests: [][]byte{{9}}, Format: "pades", Level: "B-B", State: "completed", Created: now, Completed: now}
					out = append(out, r[0])
					last = &out[len(out)-1]
				}
				return out, nil
			}
		}
		_, err = s.AppendAudit(ctx, rides("ride-1", "ride-2"))
		must(t, err)
		if txs, err := s.TransactionsByActor(ctx, "rider"); err != nil || len(txs) != 2 || txs[1].ID != "ride-2" || txs[0].Level != "B-B" {
			t.Fatalf("transactions of an append: %+v %v", txs, err)
		}
		if _, err := s.AppendAudit(ctx, rides("ride-3", "ride-1")); err == nil {
			t.Fatal("a batch with a duplicate transaction id was accepted")
		}
		if txs, _ := s.TransactionsByActor(ctx, "rider"); len(txs) != 2 {
			t.Fatalf("a refused batch stored a transaction: %+v", txs)
		}
	})

	t.Run("PIDs", func(t *testing.T) {
		for i, sub := range []string{"sub-pid", "someone-else"} {
			must(t, s.CreatePerson(ctx, store.Person{SubjectID: sub, PersonalNumber: fmt.Sprintf("770000000%d", i), GivenName: "P",
				FamilyName: "Q", BirthDate: "1990-01-01", Created: now}))
		}
		p := store.IssuedPID{ID: "c1", SubjectID: "sub-pid", Format: "dc+sd-jwt", KeyURI: "software:pid", List: 1, Index: 7,
			Issued: now, Expires: now.AddDate(1, 0, 0)}
		must(t, s.CreatePID(ctx, p))
		isErr(t, s.CreatePID(ctx, p), store.ErrConflict, "same pid id")
		other := p
		other.ID = "c2"
		isErr(t, s.CreatePID(ctx, other), store.ErrConflict, "same list and index")
		other.Index, other.Format = 8, "mso_mdoc"
		must(t, s.CreatePID(ctx, other))
		third := store.IssuedPID{ID: "c3", SubjectID: "someone-else", Format: "dc+sd-jwt", KeyURI: "software:pid", List: 1, Index: 9,
			Issued: now, Expires: now.AddDate(1, 0, 0)}
		must(t, s.CreatePID(ctx, third))
		got, err := s.PIDsOf(ctx, "sub-pid")
		must(t, err)
		same(t, got, []store.IssuedPID{p, other})
		// One credential, by its holder only.
		_, err = s.RevokePID(ctx, "sub-pid", "c3", now)
		isErr(t, err, store.ErrNotFound, "revoking another person's credential")
		_, err = s.RevokePID(ctx, "sub-pid", "nope", now)
		isErr(t, err, store.ErrNotFound, "revoking an unknown credential")
		if first, err := s.RevokePID(ctx, "someone-else", "c3", now); err != nil || !first {
			t.Fatalf("revoking one credential: %v %v", first, err)
		}
		if first, err := s.RevokePID(ctx, "someone-else", "c3", now.Add(time.Hour)); err != nil || first {
			t.Fatalf("revoking it again: %v %v", first, err)
		}
		idx, err := s.RevokedPIDs(ctx, 1)
		must(t, err)
		same(t, idx, []int{9})
		n, err := s.CountPIDs(ctx, 1)
		must(t, err)
		if n != 3 {
			t.Fatalf("list 1 counts %d, want 3", n)
		}
		revoked, err := s.RevokePIDs(ctx, "sub-pid", now)
		must(t, err)
		if revoked != 2 {
			t.Fatalf("revoked %d, want 2", revoked)
		}
		if again, _ := s.RevokePIDs(ctx, "sub-pid", now.Add(time.Hour)); again != 0 {
			t.Fatalf("a second revocation revoked %d again", again)
		}
		idx, err = s.RevokedPIDs(ctx, 1)
		must(t, err)
		same(t, idx, []int{7, 8, 9})
		got, _ = s.PIDsOf(ctx, "sub-pid")
		if !got[0].Revoked || !got[0].RevokedAt.Equal(now) {
			t.Fatalf("revocation not kept: %+v", got[0])
		}
		// The other person's eID means is revoked: their credential is revoked with it.
		must(t, s.UpdatePerson(ctx, "someone-else", func(p store.Person) (store.Person, error) { p.Status = store.EIDRevoked; return p, nil }))
		idx, err = s.RevokedPIDs(ctx, 1)
		must(t, err)
		same(t, idx, []int{7, 8, 9})
		got, _ = s.PIDsOf(ctx, "someone-else")
		if !got[0].Revoked || !got[0].RevokedAt.Equal(now) {
			t.Fatalf("the first revocation's time is not kept: %+v", got[0])
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		s2 := open(t) // migrations again: nothing to do, nothing lost
		if _, err := s2.Organization(ctx, "tax"); err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		must(t, s2.Ping(ctx))
	})
}

// chain makes the updater a real appender would: next seq, linked to the last record's hash.
func chain(actor string, now time.Time) func(last *store.AuditRecord) ([]store.AuditRecord, error) {
	return func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		r := store.AuditRecord{Seq: 1, Time: now, Actor: actor, Action: "sign", Result: "ok", PrevHash: make([]byte, 32), Digest: []byte{1}}
		if last != nil {
			r.Seq, r.PrevHash = last.Seq+1, last.Hash
		}
		r.Hash = hashOf(r)
		return []store.AuditRecord{r}, nil
	}
}

func hashOf(r store.AuditRecord) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "%d|%s|%x", r.Seq, r.Actor, r.PrevHash))
	return h[:]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func same(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}
