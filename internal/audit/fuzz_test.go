package audit

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"path/filepath"
	"testing"
	"time"
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
