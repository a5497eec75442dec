package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"html"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/internal/testenv"
)

// testCA is a CA made in the test: the card issuer (with its OCSP responder, which answers
// revoked for the serials in revoked and fails while down) or the card listener's TLS CA.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	file string // its certificate, PEM
	ocsp *httptest.Server

	mu      sync.Mutex
	revoked map[string]bool
	down    bool
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name, Country: []string{"XK"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{key: key, revoked: map[string]bool{}, file: filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".pem")}
	ca.cert, _ = x509.ParseCertificate(der)
	writePEM(t, ca.file, "CERTIFICATE", der)
	ca.ocsp = httptest.NewServer(http.HandlerFunc(ca.respond))
	t.Cleanup(ca.ocsp.Close)
	return ca
}

func (ca *testCA) respond(w http.ResponseWriter, r *http.Request) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	req, err := ocsp.ParseRequest(body)
	if ca.down || err != nil {
		http.Error(w, "unavailable", http.StatusInternalServerError)
		return
	}
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	if ca.revoked[req.SerialNumber.String()] {
		tmpl.Status, tmpl.RevokedAt = ocsp.Revoked, time.Now().Add(-time.Minute)
	}
	resp, err := ocsp.CreateResponse(ca.cert, ca.cert, tmpl, ca.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

// issue signs a certificate for pub from tmpl's fields and returns its DER.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey) []byte {
	t.Helper()
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// card is the template of a card certificate for a personal number, valid from nb to na.
func (ca *testCA) card(number string, nb, na time.Time) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: "Arta Krasniqi", SerialNumber: "PNOXK-" + number, Country: []string{"XK"}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		OCSPServer: []string{ca.ocsp.URL}}
}

// cardFiles issues a card certificate with a key in a file (for curl) and returns both paths.
func (ca *testCA) cardFiles(t *testing.T, dir, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := ca.issue(t, tmpl, key.Public())
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cardServer is vula serve with the ID card login on its own TLS listener.
type cardServer struct {
	*replica
	base        string
	issuer, tls *testCA
	dir         string
	number      string
	cardAddr    string
}

func startCardServer(t *testing.T) *cardServer {
	t.Helper()
	vulaBinary(t)
	dir, data := t.TempDir(), t.TempDir()
	cs := &cardServer{dir: dir, number: "1234567890"}
	cs.issuer = newTestCA(t, dir, "Vula Test Card CA")
	cs.tls = newTestCA(t, dir, "Vula Test TLS CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := cs.tls.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, key.Public())
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, filepath.Join(dir, "tls.pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, "tls-key.pem"), "PRIVATE KEY", kder)
	cardAddr := freePort(t)
	// Registered at a service centre: proofed at high.
	vula(t, []string{"VULA_DATA_DIR=" + data, "CITIZEN_PW=a long and secret passphrase"}, "persons", "create", cs.number,
		"--given-name", "Arta", "--family-name", "Krasniqi", "--birthdate", "1990-04-12", "--proofing", "high", "--password-env", "CITIZEN_PW")
	cs.replica = startReplicaAt(t, freePort(t), data, []string{"VULA_IDP_CARD_LISTEN=" + cardAddr,
		"VULA_IDP_CARD_CERT_FILE=" + filepath.Join(dir, "tls.pem"), "VULA_IDP_CARD_KEY_FILE=" + filepath.Join(dir, "tls-key.pem"),
		"VULA_IDP_CARD_CLIENT_CAS=" + cs.issuer.file, "VULA_IDP_CARD_SERIAL_PREFIX=PNOXK-"})
	cs.ready(t, http.StatusOK)
	cs.base, cs.cardAddr = "http://"+cs.addr, cardAddr
	return cs
}

var (
	cardLinkRE = regexp.MustCompile(`<a class="method" href="(/login/card/start\?flow=[^"]+)"`)
	hiddenRE   = regexp.MustCompile(`name="(flow|csrf)" value="([^"]*)"`)
)

// curl runs curl with a cookie jar and returns the last page's status and body.
func curl(t *testing.T, jar string, args ...string) (string, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "-L", "-b", jar, "-c", jar, "-w", "\n%{http_code}"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	return s[i+1:], s[:i]
}

// curlHeaders runs curl and returns the status and the headers of its answer.
func curlHeaders(t *testing.T, args ...string) (string, http.Header) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--http1.1", "-o", "/dev/null", "-D", "-"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return strconv.Itoa(r.StatusCode), r.Header
}

// curlCardLogin logs in at the demo relying party at acr high with the card in certFile and
// keyFile, with curl: the login page, the card listener, consent. It returns the last page.
func (cs *cardServer) curlCardLogin(t *testing.T, certFile, keyFile string) (string, string) {
	t.Helper()
	jar := filepath.Join(t.TempDir(), "cookies")
	code, body := curl(t, jar, cs.base+"/demo/?acr=high")
	m := cardLinkRE.FindStringSubmatch(body)
	if code != "200" || m == nil {
		t.Fatalf("login page %s without the card link:\n%.500s\n%s", code, body, cs.logs)
	}
	// The login page's link goes to the main listener, which sends the browser on to the card's.
	link := cs.base + html.UnescapeString(m[1])
	code, body = curl(t, jar, "--cacert", cs.tls.file, "--cert", certFile, "--key", keyFile, link)
	if code != "200" || !strings.Contains(body, `name="decision"`) {
		return code, body
	}
	form := url.Values{"decision": {"allow"}}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], m[2])
	}
	return curl(t, jar, "-d", form.Encode(), cs.base+"/consent")
}

// TestCardCurl logs in with an ID card through curl --cert against the real binary: the relying
// party's ID token says acr high and amr sc; a revoked card, one of an unknown CA, an expired
// one are refused with a page saying why; a responder that is down is 503.
func TestCardCurl(t *testing.T) {
	t.Parallel()
	cs := startCardServer(t)
	now := time.Now()
	cert, key := cs.issuer.cardFiles(t, cs.dir, "card", cs.issuer.card(cs.number, now.Add(-time.Hour), now.Add(time.Hour)))
	code, body := cs.curlCardLogin(t, cert, key)
	if code != "200" || !strings.Contains(body, "You are logged in") || !strings.Contains(body, "http://eidas.europa.eu/LoA/high") ||
		!strings.Contains(body, "[sc hwk]") {
		t.Fatalf("card login: %s\n%.1500s\n%s", code, body, cs.logs)
	}

	// The card listener is behind the same edge as the main one: request id, security headers,
	// a request log line.
	t.Run("edge", func(t *testing.T) {
		code, hdr := curlHeaders(t, "--cacert", cs.tls.file, "https://"+cs.cardAddr+"/login/card?flow=none")
		id := hdr.Get("X-Request-Id")
		if code != "400" || len(id) != 24 || hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("Referrer-Policy") == "" {
			t.Fatalf("card listener: %s %v", code, hdr)
		}
		if !strings.Contains(cs.logs.String(), `"request_id":"`+id+`"`) {
			t.Fatalf("request %s to the card listener is not in the request log:\n%s", id, cs.logs)
		}
	})

	other := newTestCA(t, cs.dir, "Another Card CA")
	revokedCert, revokedKey := cs.issuer.cardFiles(t, cs.dir, "revoked", cs.issuer.card(cs.number, now.Add(-time.Hour), now.Add(time.Hour)))
	pemBytes, _ := os.ReadFile(revokedCert)
	blk, _ := pem.Decode(pemBytes)
	revoked, _ := x509.ParseCertificate(blk.Bytes)
	cs.issuer.revoked[revoked.SerialNumber.String()] = true
	for _, tc := range []struct {
		name       string
		cert, key  string
		down       bool
		code, text string
	}{
		{"revoked", revokedCert, revokedKey, false, "403", "This card has been revoked"},
		{"unknown CA", "", "", false, "403", "not issued by an authority we accept"},
		{"expired", "", "", false, "403", "This card has expired"},
		{"responder down", cert, key, true, "503", "The service is busy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.name {
			case "unknown CA":
				tc.cert, tc.key = other.cardFiles(t, cs.dir, "other", other.card(cs.number, now.Add(-time.Hour), now.Add(time.Hour)))
			case "expired":
				tc.cert, tc.key = cs.issuer.cardFiles(t, cs.dir, "expired", cs.issuer.card(cs.number, now.Add(-48*time.Hour), now.Add(-time.Hour)))
			}
			cs.issuer.mu.Lock()
			cs.issuer.down = tc.down
			cs.issuer.mu.Unlock()
			code, body := cs.curlCardLogin(t, tc.cert, tc.key)
			if code != tc.code || !strings.Contains(body, tc.text) {
				t.Fatalf("%s: %s\n%.800s", tc.name, code, body)
			}
		})
	}
}

// cardOnToken makes an ECDSA P-256 key pair on the SoftHSM2 token, has issue certify its
// public key, and stores the certificate on the token under the key's id, as a card holds them.
// The private key is sensitive and not extractable, but not a private object (CKA_PRIVATE
// false): a real card asks for its PIN in a browser dialog, which a headless browser cannot
// answer; the signature is still made by the token, through NSS.
func cardOnToken(t *testing.T, tok testenv.SoftHSMToken, issue func(crypto.PublicKey) []byte) {
	t.Helper()
	p := pkcs11.New(tok.Module)
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Destroy()
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var sh pkcs11.SessionHandle
	for _, slot := range slots {
		if info, err := p.GetTokenInfo(slot); err == nil && strings.TrimSpace(info.Label) == tok.Label {
			if sh, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Login(sh, pkcs11.CKU_USER, tok.PIN); err != nil {
		t.Fatal(err)
	}
	params, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}) // P-256
	id := []byte{1}
	pubH, _, err := p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params), pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "card")},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false), pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "card")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := p.GetAttributeValue(sh, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		t.Fatal(err)
	}
	var point []byte
	if _, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	der := issue(pub)
	cert, _ := x509.ParseCertificate(der)
	serial, _ := asn1.Marshal(cert.SerialNumber) // NSS finds certificates by issuer and this DER serial
	if _, err := p.CreateObject(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false), pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "card"),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject), pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial), pkcs11.NewAttribute(pkcs11.CKA_VALUE, der)}); err != nil {
		t.Fatal(err)
	}
}

// cardPolicy is the Chromium policy test/deps.sh installs: it picks a certificate of the test
// card CA for 127.0.0.1 without a dialog.
const cardPolicy = "/etc/chromium/policies/managed/vula-test-card.json"

// TestCardChromium logs in with an ID card in Chromium: the card is a SoftHSM2 token holding
// the key and the certificate, loaded into Chromium's NSS database with modutil; the policy
// selects the card's certificate, and the relying party gets an ID token at acr high.
func TestCardChromium(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "chromium", "pkcs11-tool", "certutil", "modutil")
	if _, err := os.Stat(cardPolicy); err != nil {
		t.Fatalf("the Chromium policy of test/deps.sh is missing: %v", err)
	}
	cs := startCardServer(t)
	tok := testenv.SoftHSM(t)
	now := time.Now()

	// The card: a key made on the token and its certificate beside it.
	cardOnToken(t, tok, func(pub crypto.PublicKey) []byte {
		return cs.issuer.issue(t, cs.issuer.card(cs.number, now.Add(-time.Hour), now.Add(time.Hour)), pub)
	})

	// Chromium's NSS database in a home of its own: the token as a module, FRIENDLY (its
	// certificates are read without a login, as a card's are), the card listener's TLS CA
	// trusted.
	home := t.TempDir()
	db := "sql:" + filepath.Join(home, ".pki", "nssdb")
	os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700)
	for _, args := range [][]string{
		{"certutil", "-N", "-d", db, "--empty-password"},
		{"modutil", "-dbdir", db, "-add", "SoftHSM2 card", "-libfile", tok.Module, "-mechanisms", "FRIENDLY", "-force"},
		{"modutil", "-dbdir", db, "-default", "SoftHSM2 card", "-mechanisms", "FRIENDLY", "-force"},
		{"certutil", "-A", "-d", db, "-n", "vula-test-tls", "-t", "C,,", "-i", cs.tls.file},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}

	chromium, _ := exec.LookPath("chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Env("HOME="+home, "SOFTHSM2_CONF="+tok.Conf), chromedp.UserDataDir(filepath.Join(home, "profile")))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			// The browser may be stuck (a dialog): what it shows is asked with a deadline.
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			loc, _ := chromedp.Run(lctx, chromedp.Location())
			body, _ := chromedp.Run(lctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v (at %s: %.500s)\n%s", what, err, loc, body, cs.logs)
		}
	}
	do("open the relying party", chromedp.Navigate(cs.base+"/demo/?acr=high"), chromedp.WaitVisible(chromedp.CSS(`a.method[href^="/login/card/start"]`)))
	do("log in with the card", chromedp.Click(chromedp.CSS(`a.method[href^="/login/card/start"]`)), chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)))
	do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
	claims, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(claims, "You are logged in") || !strings.Contains(claims, "http://eidas.europa.eu/LoA/high") || !strings.Contains(claims, "[sc hwk]") {
		t.Fatalf("the relying party got: %s", claims)
	}
}
