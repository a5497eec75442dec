package audit

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// FuzzVerifyExport feeds export files, which an auditor receives from outside: the verifier
// must answer with a report or an error, never crash. Seeded with a real export (events and
// checkpoints) made by the log itself.
func FuzzVerifyExport(f *testing.F) {
	fx := newKeys(f)
	db := openDB(f, "sqlite:"+filepath.Join(f.TempDir(), "a.db"))
	l, err := New(context.Background(), db, fx.keys, fx.keyURI, Options{Every: 3}, time.Now, quiet)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if _, err := l.Append(context.Background(), Event{Actor: "a", Action: "seal", Digest: []byte{byte(i)}, Result: "ok"}); err != nil {
			f.Fatal(err)
		}
	}
	var real bytes.Buffer
	if err := Export(context.Background(), db, &real); err != nil {
		f.Fatal(err)
	}
	f.Add(real.Bytes())
	f.Add([]byte("{}\n{}\n"))
	f.Add([]byte("not json"))
	noKey := func(string) (crypto.PublicKey, error) { return nil, errors.New("no key") }
	f.Fuzz(func(t *testing.T, data []byte) {
		VerifyExport(bytes.NewReader(data), fx.pubs, VerifyOptions{})
		VerifyExport(bytes.NewReader(data), noKey, VerifyOptions{ExpectSeq: 2, ExpectHead: make([]byte, 32)})
	})
}

// FuzzOpenCheckpoint feeds what a witness receives from a log and reads from its state file:
// signed checkpoints and verifier keys. Seeded with a real checkpoint and the key that signs it.
func FuzzOpenCheckpoint(f *testing.F) {
	fx := newKeys(f)
	ctx := context.Background()
	db := openDB(f, "sqlite:"+filepath.Join(f.TempDir(), "a.db"))
	l, err := New(ctx, db, fx.keys, fx.keyURI, Options{}, time.Now, quiet)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := l.Append(ctx, Event{Actor: "a", Action: "seal", Result: "ok"}); err != nil {
		f.Fatal(err)
	}
	_, signed, err := db.AuditCheckpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	pub, _ := fx.keys.PublicKey(ctx, fx.keyURI)
	vkey, err := VerifierKey(fx.keyURI, pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed, vkey)
	f.Add([]byte("origin\n1\nAAAA\n\n— x AAAAAA==\n"), "x+00000000+AQ==")
	f.Fuzz(func(t *testing.T, signed []byte, vkey string) {
		if v, err := ParseVerifierKey(vkey); err == nil {
			OpenCheckpoint(signed, note.VerifierList(v))
		}
		OpenCheckpoint(signed, keyVerifiers{fx.pubs})
		ParseCheckpoint(string(signed))
	})
}
