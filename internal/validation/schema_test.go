package validation_test

import (
	"encoding/json"
	"testing"

	"github.com/vula-eid/vula/internal/apitest"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// TestSchema checks real reports (B-LTA: every part filled) against api/openapi.yaml with
// kin-openapi (apitest): every key is a declared property, every required one is there, values
// have their types and enum values are in their enums.
func TestSchema(t *testing.T) {
	spec := apitest.Load(t)
	env := signingtest.New(t, signingtest.Options{})
	rep := validate(t, signPDF(t, env, env.Seal, signingtest.PDF("schema"), signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)})
	// And the XML and container reports: signed objects, container entries, archive timestamps.
	reports := []validation.Report{rep,
		validate(t, signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)}),
		validate(t, asicXAdES(t, env, signing.LevelLTA), validation.Options{TrustAnchors: anchors(env)}),
		validate(t, asicCAdES(t, env, cades.Options{Timestamper: env.TSA}), validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}),
	}
	for _, rep := range reports {
		// As the handler writes it.
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		spec.CheckSchema(t, "ValidationReport", b)
	}
}
