package csc

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestOpenAPI calls the CSC methods of a real service over HTTP and checks every answer against
// api/openapi.yaml: each key is declared, each required key is there, each value is in its
// enum; refusals are CSCError bodies.
func TestOpenAPI(t *testing.T) {
	raw, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas map[string]map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	var check func(path string, v any, schema map[string]any)
	check = func(path string, v any, schema map[string]any) {
		if ref, ok := schema["$ref"].(string); ok {
			if schema = spec.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]; schema == nil {
				t.Fatalf("%s: no schema %s", path, ref)
			}
		}
		if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
			t.Errorf("%s: %v is not in %v", path, v, enum)
		}
		switch x := v.(type) {
		case map[string]any:
			props, _ := schema["properties"].(map[string]any)
			for k, val := range x {
				p, ok := props[k].(map[string]any)
				if !ok {
					t.Errorf("%s.%s is not in the schema", path, k)
					continue
				}
				check(path+"."+k, val, p)
			}
			req, _ := schema["required"].([]any)
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					t.Errorf("%s: required %s missing", path, r)
				}
			}
		case []any:
			items, _ := schema["items"].(map[string]any)
			for i, e := range x {
				check(path+"["+strconv.Itoa(i)+"]", e, items)
			}
		}
	}
	// The 200 answer's schema of a method, from its path.
	okSchema := func(method string) map[string]any {
		op, _ := spec.Paths["/csc/v2/"+method]["post"].(map[string]any)
		resp, _ := op["responses"].(map[string]any)
		r200, _ := resp["200"].(map[string]any)
		content, _ := r200["content"].(map[string]any)
		js, _ := content["application/json"].(map[string]any)
		s, _ := js["schema"].(map[string]any)
		if s == nil {
			t.Fatalf("openapi has no 200 application/json schema for %s", method)
		}
		return s
	}

	e := newEnv(t)
	s := e.docReplica(t)
	o := e.official(t, s, "1100000001")
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial(o.sub), Issuer: "http://vula.test", Log: e.log, TSA: s.cfg.Timestamper}.Register(mux)
	call := func(method string, req any) map[string]any {
		t.Helper()
		body, _ := json.Marshal(req)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/csc/v2/"+method, bytes.NewReader(body)))
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: %d %s", method, w.Code, w.Body)
		}
		if w.Code == 200 {
			check(method, out, okSchema(method))
		} else {
			check(method+" refusal", out, map[string]any{"$ref": "#/components/schemas/CSCError"})
		}
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
