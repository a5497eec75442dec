package apitest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheckResponse runs the checks over api/openapi.yaml itself: a true answer passes, and each
// way of being untrue (an undeclared key, at the top or nested, a missing required key, a value
// outside its enum, a string not in its format, an undocumented status, a path the spec lacks) is caught.
func TestCheckResponse(t *testing.T) {
	s := Load(t)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	sad := httptest.NewRequest(http.MethodPost, "/csc/v2/credentials/authorize", nil)
	info := httptest.NewRequest(http.MethodPost, "/csc/v2/info", nil)
	for _, c := range []struct {
		name   string
		req    *http.Request
		status int
		body   string
		bad    string // a word of the error, or "" when the answer is valid
	}{
		{"valid", sad, 200, `{"SAD":"x","expiresIn":300}`, ""},
		{"valid refusal", sad, 400, `{"error":"invalid_pin","error_description":"no"}`, ""},
		{"undeclared key", sad, 200, `{"SAD":"x","expiresIn":300,"extra":1}`, "extra"},
		{"undeclared nested key", info, 200, `{"specs":"2.0.0.2","name":"Vula","methods":["info"],"authType":["oauth2code"],"signAlgorithms":{"algos":[],"oids":[]}}`, "oids"},
		{"required key missing", sad, 200, `{"SAD":"x"}`, "expiresIn"},
		{"value outside its enum", sad, 400, `{"error":"teapot"}`, "teapot"},
		{"wrong type", sad, 200, `{"SAD":"x","expiresIn":"soon"}`, "expiresIn"},
		{"not base64 (format byte)", httptest.NewRequest(http.MethodPost, "/csc/v2/signatures/timestamp", nil), 200, `{"timestamp":"*not base64*"}`, "timestamp"},
		{"undocumented status", sad, 418, `{"error":"invalid_request"}`, "status is not supported"},
		{"no such path", httptest.NewRequest(http.MethodPost, "/csc/v2/nothing", nil), 200, `{}`, "no operation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := s.responseErr(c.req, c.status, jsonHeader, []byte(c.body))
			switch {
			case c.bad == "" && err != nil:
				t.Fatalf("refused a valid answer: %v", err)
			case c.bad != "" && err == nil:
				t.Fatal("accepted")
			case c.bad != "" && !strings.Contains(err.Error(), c.bad):
				t.Fatalf("error does not name %q: %v", c.bad, err)
			}
		})
	}
}

// TestCheckSchema: a component's values are checked as strictly as answers, formats included.
func TestCheckSchema(t *testing.T) {
	s := Load(t)
	if err := s.schemaErr("Check", []byte(`{"name":"byte-range","result":"PASSED"}`)); err != nil {
		t.Fatalf("refused a valid Check: %v", err)
	}
	for body, word := range map[string]string{
		`{"name":"byte-range","result":"PASSED","why":"x"}`: "why",
		`{"name":"byte-range","result":"MAYBE"}`:            "MAYBE",
		`{"name":"byte-range"}`:                             "result",
	} {
		if err := s.schemaErr("Check", []byte(body)); err == nil || !strings.Contains(err.Error(), word) {
			t.Errorf("%s: %v, want an error naming %q", body, err, word)
		}
	}
	ca := `{"name":"root","subject":"CN=Root","serial":"01","certificate":"http://127.0.0.1/pki/root.crt","not_after":"%s"}`
	if err := s.schemaErr("CA", fmt.Appendf(nil, ca, "2036-01-01T00:00:00Z")); err != nil {
		t.Errorf("refused a valid CA: %v", err)
	}
	if err := s.schemaErr("CA", fmt.Appendf(nil, ca, "next year")); err == nil || !strings.Contains(err.Error(), "not_after") {
		t.Errorf("a date-time that is not one: %v, want an error naming not_after", err)
	}
	if err := s.schemaErr("NoSuchSchema", []byte(`{}`)); err == nil {
		t.Error("an unknown schema name was accepted")
	}
}
