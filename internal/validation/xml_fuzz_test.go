package validation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// TestXMLSeeds writes the XML and ASiC-E fuzz seeds with -update: Vula's XAdES (enveloped B-B
// and B-LTA, enveloping, detached), an xmlsec1 signature by Id, and ASiC-E containers with
// CAdES and XAdES. Without -update it checks that they are there.
func TestXMLSeeds(t *testing.T) {
	if !*update {
		for _, g := range []string{"testdata/xml-seed-*", "testdata/asic-seed-*"} {
			if m, _ := filepath.Glob(g); len(m) < 2 {
				t.Fatalf("%s: %d seeds; run go test -run TestXMLSeeds -update", g, len(m))
			}
		}
		return
	}
	env := signingtest.New(t, signingtest.Options{})
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := []byte(invoiceXML)
	write("xml-seed-enveloped-bb.xml", signXAdES(t, env, env.Seal, in, xades.Enveloped, signing.LevelB))
	write("xml-seed-enveloped-blta.xml", signXAdES(t, env, env.Seal, in, xades.Enveloped, signing.LevelLTA))
	write("xml-seed-enveloping-bt.xml", signXAdES(t, env, env.Seal, in, xades.Enveloping, signing.LevelT))
	write("xml-seed-detached-blt.xml", signXAdES(t, env, env.Seal, in, xades.Detached, signing.LevelLT))
	write("xml-seed-xmlsec1-id.xml", xmlsecSignArgs(t, newSoftwareSigner(t, env, false, false), soapTemplate, "--id-attr:Id", "urn:example:env:Body"))
	write("asic-seed-cades.asice", asicCAdES(t, env, cades.Options{Timestamper: env.TSA}))
	write("asic-seed-xades.asice", asicXAdES(t, env, signing.LevelLT))
}

// fuzzValidate is the body of the XML and ASiC-E fuzzers: a report or an error of the
// package's kinds, never a panic, and never TOTAL-PASSED under a bogus anchor.
func fuzzValidate(t *testing.T, doc []byte) {
	anchor := &x509.Certificate{Raw: []byte{0x30, 0}}
	when := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	content := []byte(invoiceXML)
	opts := validation.Options{TrustAnchors: []*x509.Certificate{anchor}, Time: func() time.Time { return when },
		Content: bytes.NewReader(content), ContentSize: int64(len(content)), MaxSize: 1 << 20}
	rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
	if err != nil {
		if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
			t.Fatalf("an error of no kind: %v", err)
		}
		return
	}
	if rep.Indication == validation.TotalPassed {
		t.Fatalf("passed with a bogus anchor:\n%s", rep.Text())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	_ = rep.Text()
}

func addSeeds(f *testing.F, glob string) {
	m, _ := filepath.Glob(glob)
	if len(m) == 0 {
		f.Fatalf("no seeds %s; run go test -run TestXMLSeeds -update", glob)
	}
	for _, s := range m {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzValidateXML fuzzes the XML parser and the XML-DSig / XAdES validation.
func FuzzValidateXML(f *testing.F) {
	shortMinimize(f)
	addSeeds(f, "testdata/xml-seed-*")
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><d>&e;</d>`))
	f.Fuzz(fuzzValidate)
}

// FuzzValidateASiC fuzzes the container reader and what it hands on.
func FuzzValidateASiC(f *testing.F) {
	shortMinimize(f)
	addSeeds(f, "testdata/asic-seed-*")
	f.Fuzz(fuzzValidate)
}
