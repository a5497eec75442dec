package portal

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"strconv"

	"github.com/vula-eid/vula/internal/rp"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/web"
)

// docView is a document as the pages show it.
type docView struct {
	Index     int
	Name      string
	Size      string
	Pages     int
	Preview   template.URL // a data: URI, "" for none
	W, H      int
	NoPreview string // the text key saying why there is no preview
}

type pageData struct {
	CSRF     string
	Name     string // the official's
	Docs     []docView
	Error    string   // a text key, announced
	Detail   string   // words to add to it (a limit, a count)
	FileErrs []string // per-file errors, already in words
	Limits   Limits
	MaxFileM string
	MaxTotM  string
	Position Position
	Places   []string
	PageNum  string
	Level    string
}

func (p *Portal) data(s *session) pageData {
	return pageData{CSRF: s.CSRF, Name: s.Name, Limits: p.cfg.Limits, Places: Placements,
		MaxFileM: megabytes(p.cfg.Limits.MaxFile), MaxTotM: megabytes(p.cfg.Limits.MaxTotal), Level: string(p.cfg.Level)}
}

func megabytes(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) }

// size is a byte count for people.
func size(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

func (p *Portal) uploadPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.web.Render(w, r, http.StatusOK, "portal_upload", p.data(s))
}

// upload takes the documents of a multipart form, all or none: a bad file is named with its
// reason and nothing of that upload is kept.
func (p *Portal) upload(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	d := p.data(s)
	fail := func(status int, key, detail string) {
		d.Error, d.Detail = key, detail
		p.web.Render(w, r, status, "portal_upload", d)
	}
	lim := p.cfg.Limits
	// The body may hold the documents and a little form overhead; a longer one is cut off.
	r.Body = http.MaxBytesReader(w, r.Body, lim.MaxTotal+int64(lim.MaxFiles)*4096+64<<10)
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		fail(http.StatusBadRequest, "portal.upload.form", "")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		fail(http.StatusBadRequest, "portal.upload.form", "")
		return
	}
	docs, values, err := ParseUpload(mr, "documents", lim)
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr), errors.Is(err, signing.ErrTooLarge):
		fail(http.StatusRequestEntityTooLarge, "portal.upload.too_large", "")
		return
	case errors.Is(err, ErrTooManyFiles):
		fail(http.StatusRequestEntityTooLarge, "portal.upload.too_many", strconv.Itoa(lim.MaxFiles))
		return
	case errors.Is(err, ErrNoFiles):
		if !rp.Same(s.CSRF, values["csrf"]) {
			fail(http.StatusForbidden, "error.csrf", "")
			return
		}
		fail(http.StatusBadRequest, "portal.upload.none", "")
		return
	case err != nil:
		fail(http.StatusBadRequest, "portal.upload.form", "")
		return
	}
	if !rp.Same(s.CSRF, values["csrf"]) {
		fail(http.StatusForbidden, "error.csrf", "")
		return
	}
	t := p.texts(w, r)
	seen := map[[32]byte]bool{}
	for _, u := range docs {
		sum := sha256.Sum256(u.Data)
		switch {
		case u.Err == nil && seen[sum]:
			// One authorization lists each digest once: the same file twice cannot be signed twice.
			d.FileErrs = append(d.FileErrs, t("portal.upload.duplicate", u.Name))
		case u.Err == nil:
			seen[sum] = true
		case errors.Is(u.Err, signing.ErrUnsupported):
			d.FileErrs = append(d.FileErrs, t("portal.upload.encrypted", u.Name))
		default:
			d.FileErrs = append(d.FileErrs, t("portal.upload.not_pdf", u.Name))
		}
	}
	if len(d.FileErrs) > 0 {
		fail(http.StatusUnprocessableEntity, "portal.upload.bad_files", "")
		return
	}
	// A new upload replaces what the session held.
	if err := p.forget(ctx, s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	s.Batch, s.Docs, s.Position, s.Signed = rp.Token()[:12], nil, nil, false
	for i, u := range docs {
		m := docMeta{Name: u.Name, Size: len(u.Data), Info: u.Info}
		if err := p.eph.Put(ctx, s.part("doc", i), u.Data, p.ttl(s)); err != nil {
			p.unavailable(w, r, err)
			return
		}
		m.NoPreview = "missing"
		if p.preview != nil {
			img, pw, ph, err := p.preview.FirstPage(ctx, u.Data, p.cfg.PreviewWidth)
			switch {
			case errors.Is(err, ErrNoPreview):
			case err != nil:
				p.log.WarnContext(ctx, "portal: preview", "doc", i, "err", err)
				m.NoPreview = "failed"
			default:
				if err := p.eph.Put(ctx, s.part("png", i), img, p.ttl(s)); err != nil {
					p.unavailable(w, r, err)
					return
				}
				m.Preview, m.PreviewW, m.PreviewH, m.NoPreview = true, pw, ph, ""
			}
		}
		s.Docs = append(s.Docs, m)
	}
	if err := p.save(ctx, s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, "/portal/review", http.StatusSeeOther)
}

// views are the session's documents for a page, with previews when withPreview.
func (p *Portal) views(r *http.Request, s *session, withPreview bool) ([]docView, error) {
	var out []docView
	for i, m := range s.Docs {
		v := docView{Index: i, Name: m.Name, Size: size(m.Size), Pages: m.Info.Pages}
		if m.NoPreview != "" {
			v.NoPreview = "portal.preview." + m.NoPreview
		}
		if withPreview && m.Preview {
			img, err := p.eph.Get(r.Context(), s.part("png", i))
			if err != nil {
				return nil, err
			}
			// Safe as a URL: the bytes are our renderer's PNG, base64 encoded.
			v.Preview = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(img))
			v.W, v.H = m.PreviewW, m.PreviewH
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *Portal) reviewPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.review(w, r, s, http.StatusOK, "", "")
}

func (p *Portal) review(w http.ResponseWriter, r *http.Request, s *session, status int, errKey, detail string) {
	if len(s.Docs) == 0 {
		http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
		return
	}
	d := p.data(s)
	var err error
	if d.Docs, err = p.views(r, s, true); err != nil {
		p.unavailable(w, r, err)
		return
	}
	d.Position = Position{Page: "last", Place: PlaceBottomRight}
	if s.Position != nil {
		d.Position = *s.Position
	}
	if _, err := strconv.Atoi(d.Position.Page); err == nil {
		d.PageNum = d.Position.Page
	}
	d.Error, d.Detail = errKey, detail
	p.web.Render(w, r, status, "portal_review", d)
}

// position takes the chosen page and placement: a radio button, or a click on the first
// document's preview (an image button: its coordinates come as spot.x and spot.y).
func (p *Portal) position(w http.ResponseWriter, r *http.Request, s *session) {
	if len(s.Docs) == 0 || s.Signed {
		http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
		return
	}
	pos := Position{Page: r.PostFormValue("page"), Place: r.PostFormValue("place")}
	if pos.Page == "number" {
		pos.Page = r.PostFormValue("page_number")
	}
	if sx, sy := r.PostFormValue("spot.x"), r.PostFormValue("spot.y"); sx != "" && sy != "" {
		x, errx := strconv.Atoi(sx)
		y, erry := strconv.Atoi(sy)
		m := s.Docs[0]
		// A keyboard press of the image button sends 0,0: then the radio buttons decide.
		if errx == nil && erry == nil && (x != 0 || y != 0) && m.Preview {
			fx, fy, err := ClickPoint(x, y, m.PreviewW, m.PreviewH)
			if err != nil {
				p.review(w, r, s, http.StatusBadRequest, "portal.position.bad", "")
				return
			}
			pos.Place, pos.X, pos.Y = PlacePoint, fx, fy
		}
	}
	if err := pos.Check(); err != nil {
		p.review(w, r, s, http.StatusBadRequest, "portal.position.bad", "")
		return
	}
	for _, m := range s.Docs {
		if _, _, err := pos.PageIn(m.Info); err != nil {
			p.review(w, r, s, http.StatusBadRequest, "portal.position.too_few", fmt.Sprintf("%s (%d)", m.Name, m.Info.Pages))
			return
		}
	}
	s.Position = &pos
	if err := p.save(r.Context(), s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, "/portal/confirm", http.StatusSeeOther)
}

type confirmData struct {
	pageData
	Where string // the position in words
	Shown string // session.shown, sent back with the code
}

func (p *Portal) confirmPage(w http.ResponseWriter, r *http.Request, s *session) {
	p.confirm(w, r, s, http.StatusOK, "")
}

func (p *Portal) confirm(w http.ResponseWriter, r *http.Request, s *session, status int, errKey string) {
	if len(s.Docs) == 0 || s.Position == nil {
		http.Redirect(w, r, "/portal/review", http.StatusSeeOther)
		return
	}
	if s.Signed {
		http.Redirect(w, r, "/portal/done", http.StatusSeeOther)
		return
	}
	d := confirmData{pageData: p.data(s)}
	var err error
	if d.Docs, err = p.views(r, s, false); err != nil {
		p.unavailable(w, r, err)
		return
	}
	t := p.texts(w, r)
	page := s.Position.Page
	switch page {
	case "first", "last":
		page = t("portal.page." + page)
	default:
		page = t("portal.page.n", page)
	}
	place := t("portal.place." + s.Position.Place)
	if s.Position.Place == PlacePoint {
		place = t("portal.place.point.at", int(s.Position.X*100), int(s.Position.Y*100))
	}
	d.Where = page + ", " + place
	d.Shown = s.shown()
	d.Error = errKey
	p.web.Render(w, r, status, "portal_confirm", d)
}

// texts is the request's language's lookup, for words the handlers put together.
func (p *Portal) texts(w http.ResponseWriter, r *http.Request) func(string, ...any) string {
	return web.Translator(p.web.Lang(w, r))
}
