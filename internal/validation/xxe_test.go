package validation_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestXXE: DTDs, external and parameter entities and entity expansion are refused before the
// document is parsed, with an error wrapping signing.ErrInvalid (400 at the HTTP edge), and
// nothing is fetched: a listener at the URLs they name gets no request. A Reference to an
// external URI fails its signature, also without a request.
func TestXXE(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(`<!ENTITY x "fetched">`))
	}))
	defer srv.Close()
	u := srv.URL
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">` +
		`<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
		`<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">` +
		`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">` +
		`<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><lolz>&lol9;</lolz>`
	signed := string(signXAdES(t, env, env.Seal, []byte(invoiceXML), "enveloped", signing.LevelB))
	body := strings.TrimPrefix(signed, `<?xml version="1.0" encoding="UTF-8"?>`)
	cases := map[string]string{
		"external entity":          `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "` + u + `/xxe">]><d>&xxe;</d>`,
		"external entity, file":    `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><d>&xxe;</d>`,
		"parameter entity":         `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % p SYSTEM "` + u + `/dtd"> %p;]><d>&x;</d>`,
		"external DTD":             `<?xml version="1.0"?><!DOCTYPE d SYSTEM "` + u + `/d.dtd"><d/>`,
		"billion laughs":           laughs,
		"DTD before a signed body": `<?xml version="1.0"?><!DOCTYPE inv:Invoice [<!ENTITY e SYSTEM "` + u + `/e">]>` + body,
		"BOM and blanks, then DTD": "\xef\xbb\xbf \n<!DOCTYPE d [<!ENTITY e \"x\">]><d>&e;</d>",
	}
	opts := validation.Options{TrustAnchors: anchors(env)}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := validation.Validate(context.Background(), strings.NewReader(doc), int64(len(doc)), opts)
			if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), "DTD") {
				t.Fatalf("err %v, want ErrInvalid naming the DTD", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusing took %v", d) // not a timing assertion of speed: expansion would take forever
			}
		})
	}
	t.Run("in an ASiC-E container", func(t *testing.T) {
		c := zipOf(t, []zipEntry{{"mimetype", []byte("application/vnd.etsi.asic-e+zip"), true}, {"a.txt", []byte("a"), false},
			{"META-INF/signatures.xml", []byte(cases["external entity"]), false}})
		_, err := validation.Validate(context.Background(), bytes.NewReader(c), int64(len(c)), opts)
		if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), "DTD") {
			t.Fatalf("err %v, want ErrInvalid naming the DTD", err)
		}
	})
	t.Run("a Reference to an external URI", func(t *testing.T) {
		doc := strings.Replace(signed, `URI=""`, `URI="`+u+`/data"`, 1)
		rep := validate(t, []byte(doc), opts)
		if rep.Indication != validation.TotalFailed || rep.SubIndication != validation.FormatFailure ||
			!strings.Contains(rep.Signatures[0].Checks[len(rep.Signatures[0].Checks)-1].Message, "external") {
			t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
		}
	})
	t.Run("HTTP edge", func(t *testing.T) {
		mux := http.NewServeMux()
		validation.Handler{Spool: spool(t), TrustAnchors: anchors(env)}.Register(mux)
		api := httptest.NewServer(mux)
		defer api.Close()
		for name, doc := range cases {
			resp, err := http.Post(api.URL+"/api/v1/validate", "application/xml", strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
			}
		}
	})
	if n := hits.Load(); n != 0 {
		t.Fatalf("the listener got %d requests: something was fetched", n)
	}
}
