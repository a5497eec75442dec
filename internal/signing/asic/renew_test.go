package asic_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
)

func entries(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if zr.File[0].Name != "mimetype" || zr.File[0].Method != zip.Store {
		t.Fatal("mimetype is not the first, stored entry")
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name], err = io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Renewing a B-LT container of each kind replaces only its signature entry, which gains an
// archive timestamp; the CAdES one still verifies over the unchanged manifest with openssl.
func TestRenew(t *testing.T) {
	need(t, "openssl")
	e := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	files := testFiles(t, e.Dir)
	rn := asic.Renewers{
		CAdES: func(ctx context.Context, p7s []byte) ([]byte, error) {
			return cades.AddArchiveTimestamp(ctx, p7s, e.TSA, e.PKI)
		},
		XAdES: func(ctx context.Context, doc []byte, open func(string) (io.ReadCloser, error)) ([]byte, error) {
			return xades.Renew(ctx, doc, e.TSA, e.PKI, open)
		},
	}
	var c, x bytes.Buffer
	if err := asic.WriteCAdES(ctx, &c, e.Seal, files, cades.Options{SigningTime: time.Now(), Timestamper: e.TSA, Revocation: e.PKI}); err != nil {
		t.Fatal(err)
	}
	xs := asic.XMLSignerFunc(func(ctx context.Context, fs []asic.File) ([]byte, error) {
		xf := make([]xades.File, len(fs))
		for i, f := range fs {
			xf[i] = xades.File{Name: f.Name, MimeType: f.MimeType, Open: f.Open}
		}
		return xades.SignFiles(ctx, xf, e.Seal, xades.Options{Level: signing.LevelLT, Timestamper: e.TSA, Revocation: e.PKI})
	})
	if err := asic.WriteXAdES(ctx, &x, xs, files, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name, sig, marker string
		in                []byte
	}{
		{"cades", asic.CAdESSigName, "\x06\x06\x04\x00\x8d\x45\x02\x04", c.Bytes()}, // the OID 0.4.0.1733.2.4
		{"xades", asic.XAdESSigName, "ArchiveTimeStamp", x.Bytes()},
	} {
		t.Run(k.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := asic.Renew(ctx, bytes.NewReader(k.in), int64(len(k.in)), &out, rn); err != nil {
				t.Fatal(err)
			}
			before, after := entries(t, k.in), entries(t, out.Bytes())
			if len(before) != len(after) {
				t.Fatalf("%d entries, had %d", len(after), len(before))
			}
			for name, b := range before {
				if name == k.sig {
					if bytes.Contains(b, []byte(k.marker)) || !bytes.Contains(after[name], []byte(k.marker)) {
						t.Fatalf("%s: no archive timestamp added", name)
					}
					continue
				}
				if !bytes.Equal(b, after[name]) {
					t.Fatalf("%s changed", name)
				}
			}
			if k.name == "cades" {
				sig := e.WriteFile(t, "renewed.p7s", after[k.sig])
				man := e.WriteFile(t, "manifest.xml", after[asic.ManifestName])
				if msg, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
					"-content", man, "-CAfile", e.RootPEM, "-out", os.DevNull).CombinedOutput(); err != nil {
					t.Fatalf("openssl cms -verify: %v\n%s", err, msg)
				}
			}
		})
	}
	for _, junk := range [][]byte{[]byte("not a zip"), {}} {
		if err := asic.Renew(ctx, bytes.NewReader(junk), int64(len(junk)), io.Discard, rn); !errors.Is(err, signing.ErrInvalid) {
			t.Fatalf("Renew(%q): %v", junk, err)
		}
	}
}
