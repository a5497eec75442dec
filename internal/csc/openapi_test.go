package csc

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vula-eid/vula/internal/apitest"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestOpenAPI calls the CSC methods of a real service over HTTP and checks every answer against
// api/openapi.yaml with kin-openapi (apitest): the status is documented, each key is declared,
// each required key is there, each value has its type and is in its enum; refusals are CSCError
// bodies.
func TestOpenAPI(t *testing.T) {
	spec := apitest.Load(t)
	e := newEnv(t)
	s := e.docReplica(t)
	o := e.official(t, s, "1100000001")
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial(o.sub), Issuer: "http://vula.test", Log: e.log, TSA: s.cfg.Timestamper}.Register(mux)
	call := func(method string, req any) map[string]any {
		t.Helper()
		body, _ := json.Marshal(req)
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/csc/v2/"+method, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		mux.ServeHTTP(w, r)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: %d %s", method, w.Code, w.Body)
		}
		spec.CheckResponse(t, r, w.Code, w.Header(), w.Body.Bytes())
		return out
	}
	call("info", map[string]any{})
	call("credentials/list", map[string]any{"credentialInfo": true, "certificates": "chain", "certInfo": true})
	call("credentials/info", map[string]any{"credentialID": o.cred.ID, "certificates": "chain", "certInfo": true})
	pdf := signingtest.PDF("openapi")
	xml := []byte("<a>openapi</a>")
	hs := b64s(DocumentDigest(crypto.SHA256, pdf), DocumentDigest(crypto.SHA256, xml))
	a := call("credentials/authorize", map[string]any{"credentialID": o.cred.ID, "numSignatures": 2, "hashes": hs, "hashAlgorithmOID": oidSHA256,
		"authData": []map[string]string{{"id": "PIN", "value": o.pw}, {"id": "OTP", "value": e.code(t, o, 0)}}})
	x := call("credentials/extendTransaction", map[string]any{"credentialID": o.cred.ID, "SAD": a["SAD"]})
	out := call("signatures/signDoc", map[string]any{"credentialID": o.cred.ID, "SAD": x["SAD"], "returnValidationInfo": true, "documents": []map[string]any{
		{"document": base64.StdEncoding.EncodeToString(pdf), "signature_format": "P", "conformance_level": "Ades-B-T", "signAlgo": "1.2.840.10045.4.3.2"},
		{"document": base64.StdEncoding.EncodeToString(xml), "signature_format": "X", "signed_envelope_property": "Detached", "signAlgo": "1.2.840.10045.4.3.2"},
	}})
	if out["DocumentWithSignature"] == nil || out["SignatureObject"] == nil || out["validationInfo"] == nil {
		t.Fatalf("signDoc: %v", out)
	}
	call("signatures/signDoc", map[string]any{"credentialID": o.cred.ID, "SAD": x["SAD"], "documents": []map[string]any{
		{"document": base64.StdEncoding.EncodeToString(pdf), "signature_format": "P", "signAlgo": "1.2.840.10045.4.3.2"}}})
	call("signatures/timestamp", map[string]any{"hash": hs[0], "hashAlgorithmOID": oidSHA256})
}

func b64s(bs ...[]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}
