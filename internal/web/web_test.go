package web

import (
	"io"
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
}

// Accessibility of every page in every language, read from the rendered HTML: the document's
// language; one h1; every field with a label that names it; buttons with text and images with
// alternative text; no positive tabindex (the focus order is the reading order), the skip link
// first and its target present; no translation key left showing.
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
			doc, err := html.Parse(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			where := lang + "/" + p.name
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
			for _, n := range nodes {
				if n.Data != "input" || attr(n, "type") == "hidden" {
					continue
				}
				if attr(n, "type") == "checkbox" {
					if n.Parent.Data != "label" || strings.TrimSpace(text(n.Parent)) == "" {
						t.Errorf("%s: checkbox %s without a label around it", where, attr(n, "name"))
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
			visible := text(findBody(doc))
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
