package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// TestVerifyXML: vula verify takes a detached XAdES with --content, and an ASiC-E container,
// sniffed by content; a DTD is refused with a clear error.
func TestVerifyXML(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	data := []byte("<order>42</order>\n")
	sig, err := xades.Sign(ctx, bytes.NewReader(data), env.Seal, xades.Options{Level: signing.LevelLT, Packaging: xades.Detached,
		FileName: "order.xml", Timestamper: env.TSA, Revocation: env.PKI})
	if err != nil {
		t.Fatal(err)
	}
	sigFile, dataFile := env.WriteFile(t, "order.xml.xades", sig), env.WriteFile(t, "order.xml", data)
	code, text, errs := run(t, nil, "verify", sigFile, "--content", dataFile, "--ca", env.RootPEM)
	if code != 0 || !strings.Contains(text, "XAdES-BASELINE B-LT") || !strings.Contains(text, "signed: content:order.xml") {
		t.Fatalf("%d %q %q", code, text, errs)
	}
	other := env.WriteFile(t, "other.xml", []byte("<order>43</order>\n"))
	if code, text, _ := run(t, nil, "verify", sigFile, "--content", other, "--ca", env.RootPEM); code == 0 || !strings.Contains(text, "HASH_FAILURE") {
		t.Fatalf("other content: %d %q", code, text)
	}

	var c bytes.Buffer
	xs := asic.XMLSignerFunc(func(ctx context.Context, files []asic.File) ([]byte, error) {
		return xades.SignFiles(ctx, []xades.File{{Name: files[0].Name, Open: files[0].Open}}, env.Seal,
			xades.Options{Level: signing.LevelLT, Timestamper: env.TSA, Revocation: env.PKI})
	})
	if err := asic.WriteXAdES(ctx, &c, xs, []asic.File{{Name: "order.xml", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}}, env.Seal.Cert.NotBefore); err != nil {
		t.Fatal(err)
	}
	container := env.WriteFile(t, "order.asice", c.Bytes())
	if code, text, errs := run(t, nil, "verify", container, "--ca", env.RootPEM); code != 0 ||
		!strings.Contains(text, "Document: ASiC-E") || !strings.Contains(text, "entry order.xml (data, 18 bytes): signed by sig1") {
		t.Fatalf("ASiC-E: %d %q %q", code, text, errs)
	}

	dtd := env.WriteFile(t, "dtd.xml", []byte(`<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>`))
	if code, _, errs := run(t, nil, "verify", dtd, "--ca", env.RootPEM); code == 0 || !strings.Contains(errs, "DTD") {
		t.Fatalf("DTD: %d %q", code, errs)
	}
}
