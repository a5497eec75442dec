package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"

	"github.com/vula-eid/vula/internal/validation"
)

// TestValidateXMLEndToEnd: XAdES (enveloped B-LTA) and ASiC-E (CAdES and XAdES) seals made by
// the real binary's API validate through its POST /api/v1/validate; a tampered XAdES fails, a
// container with a file added after sealing is TOTAL-FAILED with the file shown unsigned, and
// an XML document with a DTD is 400.
func TestValidateXMLEndToEnd(t *testing.T) {
	t.Parallel()
	data, env, secret := sealedSetup(t)
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	tax := sealHTTP(base, "tax-batch", secret)
	validate := func(t *testing.T, ct string, doc []byte) validation.Report {
		t.Helper()
		resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", ct, doc)
		var rep validation.Report
		if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return rep
	}

	xmlDoc := []byte(`<?xml version="1.0" encoding="UTF-8"?><vendim nr="42"><teksti>Vendim për taksat</teksti></vendim>`)
	resp, sealed := postDoc(t, tax, base+"/api/v1/seal?format=xades&packaging=enveloped&level=B-LTA", "application/xml", xmlDoc)
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}
	if rep := validate(t, "application/xml", sealed); rep.Indication != validation.TotalPassed || rep.Signatures[0].Format != "XAdES-BASELINE" ||
		rep.Signatures[0].Level != "B-LTA" || rep.Signatures[0].Qualification != "QESeal" {
		t.Fatalf("XAdES: %+v", rep)
	}
	if rep := validate(t, "application/xml", bytes.Replace(sealed, []byte(`nr="42"`), []byte(`nr="43"`), 1)); rep.Indication != validation.TotalFailed {
		t.Fatalf("tampered XAdES: %s", rep.Indication)
	}
	if resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", "application/xml",
		[]byte(`<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>`)); resp.StatusCode != 400 {
		t.Fatalf("DTD: %d %s", resp.StatusCode, body)
	}

	for _, format := range []string{"asice", "asice-xades"} {
		t.Run(format, func(t *testing.T) {
			var mp bytes.Buffer
			mw := multipart.NewWriter(&mp)
			for _, f := range []struct{ name, ct, body string }{{"vendim.xml", "application/xml", string(xmlDoc)}, {"annex.txt", "text/plain", "annex\n"}} {
				h := textproto.MIMEHeader{}
				h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
				h.Set("Content-Type", f.ct)
				w, _ := mw.CreatePart(h)
				w.Write([]byte(f.body))
			}
			mw.Close()
			resp, container := postDoc(t, tax, base+"/api/v1/seal?format="+format, mw.FormDataContentType(), mp.Bytes())
			if resp.StatusCode != 200 {
				t.Fatalf("seal: %d %s", resp.StatusCode, container)
			}
			rep := validate(t, "application/vnd.etsi.asic-e+zip", container)
			if rep.Indication != validation.TotalPassed || rep.Format != "ASiC-E" {
				t.Fatalf("%+v", rep)
			}
			added := addZipEntry(t, container, "added.txt", []byte("pay mallory"))
			if rep := validate(t, "application/vnd.etsi.asic-e+zip", added); rep.Indication != validation.TotalFailed || rep.Signatures[0].Indication != validation.TotalPassed {
				t.Fatalf("an added entry: %+v", rep)
			}
		})
	}
}

// addZipEntry copies a ZIP's entries as they are and appends one more.
func addZipEntry(t *testing.T, z []byte, name string, data []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
