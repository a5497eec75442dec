package software

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/hsm"
)

// FuzzKeystoreFile feeds the parsers of the three keystore files (kind 0: header, 1: metadata,
// 2: sealed key). They must never panic, and whatever they accept must be exactly what this package
// would write for the same content. Seeds are real files of a keystore written here.
//
//	go test -run '^$' -fuzz FuzzKeystoreFile -fuzztime 30s ./hsm/software/
func FuzzKeystoreFile(f *testing.F) {
	dir := f.TempDir()
	m, err := Open(ctx, passphraseConfig(dir), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.RSA3072} {
		if _, err := m.CreateKey(ctx, hsm.KeySpec{Label: "seed-" + string(alg), Algorithm: alg, Purpose: hsm.SealPurpose("tax"), Owner: "Tatimet <&>"}); err != nil {
			f.Fatal(err)
		}
	}
	r, err := m.CreateKey(ctx, hsm.KeySpec{Label: "retired", Algorithm: hsm.ECP384, Purpose: hsm.PurposeCA})
	if err != nil {
		f.Fatal(err)
	}
	m.Retire(ctx, r.URI)
	d, err := m.CreateKey(ctx, hsm.KeySpec{Label: "destroyed", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA})
	if err != nil {
		f.Fatal(err)
	}
	m.Destroy(ctx, d.URI)
	sec := m.sec
	m.Close()

	kcfg := keyFileConfig(f, filepath.Join(f.TempDir(), "k"))
	m, err = Open(ctx, kcfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	m.Close()

	seed := func(kind uint8, path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, data)
	}
	seed(0, filepath.Join(dir, headerName))
	seed(0, filepath.Join(kcfg.Dir, headerName))
	names, _ := filepath.Glob(filepath.Join(dir, keysDir, "*.json"))
	for _, n := range names {
		seed(1, n)
	}
	names, _ = filepath.Glob(filepath.Join(dir, keysDir, "*.key"))
	for _, n := range names {
		seed(2, n)
	}

	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		var (
			v   any
			err error
		)
		switch kind % 3 {
		case 0:
			v, err = parseHeader(data)
		case 1:
			var meta *metaFile
			meta, err = parseMeta(data)
			if err == nil {
				// What Open does next with a well-formed file.
				sec.metaMAC(meta)
				if meta.State != hsm.StateDestroyed {
					parsePublic(meta.Algorithm, meta.PublicKey)
				}
				keyAD(meta, meta.PublicKey)
			}
			v = meta
		case 2:
			var s *sealedFile
			s, err = parseSealed(data)
			if err == nil {
				sec.aead.Open(nil, s.Nonce, s.Ciphertext, nil)
			}
			v = s
		}
		if err != nil {
			return
		}
		again, err := encodeFile(v)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a file it would not write: %q", data)
		}
	})
}
