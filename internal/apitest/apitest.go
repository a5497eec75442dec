// Package apitest checks Vula's HTTP answers against api/openapi.yaml in tests, with
// kin-openapi. Load reads and validates the document once per test; CheckResponse fails the
// test unless an answer matches the operation its request routes to; CheckSchema does the same
// for a value of one of components.schemas. Both are strict: an object key the schema does not
// declare fails the test, so that the spec stays a true description of what Vula sends.
package apitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Spec is api/openapi.yaml, loaded, validated and closed (see Load).
type Spec struct {
	Doc    *openapi3.T
	router routers.Router
}

// Load reads api/openapi.yaml from the module root (found from the working directory up, so a
// test in any package can call it), fails the test unless the document is valid OpenAPI, and
// closes its object schemas (see closeObjects).
func Load(t testing.TB) *Spec {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return LoadFile(t, filepath.Join(root, "api", "openapi.yaml"))
}

// LoadFile is Load for the document at path.
func LoadFile(t testing.TB, path string) *Spec {
	t.Helper()
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", path, err)
	}
	if err := closeObjects(doc); err != nil {
		t.Fatal(err)
	}
	// The servers list names the default listener; tests call handlers in process (httptest's
	// example.com) or on a free port, so operations are found by path and method alone.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router over %s: %v", path, err)
	}
	return &Spec{Doc: doc, router: router}
}

// CheckResponse fails the test unless status, header and body are an answer the spec allows to
// req: req's path and method name an operation, status is one of its responses, and the body
// matches that response's schema for the Content-Type in header.
func (s *Spec) CheckResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := s.responseErr(req, status, header, body); err != nil {
		t.Errorf("%s %s: answer %d does not match the spec: %v\nbody: %.2000s", req.Method, req.URL.Path, status, err, body)
	}
}

// CheckSchema fails the test unless body, JSON, is a value of components.schemas[name].
func (s *Spec) CheckSchema(t testing.TB, name string, body []byte) {
	t.Helper()
	if err := s.schemaErr(name, body); err != nil {
		t.Errorf("not a %s: %v\nbody: %.2000s", name, err, body)
	}
}

func (s *Spec) responseErr(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("no operation in the spec: %w", err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.Options.WithCustomSchemaErrorFunc(briefError)
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(req.Context(), in)
}

func (s *Spec) schemaErr(name string, body []byte) error {
	ref := s.Doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("the spec has no schema %s", name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return ref.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse(), openapi3.EnableJSONSchema2020(),
		openapi3.SetSchemaErrorMessageCustomizer(briefError))
}

// briefError names where the value fails and why, without kin-openapi's dump of the whole schema
// and value (the test prints the body); a scalar value is named.
func briefError(err *openapi3.SchemaError) string {
	if err.Reason == "" {
		return ""
	}
	msg := fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	switch v := err.Value.(type) {
	case string, float64, bool:
		msg += fmt.Sprintf(" (the value: %q)", fmt.Sprint(v))
	}
	return msg
}

// closeObjects sets additionalProperties: false on every object schema that says nothing about
// additional properties. JSON Schema allows undeclared keys by default, and kin-openapi has no
// option to refuse them; the tests refuse them so that every key Vula sends is documented.
// Members of allOf/anyOf/oneOf stay open: each sees only its own properties, so closing one
// would refuse its siblings' keys.
func closeObjects(doc *openapi3.T) error {
	members := map[*openapi3.Schema]bool{}
	err := doc.WalkSchemas(func(_ string, ref *openapi3.SchemaRef) error {
		for _, list := range []openapi3.SchemaRefs{ref.Value.AllOf, ref.Value.AnyOf, ref.Value.OneOf} {
			for _, m := range list {
				if m != nil && m.Value != nil {
					members[m.Value] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return doc.WalkSchemas(func(_ string, ref *openapi3.SchemaRef) error {
		s := ref.Value
		isObject := s.Type.Is(openapi3.TypeObject) || (s.Type.IsEmpty() && len(s.Properties) > 0)
		if !isObject || members[s] || s.AdditionalProperties.Has != nil || s.AdditionalProperties.Schema != nil ||
			s.UnevaluatedProperties.Has != nil || s.UnevaluatedProperties.Schema != nil || len(s.PatternProperties) > 0 {
			return nil
		}
		s.AdditionalProperties.Has = openapi3.Ptr(false)
		return nil
	})
}

// moduleRoot is the nearest directory above the working directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("apitest: no go.mod above the working directory")
		}
		dir = parent
	}
}
