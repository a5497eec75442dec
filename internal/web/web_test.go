package web

import (
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// pages are every page in each of its states, with the data the provider gives it.
var pages = []struct {
	name string
	data any
}{
	{"login", map[string]any{"Flow": "f", "CSRF": "c", "Client": "Tax Administration", "Identifier": "", "Error": ""}},
	{"login", map[string]any{"Flow": "f", "CSRF": "c", "Client": "Tax Administration", "Identifier": "123", "Error": "login.bad"}},
	{"totp", map[string]any{"Flow": "f", "CSRF": "c", "Error": "totp.bad"}},
	{"consent", map[string]any{"Flow": "f", "CSRF": "c", "Client": "Tax Administration",
		"Items": []string{"consent.sub", "consent.profile", "consent.personal_number", "consent.offline_access"}}},
	{"credential", map[string]any{"Flow": "f", "CSRF": "c", "Client": "Document signing", "Credential": "1a2b3c", "Algorithm": "SHA-256",
		"Minutes": 5, "Documents": []map[string]string{{"Label": "Vendim nr. 1", "Digest": "0123abcd…89efcdab", "Full": "0123abcd89efcdab"}, {"Label": "", "Digest": "aa…bb", "Full": "aabb"}}}},
	{"enroll", map[string]any{"CSRF": "c", "Enrolment": "e", "QR": "data:image/png;base64,AA==", "Secret": "JBSWY3DP", "Error": "", "Done": false}},
	{"enroll", map[string]any{"Done": true}},
	{"logout", map[string]any{"CSRF": "c", "Logout": "l", "Done": false}},
	{"logout", map[string]any{"Done": true}},
	{"error", map[string]any{"Message": "error.flow"}},
	// The signing portal's pages, with data of the shapes internal/portal passes (pages.go,
	// sign.go, portal.go); it imports this package, so the shapes are mirrored below.
	{"portal_home", nil},
	{"portal_upload", portalData{}},
	{"portal_upload", portalData{Error: "portal.upload.too_many", Detail: "10"}},
	{"portal_upload", portalData{Error: "portal.upload.bad_files", FileErrs: []string{"text.pdf is not a PDF document that can be read.", "secret.pdf is encrypted (protected by a password) and cannot be signed."}}},
	{"portal_review", withDocs(portalData{}, true)},
	{"portal_review", withDocs(portalData{Position: portalPosition{Page: "first", Place: "top-left"}}, false)},
	{"portal_review", withDocs(portalData{Position: portalPosition{Page: "3", Place: "point"}, PageNum: "3", Error: "portal.position.too_few", Detail: "a.pdf (2)"}, true)},
	{"portal_confirm", portalConfirm{portalData: withDocs(portalData{Position: portalPosition{Page: "last", Place: "bottom-right"}}, false), Where: "Last page, Bottom right"}},
	{"portal_confirm", portalConfirm{portalData: withDocs(portalData{Error: "portal.otp.bad"}, false), Where: "page 2, centred 40% from the left and 70% from the top"}},
	{"portal_confirm", portalConfirm{portalData: withDocs(portalData{Error: "portal.sign.changed"}, false), Where: "First page, Bottom left", Shown: "00"}},
	{"portal_done", portalDone{portalData: portalData{CSRF: "c", Name: "Drita Berisha"}, Signed: []string{"Vendim nr. 12-signed.pdf"}}},
	{"portal_done", portalDone{portalData: portalData{CSRF: "c", Name: "Drita Berisha"}, Signed: []string{"a-signed.pdf", "b-signed.pdf"}}},
	{"portal_message", portalMessage{Title: "portal.refused.title", Message: "portal.refused.citizen"}},
	{"portal_message", portalMessage{Title: "portal.refused.title", Message: "portal.refused.level", Back: "/portal/"}},
	{"portal_message", portalMessage{Title: "portal.login.failed", Message: "portal.login.state", Back: "/portal/"}},
	{"portal_message", portalMessage{Title: "portal.expired.title", Message: "portal.expired"}},
	{"portal_message", portalMessage{Title: "portal.download.title", Message: "portal.download.none", Back: "/portal/documents"}},
	{"portal_message", portalMessage{Title: "error.title", Message: "error.unavailable"}},
	{"portal_message", portalMessage{Title: "portal.logout.title", Message: "portal.logout.done", Back: "/portal/"}},
	// The registration desk's pages (internal/eid pages.go), their data as maps of the same
	// shapes; "Error" marks the pages that show one.
	{"desk_home", nil},
	{"desk_message", map[string]any{"Title": "desk.refused.title", "Message": "desk.refused.level", "Back": "/desk/"}},
	{"desk_message", map[string]any{"Title": "desk.logout.title", "Message": "desk.logout.done", "Back": "/desk/", "OK": true}},
	{"desk_find", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "Number": "", "Error": ""}},
	{"desk_find", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "Number": "123", "Error": "desk.find.none"}},
	{"desk_register", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "In": map[string]string{}, "Errors": map[string]string{}}},
	{"desk_register", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "In": map[string]string{"PersonalNumber": "7000000001", "BirthDate": "12.04.1990"},
		"Errors": map[string]string{"birth": "desk.register.date", "given": "desk.register.required"}, "Error": "x"}},
	{"desk_person", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "R": map[string]any{"Person": deskPerson, "Password": true, "TOTP": false, "Passkeys": 1,
		"ActivationPending": true}, "ProofedBy": "Besa Gashi (9000000001), 2026-12-06 10:00 UTC", "Created": "2026-12-06 10:00 UTC", "Expires": "2027-01-05 10:00 UTC",
		"History": []map[string]string{{"Time": "2026-12-06 10:00 UTC", "Action": "desk.action.eid.register", "Actor": "Besa Gashi (9000000001)"}},
		"Done":    "desk.done.suspended", "Suspended": true, "Revoked": false}},
	{"desk_revoke", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "R": map[string]any{"Person": deskPerson}, "Error": ""}},
	{"desk_revoke", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "R": map[string]any{"Person": deskPerson}, "Error": "desk.revoke.unconfirmed"}},
	{"desk_letter", map[string]any{"Name": "Besa Gashi", "CSRF": "c", "Person": deskPerson, "Expires": "2027-01-05"}},
	{"desk_letter_print", map[string]any{"Person": deskPerson, "Code": "ABCD-EFGH-IJKL-MNOP-QRST-UVWX", "Expires": "2027-01-05", "Activate": "https://id.example/activate"}},
}

var deskPerson = map[string]any{"SubjectID": "0f3a", "PersonalNumber": "7000000001", "GivenName": "Arta", "FamilyName": "Krasniqi",
	"BirthDate": "1990-04-12", "DocumentNumber": "P1", "DocumentExpiry": "2031-01-01", "Status": "suspended", "Proofing": "high"}

// The portal's page data (internal/portal pages.go and sign.go), field for field: a template
// naming a field these lack fails to render, and the test fails on the status.
type portalDoc struct {
	Index     int
	Name      string
	Size      string
	Pages     int
	Preview   template.URL
	W, H      int
	NoPreview string
}

type portalPosition struct {
	Page  string
	Place string
	X, Y  float64
}

type portalLimits struct {
	MaxFiles          int
	MaxFile, MaxTotal int64
}

type portalData struct {
	CSRF     string
	Name     string
	Docs     []portalDoc
	Error    string
	Detail   string
	FileErrs []string
	Limits   portalLimits
	MaxFileM string
	MaxTotM  string
	Position portalPosition
	Places   []string
	PageNum  string
	Level    string
}

type portalConfirm struct {
	portalData
	Where string
	Shown string
}

type portalDone struct {
	portalData
	Signed []string
}

type portalMessage struct {
	Title, Message, Detail string
	Back                   string
	LoggedIn               bool
	CSRF                   string
}

// withDocs fills d as portal.data does, with three documents: the first with a preview when
// preview (the image button), the second with one (an image), the third without.
func withDocs(d portalData, preview bool) portalData {
	d.CSRF, d.Name, d.Level = "c", "Drita Berisha", "B-LT"
	d.Limits, d.MaxFileM, d.MaxTotM = portalLimits{MaxFiles: 10, MaxFile: 10 << 20, MaxTotal: 25 << 20}, "10", "25"
	d.Places = []string{"bottom-left", "bottom-center", "bottom-right", "top-left", "top-right"}
	if d.Position.Page == "" {
		d.Position = portalPosition{Page: "last", Place: "bottom-right"}
	}
	png := template.URL("data:image/png;base64,iVBORw0KGgo=")
	first := portalDoc{Index: 0, Name: "Vendim nr. 12.pdf", Size: "1.2 KB", Pages: 1, NoPreview: "portal.preview.missing"}
	if preview {
		first.Preview, first.W, first.H, first.NoPreview = png, 360, 509, ""
	}
	d.Docs = []portalDoc{first,
		{Index: 1, Name: "Raport çështje.pdf", Size: "80.4 KB", Pages: 3, Preview: png, W: 360, H: 466},
		{Index: 2, Name: "c.pdf", Size: "2.0 MB", Pages: 12, NoPreview: "portal.preview.failed"}}
	return d
}

// Accessibility of every page in every language, read from the rendered HTML: the document's
// language; one h1; every field with a label that names it (a checkbox or radio button inside
// its label, radio buttons grouped in a fieldset with a legend, an image button by its alt
// text); buttons with text and images with alternative text; an error announced (role=alert,
// and only on a page that shows one); no positive tabindex (the focus order is the reading
// order), the skip link first and its target present; no translation key left showing, in the
// text or in alternative text.
func TestPagesAccessible(t *testing.T) {
	r, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range Languages {
		for _, p := range pages {
			w := httptest.NewRecorder()
			r.Render(w, httptest.NewRequest("GET", "/"+p.name+"?lang="+lang, nil), 200, p.name, p.data)
			body := w.Body.String()
			where := lang + "/" + p.name
			if w.Code != 200 {
				t.Errorf("%s: status %d: %s", where, w.Code, body)
				continue
			}
			doc, err := html.Parse(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var nodes []*html.Node
			var walk func(*html.Node)
			walk = func(n *html.Node) {
				if n.Type == html.ElementNode {
					nodes = append(nodes, n)
				}
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
			}
			walk(doc)
			labels := map[string]string{}
			var alts []string
			ids := map[string]bool{}
			h1 := 0
			var focusable []*html.Node
			for _, n := range nodes {
				if id := attr(n, "id"); id != "" {
					ids[id] = true
				}
				switch n.Data {
				case "html":
					if attr(n, "lang") != lang {
						t.Errorf("%s: <html lang=%q>", where, attr(n, "lang"))
					}
				case "h1":
					h1++
				case "label":
					labels[attr(n, "for")] = strings.TrimSpace(text(n))
				case "img":
					if strings.TrimSpace(attr(n, "alt")) == "" {
						t.Errorf("%s: image without alt text", where)
					}
					alts = append(alts, attr(n, "alt"))
				case "input":
					if attr(n, "type") == "image" {
						alts = append(alts, attr(n, "alt"))
					}
				case "button":
					if strings.TrimSpace(text(n)) == "" {
						t.Errorf("%s: button without text", where)
					}
				}
				if ti := attr(n, "tabindex"); ti != "" {
					if v, _ := strconv.Atoi(ti); v > 0 {
						t.Errorf("%s: tabindex %s on <%s> breaks the focus order", where, ti, n.Data)
					}
				}
				if n.Data == "a" || n.Data == "button" || (n.Data == "input" && attr(n, "type") != "hidden") {
					focusable = append(focusable, n)
				}
			}
			if h1 != 1 {
				t.Errorf("%s: %d h1", where, h1)
			}
			groups := map[string]*html.Node{}
			for _, n := range nodes {
				if n.Data != "input" || attr(n, "type") == "hidden" {
					continue
				}
				switch attr(n, "type") {
				case "checkbox", "radio":
					if n.Parent.Data != "label" || strings.TrimSpace(text(n.Parent)) == "" {
						t.Errorf("%s: %s %s=%s without a label around it", where, attr(n, "type"), attr(n, "name"), attr(n, "value"))
					}
					if attr(n, "type") == "radio" {
						fs := ancestor(n, "fieldset")
						if legend(fs) == "" {
							t.Errorf("%s: radio button %s=%s not in a fieldset with a legend", where, attr(n, "name"), attr(n, "value"))
						}
						if g, ok := groups[attr(n, "name")]; ok && g != fs {
							t.Errorf("%s: the radio buttons %s are in more than one fieldset", where, attr(n, "name"))
						}
						groups[attr(n, "name")] = fs
					}
					continue
				case "image":
					if strings.TrimSpace(attr(n, "alt")) == "" {
						t.Errorf("%s: image button %s without alt text", where, attr(n, "name"))
					}
					continue
				}
				if labels[attr(n, "id")] == "" {
					t.Errorf("%s: field %s (id %q) has no label", where, attr(n, "name"), attr(n, "id"))
				}
				for _, d := range strings.Fields(attr(n, "aria-describedby")) {
					if !ids[d] {
						t.Errorf("%s: field %s described by missing #%s", where, attr(n, "name"), d)
					}
				}
			}
			if len(focusable) == 0 || attr(focusable[0], "class") != "skip" || !ids[strings.TrimPrefix(attr(focusable[0], "href"), "#")] {
				t.Errorf("%s: the first focusable element is not the skip link to the main content", where)
			}
			// An error is announced when it appears (role=alert), and a page without one has no
			// alert: a confirmation is a status.
			var alerts []string
			for _, n := range nodes {
				if attr(n, "role") == "alert" {
					alerts = append(alerts, strings.TrimSpace(text(n)))
				}
				// (The portal's pages only: the IdP's credential page has an informational box.)
				if strings.HasPrefix(p.name, "portal_") && strings.Contains(" "+attr(n, "class")+" ", " alert ") && attr(n, "role") != "alert" && attr(n, "role") != "status" {
					t.Errorf("%s: a message box (%q) that is neither role=alert nor role=status", where, strings.TrimSpace(text(n)))
				}
			}
			if want := showsError(p.data); want != (len(alerts) > 0) || (len(alerts) > 0 && alerts[0] == "") {
				t.Errorf("%s: error shown %v, role=alert %q", where, want, alerts)
			}
			visible := text(findBody(doc)) + " " + strings.Join(alts, " ")
			for key := range texts["en"] {
				if strings.Contains(key, ".") && strings.Contains(visible, key) {
					t.Errorf("%s: untranslated key %q on the page", where, key)
				}
			}
		}
	}
}

// The stylesheet's colours meet WCAG 2.1 AA: 4.5:1 for text, 3:1 for field borders and focus
// rings (1.4.11) against what they sit on.
func TestContrast(t *testing.T) {
	css, err := files.ReadFile("templates/layout.html")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(string(css), -1) {
		vars[m[1]] = m[2]
	}
	color := func(c string) string {
		if strings.HasPrefix(c, "--") {
			v, ok := vars[c[2:]]
			if !ok {
				t.Fatalf("no %s in the stylesheet", c)
			}
			return v
		}
		if !strings.Contains(strings.ToLower(string(css)), strings.ToLower(c)) {
			t.Fatalf("%s is not in the stylesheet: the table is out of date", c)
		}
		return c
	}
	checked := map[string]bool{}
	for _, tc := range []struct {
		what, fg, bg string
		min          float64
	}{
		{"text in the card", "--ink", "#fff", 4.5},
		{"text on the page", "--ink", "--bg", 4.5},
		{"lead and help text", "--muted", "#fff", 4.5},
		{"footer", "--muted", "--bg", 4.5},
		{"links and secondary buttons", "--brand", "#fff", 4.5},
		{"header and buttons", "#fff", "--brand", 4.5},
		{"buttons on hover", "#fff", "--brand-dark", 4.5},
		{"error message", "--ink", "#fdecec", 4.5},
		{"confirmation", "--ink", "#e8f4ec", 4.5},
		{"field border", "--field", "#fff", 3},
		{"focus ring in the card", "--focus", "#fff", 3},
		{"focus ring in the header", "--focus-header", "--brand", 3},
	} {
		if got := ratio(color(tc.fg), color(tc.bg)); got < tc.min {
			t.Errorf("%s: %s on %s is %.2f:1, want %.1f:1", tc.what, tc.fg, tc.bg, got, tc.min)
		}
		checked[tc.fg], checked[tc.bg] = true, true
	}
	// The portal's pages style their own parts (the signed-in line, notes, previews, fieldsets,
	// link buttons): only with colours the table above checks, or --line (the card's and the
	// fieldsets' borders, decoration that 1.4.11 does not cover: the legend names the group).
	portal, err := fs.Glob(files, "templates/portal_*.html")
	if err != nil || len(portal) == 0 {
		t.Fatalf("no portal templates: %v", err)
	}
	for _, name := range portal {
		b, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`var\((--[a-z-]+)\)|(#[0-9a-fA-F]{3,6})\b`).FindAllStringSubmatch(string(b), -1) {
			c := m[1] + strings.ToLower(m[2])
			if !checked[c] && c != "--line" {
				t.Errorf("%s: colour %s is not in the contrast table", name, c)
			}
		}
	}
}

// ratio is WCAG 2.1's contrast ratio of two #rrggbb colours.
func ratio(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (math.Max(la, lb) + 0.05) / (math.Min(la, lb) + 0.05)
}

func luminance(hex string) float64 {
	hex = strings.TrimPrefix(hex, "#")
	if len(hex) == 3 {
		hex = string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]})
	}
	v, _ := strconv.ParseUint(hex, 16, 32)
	ch := func(c uint64) float64 {
		s := float64(c) / 255
		if s <= 0.03928 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(v>>16&0xff) + 0.7152*ch(v>>8&0xff) + 0.0722*ch(v&0xff)
}

// showsError says whether a page with data shows an error: the data's Error, or for the
// portal's message pages any message but a confirmation.
func showsError(data any) bool {
	switch d := data.(type) {
	case map[string]any:
		if ok, _ := d["OK"].(bool); ok { // a confirmation
			return false
		}
		e, _ := d["Error"].(string)
		m, _ := d["Message"].(string)
		return e != "" || m != ""
	case portalData:
		return d.Error != ""
	case portalConfirm:
		return d.Error != ""
	case portalMessage:
		return d.Title != "portal.logout.title"
	}
	return false
}

func ancestor(n *html.Node, tag string) *html.Node {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Type == html.ElementNode && p.Data == tag {
			return p
		}
	}
	return nil
}

// legend is the text of fieldset's legend, its first child element; "" for none.
func legend(fieldset *html.Node) string {
	if fieldset == nil {
		return ""
	}
	for c := fieldset.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			if c.Data == "legend" {
				return strings.TrimSpace(text(c))
			}
			return ""
		}
	}
	return ""
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	if n.Type == html.TextNode {
		return n.Data
	}
	if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") {
		return ""
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
		b.WriteString(" ")
	}
	return b.String()
}

func findBody(n *html.Node) *html.Node {
	if n.Type == html.ElementNode && n.Data == "body" {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if b := findBody(c); b != nil {
			return b
		}
	}
	return nil
}
