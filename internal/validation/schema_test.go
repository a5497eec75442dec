package validation_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// TestSchema checks a real report (B-LTA: every part filled) against api/openapi.yaml: every
// key is a declared property, every required one is there, enum values are in their enums.
func TestSchema(t *testing.T) {
	raw, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Components struct {
			Schemas map[string]map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	env := signingtest.New(t, signingtest.Options{})
	rep := validate(t, signPDF(t, env, env.Seal, signingtest.PDF("schema"), signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)})
	// And the XML and container reports: signed objects, container entries, archive timestamps.
	reports := []validation.Report{rep,
		validate(t, signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)}),
		validate(t, asicXAdES(t, env, signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)}),
		validate(t, asicCAdES(t, env, cades.Options{Timestamper: env.TSA}), validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}),
	}
	var check func(path string, v any, schema map[string]any)
	check = func(path string, v any, schema map[string]any) {
		if ref, ok := schema["$ref"].(string); ok {
			schema = spec.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
			if schema == nil {
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
				check(path+"["+string(rune('0'+i%10))+"]", e, items)
			}
		}
	}
	for _, rep := range reports {
		b, _ := json.Marshal(rep)
		var doc any
		json.Unmarshal(b, &doc)
		check("report("+rep.Format+")", doc, map[string]any{"$ref": "#/components/schemas/ValidationReport"})
	}
}
