package xades_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
)

func TestDbg(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	in, _ := os.ReadFile(os.Getenv("DBG_IN"))
	out, err := xades.Sign(context.Background(), bytes.NewReader(in), env.Seal, xades.Options{Packaging: xades.Enveloped})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile("/tmp/dbg/signed.xml", out, 0o644)
	os.WriteFile("/tmp/dbg/root.pem", mustRead(env.RootPEM), 0o644)
}
func mustRead(p string) []byte { b, _ := os.ReadFile(p); return b }
