package trustlist_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/validation"
)

// ownList is the platform's list over env's PKI, as serve publishes it.
func ownList(env *signingtest.Env) trustlist.Publication {
	personCA, _ := env.PKI.Certificate(certs.NamePersonCA)
	sealCA, _ := env.PKI.Certificate(certs.NameSealCA)
	since := time.Now().Add(-time.Hour)
	return trustlist.Publication{Operator: "Vula Demo", Territory: "XK", InfoURI: "https://vula.example/pki", Location: "https://vula.example/pki/tsl.xml",
		Services: []trustlist.PublishedService{
			{Name: "Qualified CA for Natural Persons", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: since, Certificate: personCA, Additional: []string{trustlist.ForESignatures}},
			{Name: "Qualified CA for Legal Persons", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: since, Certificate: sealCA, Additional: []string{trustlist.ForESeals}},
			{Name: "Qualified Timestamping Unit 1", Type: trustlist.TypeQTST, Status: trustlist.StatusGranted, Since: since, Certificate: env.PKI.TSA().Cert},
		}}
}

func tslSigner(env *signingtest.Env) signing.Signer {
	iss := env.PKI.TSLSigner()
	return signing.Signer{Key: iss.Signer, Cert: iss.Cert, Chain: env.PKI.Chain(iss.Cert)}
}

func TestPublishOwnList(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	now := time.Now()
	pub := &trustlist.Publisher{Settings: env.DB, Signer: tslSigner(env), List: ownList(env), Period: 24 * time.Hour,
		Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	tl, err := pub.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// xmlsec1 verifies the list's signature up to the platform's root.
	if _, err := exec.LookPath("xmlsec1"); err != nil {
		t.Skip("xmlsec1 is not installed (test/deps.sh installs it)")
	}
	file := filepath.Join(t.TempDir(), "tsl.xml")
	must(t, os.WriteFile(file, tl, 0o600))
	out, err := exec.Command("xmlsec1", "--verify", "--trusted-pem", env.RootPEM, "--untrusted-pem", env.ChainPEM,
		"--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", file).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("xmlsec1 --verify: %v\n%s", err, out)
	}

	// Another validator that loads it with the list signer's certificate finds the platform's
	// seals qualified (QESeal) and its officials' signatures QESig.
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "vula.xml", Data: tl, Signers: []*x509.Certificate{env.PKI.TSLSigner().Cert}}}}, validation.ListVerifier{})
	if err != nil {
		t.Fatal(err)
	}
	l := set.Lists()[0]
	if l.SequenceNumber != 1 || l.Territory != "XK" || !l.NextUpdate.Equal(now.UTC().Truncate(time.Second).Add(24*time.Hour)) {
		t.Fatalf("issue %d of %s, next update %s", l.SequenceNumber, l.Territory, l.NextUpdate)
	}
	for _, c := range []struct {
		s    signing.Signer
		want string
	}{{env.Seal, "QESeal"}, {env.Official, "QESig"}} {
		r := set.Qualify(append([]*x509.Certificate{c.s.Cert}, c.s.Chain...), now, now)
		if r.Qualification != c.want {
			t.Errorf("%s: %+v, want %s", c.s.Cert.Subject, r, c.want)
		}
	}
	if a := set.Anchors(now, true); len(a) != 1 || !a[0].Equal(env.PKI.TSA().Cert) {
		t.Errorf("timestamping anchors %v, want the TSU", a)
	}

	// The same list again: the same issue. A changed list, or half the period later: the next.
	again, err := pub.Current(ctx)
	must(t, err)
	if !bytes.Equal(again, tl) {
		t.Fatal("an unchanged list was issued again")
	}
	pub.List.Services = pub.List.Services[:2]
	second, err := pub.Current(ctx)
	must(t, err)
	if l, err := trustlist.Parse(second); err != nil || l.SequenceNumber != 2 || len(l.Providers[0].Services) != 2 {
		t.Fatalf("after a change: %+v, %v", l, err)
	}
	now = now.Add(13 * time.Hour)
	third, err := pub.Current(ctx)
	must(t, err)
	if l, err := trustlist.Parse(third); err != nil || l.SequenceNumber != 3 {
		t.Fatalf("half a period later: %+v, %v", l, err)
	}
	// A second replica (or a restart) serves the stored issue; it does not issue a fourth.
	replica := &trustlist.Publisher{Settings: env.DB, Signer: pub.Signer, List: pub.List, Period: pub.Period, Now: pub.Now, Log: pub.Log}
	got, err := replica.Current(ctx)
	must(t, err)
	if !bytes.Equal(got, third) {
		t.Fatal("a replica issued its own list")
	}

	// Over HTTP, with the TS 119 612 media type.
	srv := httptest.NewServer(pub)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != trustlist.MediaType || !bytes.Equal(body, third) {
		t.Fatalf("GET: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	must(t, err)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}
