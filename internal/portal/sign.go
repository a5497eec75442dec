package portal

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/rp"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
)

// Signer is the remote signing service as the portal signs through it (the composition root
// gives it the CSC service's).
type Signer interface {
	// Credentials lists the official's signing credentials.
	Credentials(ctx context.Context, subject string) ([]Credential, error)
	// Sign authorizes, by the official's login and the one-time code, exactly the SHA-256
	// digests of the documents on the credential, then signs each (PAdES, an incremental
	// revision with its visible stamp) and returns them in order. A refusal MUST be a *Refusal;
	// any other error means the service could not answer.
	Sign(ctx context.Context, subject string, r SignRequest) ([][]byte, error)
	// LoginMaxAge is how old a login the service accepts: a refusal of an older one sends the
	// official to log in again.
	LoginMaxAge() time.Duration
}

// Credential is an official's signing credential.
type Credential struct {
	ID      string // what the service names it by
	Cert    *x509.Certificate
	Revoked bool
}

// valid reports whether the credential may sign at t.
func (c Credential) valid(t time.Time) bool {
	return !c.Revoked && !t.Before(c.Cert.NotBefore) && t.Before(c.Cert.NotAfter)
}

// Login is the official's login, as the ID token told it.
type Login struct {
	ACR      string
	AMR      []string
	AuthTime time.Time
}

// SignRequest is one confirmation: the documents to sign with one credential.
type SignRequest struct {
	CredentialID string
	Login        Login
	OTP          string // the one-time code the official typed
	IP           string // the official's address, for the service's brute-force limits
	Level        signing.Level
	Documents    []Document
}

// Document is one PDF to sign and its visible stamp.
type Document struct {
	Data    []byte
	Visible *pades.Appearance
}

// Refusal is the signing service's refusal, in CSC API v2's terms (code access_denied,
// invalid_otp, invalid_request...).
type Refusal struct {
	Status            int
	Code, Description string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Description }

var errNoCredential = errors.New("portal: the official has no signing credential that is valid now")

// credential is the official's newest credential that may sign now.
func (p *Portal) credential(ctx context.Context, subject string) (Credential, error) {
	creds, err := p.signer.Credentials(ctx, subject)
	if err != nil {
		return Credential{}, err
	}
	var best Credential
	for _, c := range creds {
		if c.valid(p.now()) && (best.Cert == nil || c.Cert.NotBefore.After(best.Cert.NotBefore)) {
			best = c
		}
	}
	if best.Cert == nil {
		return Credential{}, errNoCredential
	}
	return best, nil
}

// sign is the confirmation: the code authorizes exactly the session's documents' digests, then
// SignDoc signs them. A refusal signs nothing and says why.
func (p *Portal) sign(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	if len(s.Docs) == 0 || s.Position == nil {
		http.Redirect(w, r, "/portal/review", http.StatusSeeOther)
		return
	}
	if s.Signed {
		http.Redirect(w, r, "/portal/done", http.StatusSeeOther)
		return
	}
	// The code authorizes what the page it was typed on showed: if another tab of this session
	// uploaded other documents or moved the signature since, sign nothing and show what is there.
	if !rp.Same(s.shown(), r.PostFormValue("shown")) {
		p.confirm(w, r, s, http.StatusConflict, "portal.sign.changed")
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		p.confirm(w, r, s, http.StatusBadRequest, "portal.otp.format")
		return
	}
	cred, err := p.credential(ctx, s.Subject)
	if errors.Is(err, errNoCredential) {
		p.confirm(w, r, s, http.StatusConflict, "portal.sign.disabled")
		return
	}
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	t := p.texts(w, r)
	when := p.now()
	text := t("portal.stamp.by", cred.Cert.Subject.CommonName) + "\n" + t("portal.stamp.date", when.UTC().Format("2006-01-02 15:04 UTC"))
	docs := make([]Document, len(s.Docs))
	for i, m := range s.Docs {
		data, err := p.eph.Get(ctx, s.part("doc", i))
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		page, box, err := s.Position.PageIn(m.Info)
		if err != nil {
			http.Redirect(w, r, "/portal/review", http.StatusSeeOther)
			return
		}
		docs[i] = Document{Data: data, Visible: &pades.Appearance{Page: page, Rect: s.Position.Rect(box), Text: text}}
	}
	signed, err := p.signer.Sign(ctx, s.Subject, SignRequest{CredentialID: cred.ID, Login: Login{ACR: s.ACR, AMR: s.AMR, AuthTime: s.AuthTime},
		OTP: code, IP: clientIP(r), Level: p.cfg.Level, Documents: docs})
	if err != nil {
		p.refused(w, r, s, err)
		return
	}
	if len(signed) != len(docs) {
		p.unavailable(w, r, fmt.Errorf("portal: the signing service returned %d documents for %d", len(signed), len(docs)))
		return
	}
	for i, out := range signed {
		if err := p.eph.Put(ctx, s.part("out", i), out, p.ttl(s)); err != nil {
			p.unavailable(w, r, err)
			return
		}
	}
	s.Signed = true
	if err := p.save(ctx, s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	p.log.InfoContext(ctx, "portal: signed", "sub", s.Subject, "documents", len(docs), "credential", cred.ID)
	http.Redirect(w, r, "/portal/done", http.StatusSeeOther)
}

// shown names the documents and position a confirmation page shows; the page's form sends it back.
func (s *session) shown() string {
	pos, _ := json.Marshal(s.Position)
	h := sha256.Sum256([]byte(s.Batch + "\x00" + string(pos)))
	return hex.EncodeToString(h[:16])
}

// refused maps the signing service's refusals to the confirmation page's messages.
func (p *Portal) refused(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ce *Refusal
	if !errors.As(err, &ce) {
		p.unavailable(w, r, err)
		return
	}
	p.log.InfoContext(r.Context(), "portal: signing refused", "sub", s.Subject, "code", ce.Code, "description", ce.Description)
	// The login is too old (older than the service's LoginMaxAge, which the session outlives):
	// log in again and come back to this confirmation with the same documents. Not when the
	// login is younger (refused for another reason), which would loop: then the page says so.
	if ce.Code == "access_denied" && p.now().Sub(s.AuthTime) > p.signer.LoginMaxAge() {
		p.startLogin(w, r, s)
		return
	}
	key := "portal.sign.refused"
	switch {
	case ce.Code == "invalid_otp" && strings.Contains(ce.Description, "locked"):
		key = "portal.otp.locked"
	case ce.Code == "invalid_otp":
		key = "portal.otp.bad"
	case ce.Code == "access_denied":
		key = "portal.sign.relogin"
	case strings.Contains(ce.Description, "disabled"):
		key = "portal.sign.disabled"
	}
	status := ce.Status
	if status < 400 || status > 499 {
		status = http.StatusBadRequest
	}
	p.confirm(w, r, s, status, key)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type doneData struct {
	pageData
	Signed []string // the signed copies' names
}

func (p *Portal) donePage(w http.ResponseWriter, r *http.Request, s *session) {
	if !s.Signed {
		http.Redirect(w, r, "/portal/confirm", http.StatusSeeOther)
		return
	}
	d := doneData{pageData: p.data(s)}
	for _, m := range s.Docs {
		d.Signed = append(d.Signed, SignedName(m.Name))
	}
	p.web.Render(w, r, http.StatusOK, "portal_done", d)
}

// downloadOne sends one signed PDF.
func (p *Portal) downloadOne(w http.ResponseWriter, r *http.Request, s *session) {
	i, err := strconv.Atoi(r.PathValue("i"))
	if !s.Signed || err != nil || i < 0 || i >= len(s.Docs) {
		p.message(w, r, http.StatusNotFound, "portal.download.title", "portal.download.none", "/portal/documents")
		return
	}
	b, err := p.eph.Get(r.Context(), s.part("out", i))
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Disposition", ContentDisposition(SignedName(s.Docs[i].Name)))
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// downloadAll sends the one signed PDF, or a zip of them all.
func (p *Portal) downloadAll(w http.ResponseWriter, r *http.Request, s *session) {
	if !s.Signed {
		p.message(w, r, http.StatusNotFound, "portal.download.title", "portal.download.none", "/portal/documents")
		return
	}
	if len(s.Docs) == 1 {
		r.SetPathValue("i", "0")
		p.downloadOne(w, r, s)
		return
	}
	outs := make([][]byte, len(s.Docs))
	for i := range s.Docs {
		b, err := p.eph.Get(r.Context(), s.part("out", i))
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		outs[i] = b
	}
	h := w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", ContentDisposition("signed-"+p.now().UTC().Format("20060102-1504")+".zip"))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	zw := zip.NewWriter(w)
	used := map[string]bool{}
	for i, m := range s.Docs {
		name := uniqueName(SignedName(m.Name), used)
		// PDFs hardly compress: stored entries cost nothing to make.
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: p.now()})
		if err == nil {
			_, err = f.Write(outs[i])
		}
		if err != nil {
			p.log.WarnContext(r.Context(), "portal: writing the zip", "err", err)
			return
		}
	}
	if err := zw.Close(); err != nil {
		p.log.WarnContext(r.Context(), "portal: writing the zip", "err", err)
	}
}

// uniqueName gives a second "a-signed.pdf" the name "a-signed (2).pdf".
func uniqueName(name string, used map[string]bool) string {
	out := name
	for n := 2; used[strings.ToLower(out)]; n++ {
		stem := strings.TrimSuffix(name, ".pdf")
		out = fmt.Sprintf("%s (%d).pdf", stem, n)
	}
	used[strings.ToLower(out)] = true
	return out
}

// ContentDisposition is an attachment header for name after RFC 6266: a plain ASCII filename
// for old clients (other characters as _), and filename* in UTF-8 (RFC 8187) with the real name.
func ContentDisposition(name string) string {
	var ascii strings.Builder
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' || r == ';' {
			ascii.WriteByte('_')
		} else {
			ascii.WriteRune(r)
		}
	}
	var ext strings.Builder
	for _, b := range []byte(name) {
		if isAttrChar(b) {
			ext.WriteByte(b)
		} else {
			fmt.Fprintf(&ext, "%%%02X", b)
		}
	}
	return `attachment; filename="` + ascii.String() + `"; filename*=UTF-8''` + ext.String()
}

// isAttrChar is RFC 8187's attr-char (url.PathEscape keeps a different set, so it is spelt out).
func isAttrChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}
