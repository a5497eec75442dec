// Package web renders the pages a person sees (login, one-time code, authenticator enrolment,
// consent, the official's signing authorization, logout, errors) from embedded templates, in
// Albanian, Serbian or English.
//
// Pages work without script; the one script there is (assets/passkey.js, served by Assets from
// this origin) adds passkeys.
//
// The language is, in order: the lang query parameter (the switcher's links), the vula_lang
// cookie it sets, then the browser's Accept-Language; English when none matches. Pages load
// nothing from elsewhere.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/text/language"
)

//go:embed templates/*.html
var files embed.FS

//go:embed assets
var assets embed.FS

// Assets serves the pages' static files under /assets/.
func Assets() http.Handler {
	return http.FileServerFS(assets)
}

// Languages offered, the first the default.
var Languages = []string{"sq", "sr", "en"}

var matcher = language.NewMatcher([]language.Tag{language.English, language.Albanian, language.Serbian})

// Renderer renders pages.
type Renderer struct {
	pages map[string]*template.Template
	log   *slog.Logger
	// Secure marks the language cookie Secure (everywhere but development over http).
	Secure bool
}

// Page is what every template gets.
type Page struct {
	Lang  string
	T     func(key string, args ...any) string
	Langs []LangLink
	Data  any
}

// LangLink is one entry of the language switcher.
type LangLink struct {
	Code, Name, Href string
	Current          bool
}

// New parses the templates.
func New(log *slog.Logger, secure bool) (*Renderer, error) {
	r := &Renderer{pages: map[string]*template.Template{}, log: log, Secure: secure}
	names, err := files.ReadDir("templates")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		// layout.html frames every page; _*.html are partials that pages share.
		if n.Name() == "layout.html" || strings.HasPrefix(n.Name(), "_") {
			continue
		}
		t, err := template.New("layout.html").ParseFS(files, "templates/layout.html", "templates/_*.html", "templates/"+n.Name())
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", n.Name(), err)
		}
		r.pages[n.Name()[:len(n.Name())-len(".html")]] = t
	}
	return r, nil
}

// Lang picks the page language for req (and remembers a switch in a cookie).
func (r *Renderer) Lang(w http.ResponseWriter, req *http.Request) string {
	if l := req.URL.Query().Get("lang"); isLang(l) {
		http.SetCookie(w, &http.Cookie{Name: "vula_lang", Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, Secure: r.Secure, SameSite: http.SameSiteLaxMode})
		return l
	}
	if c, err := req.Cookie("vula_lang"); err == nil && isLang(c.Value) {
		return c.Value
	}
	tags, _, _ := language.ParseAcceptLanguage(req.Header.Get("Accept-Language"))
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return "en"
	}
	return []string{"en", "sq", "sr"}[i]
}

func isLang(l string) bool {
	for _, x := range Languages {
		if l == x {
			return true
		}
	}
	return false
}

// Render writes page with data, status status, in the request's language. No other site may
// frame it.
func (r *Renderer) Render(w http.ResponseWriter, req *http.Request, status int, page string, data any) {
	r.RenderFramed(w, req, status, page, data, nil)
}

// RenderFramed is Render for a page that the origins given may embed in a frame (and no other).
func (r *Renderer) RenderFramed(w http.ResponseWriter, req *http.Request, status int, page string, data any, origins []string) {
	lang := r.Lang(w, req)
	t, ok := r.pages[page]
	if !ok {
		r.log.Error("web: no such page", "page", page)
		http.Error(w, "page missing", http.StatusInternalServerError)
		return
	}
	p := Page{Lang: lang, T: Translator(lang), Data: data}
	for _, l := range Languages {
		u := *req.URL
		q := u.Query()
		q.Set("lang", l)
		u.RawQuery = q.Encode()
		p.Langs = append(p.Langs, LangLink{Code: l, Name: names[l], Href: (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String(), Current: l == lang})
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		r.log.Error("web: rendering", "page", page, "err", err)
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	ancestors := "'none'"
	if len(origins) > 0 {
		ancestors = strings.Join(origins, " ")
	} else {
		h.Set("X-Frame-Options", "DENY")
	}
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:; frame-ancestors "+ancestors+"; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Language", lang)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// T translates key into the request's language (for answers that are not pages, such as the
// JSON a page's script shows).
func (r *Renderer) T(w http.ResponseWriter, req *http.Request, key string) string {
	return Translator(r.Lang(w, req))(key)
}

var names = map[string]string{"sq": "Shqip", "sr": "Srpski", "en": "English"}

// Translator returns the lookup of lang's texts; a missing key shows as itself, so a gap is
// visible rather than silent.
func Translator(lang string) func(string, ...any) string {
	return func(key string, args ...any) string {
		s, ok := texts[lang][key]
		if !ok {
			if s, ok = texts["en"][key]; !ok {
				return key
			}
		}
		if len(args) > 0 {
			return fmt.Sprintf(s, args...)
		}
		return s
	}
}
