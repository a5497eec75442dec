package portal

import (
	"bytes"
	"errors"
	"math"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/pdfsafe/pdftest"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// body is a multipart upload of files (name → content) and a csrf field.
func body(t testing.TB, files [][2]string) (*multipart.Reader, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("csrf", "token")
	for _, f := range files {
		w, err := mw.CreateFormFile("documents", f[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f[1]))
	}
	mw.Close()
	return multipart.NewReader(bytes.NewReader(b.Bytes()), mw.Boundary()), b.Bytes()
}

func TestParseUploadLimits(t *testing.T) {
	pdf := string(signingtest.PDF("hello"))
	lim := Limits{MaxFiles: 2, MaxFile: int64(len(pdf)) + 10, MaxTotal: int64(2*len(pdf)) + 5}
	tests := []struct {
		name    string
		files   [][2]string
		wantErr error
		want    int
	}{
		{"one", [][2]string{{"a.pdf", pdf}}, nil, 1},
		{"two", [][2]string{{"a.pdf", pdf}, {"b.pdf", pdf}}, nil, 2},
		{"too many", [][2]string{{"a.pdf", pdf}, {"b.pdf", pdf}, {"c.pdf", pdf}}, ErrTooManyFiles, 0},
		{"one too large", [][2]string{{"a.pdf", pdf + strings.Repeat(" ", 11)}}, signing.ErrTooLarge, 0},
		{"together too large", [][2]string{{"a.pdf", pdf + "        "}, {"b.pdf", pdf}}, signing.ErrTooLarge, 0},
		{"none", nil, ErrNoFiles, 0},
		{"empty file input", [][2]string{{"", ""}}, ErrNoFiles, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr, _ := body(t, tt.files)
			docs, values, err := ParseUpload(mr, "documents", lim)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if len(docs) != tt.want {
				t.Fatalf("%d documents, want %d", len(docs), tt.want)
			}
			if err == nil && values["csrf"] != "token" {
				t.Errorf("csrf %q", values["csrf"])
			}
			for _, d := range docs {
				if d.Err != nil || d.Info.Pages != 1 {
					t.Errorf("%s: %+v %v", d.Name, d.Info, d.Err)
				}
			}
		})
	}
}

// A bad file is returned with its own error, beside the good ones.
func TestParseUploadPerFileErrors(t *testing.T) {
	pdf := string(signingtest.PDF("hello"))
	bad, _ := os.ReadDir("../signing/pades/testdata/bad")
	files := [][2]string{{"good.pdf", pdf}, {"text.pdf", "just text"}, {"truncated.pdf", pdf[:len(pdf)/2]}}
	for _, e := range bad {
		b, _ := os.ReadFile(filepath.Join("../signing/pades/testdata/bad", e.Name()))
		files = append(files, [2]string{e.Name(), string(b)})
	}
	mr, _ := body(t, files)
	docs, _, err := ParseUpload(mr, "documents", Limits{MaxFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	if docs[0].Err != nil {
		t.Errorf("good.pdf: %v", docs[0].Err)
	}
	for _, d := range docs[1:3] {
		if !errors.Is(d.Err, signing.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", d.Name, d.Err)
		}
	}
	for _, d := range docs[3:] {
		t.Logf("%s: %v", d.Name, d.Err)
		if d.Err != nil && !errors.Is(d.Err, signing.ErrInvalid) && !errors.Is(d.Err, signing.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrInvalid or ErrUnsupported", d.Name, d.Err)
		}
	}
}

func TestInspectRealWorld(t *testing.T) {
	dir := "../signing/pades/testdata/realworld"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		info, err := Inspect(b)
		if err != nil || info.Pages < 1 || info.First.Rect[2] <= info.First.Rect[0] {
			t.Errorf("%s: %+v %v", e.Name(), info, err)
		}
	}
}

// TestInspectRefusesLooping: inputs on which digitorus/pdf, or a naive page-tree walk, would
// run without end are refused at once as ErrInvalid. The first is the one FuzzInspect found
// (no %%EOF near the end: digitorus/pdf's NewReader searches for it in quadratic time; before
// pdfsafe, a 10 MiB upload of it would have kept a core busy for about 40 minutes).
func TestInspectRefusesLooping(t *testing.T) {
	fuzzed := string(pdftest.CorpusInput(t, "testdata/fuzz/FuzzInspect/no-eof-quadratic"))
	cases := []struct{ name, pdf, says string }{
		{"found by FuzzInspect", fuzzed, "EOF"},
		{"10 MiB without %%EOF", "%PDF-1.4\n" + strings.Repeat("0", 10<<20), "EOF"},
		{"kids pointing back at the root", string(pdftest.Classic(
			"<< /Type /Catalog /Pages 2 0 R >>",
			"<< /Type /Pages /Kids [3 0 R] /Count 5 >>",
			"<< /Type /Pages /Kids [2 0 R] /Count 5 /Parent 2 0 R >>")), "loop"},
		{"a page whose /Parent chain loops", string(pdftest.Classic(
			"<< /Type /Catalog /Pages 2 0 R >>",
			"<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 3 0 R >>",
			"<< /Type /Page /Parent 2 0 R >>")), "MediaBox"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Inspect([]byte(c.pdf))
			if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, c.says)
			}
		})
	}
	// The corpus's loop-* inputs, on which digitorus/pdf loops in its object streams (see
	// internal/pdfsafe): ErrInvalid, or ErrUnsupported for those that name /Encrypt.
	for _, in := range pdftest.Hostile(t, "testdata/fuzz/FuzzInspect") {
		if _, err := Inspect(in.Data); !errors.Is(err, in.Want) {
			t.Errorf("%s: got %v, want %v", in.Name, err, in.Want)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"Vendim.pdf": "Vendim.pdf", `C:\Users\x\Raport çështje.PDF`: "Raport çështje.PDF", "../../etc/passwd": "passwd",
		"a\x00b\u202e.pdf": "ab.pdf", "": "document.pdf", "..": "document.pdf",
	} {
		if got := CleanName(in); got != want {
			t.Errorf("CleanName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := SignedName("Raport çështje.PDF"); got != "Raport çështje-signed.pdf" {
		t.Errorf("SignedName: %q", got)
	}
	if got := SignedName("notes"); got != "notes-signed.pdf" {
		t.Errorf("SignedName: %q", got)
	}
	want := `attachment; filename="Raport __shtje-signed.pdf"; filename*=UTF-8''Raport%20%C3%A7%C3%ABshtje-signed.pdf`
	if got := ContentDisposition("Raport çështje-signed.pdf"); got != want {
		t.Errorf("ContentDisposition:\n got %s\nwant %s", got, want)
	}
	if got := ContentDisposition(`a"b\c;d.pdf`); got != `attachment; filename="a_b_c_d.pdf"; filename*=UTF-8''a%22b%5Cc%3Bd.pdf` {
		t.Errorf("ContentDisposition: %s", got)
	}
	used := map[string]bool{}
	if a, b := uniqueName("x-signed.pdf", used), uniqueName("x-signed.pdf", used); a != "x-signed.pdf" || b != "x-signed (2).pdf" {
		t.Errorf("uniqueName: %q %q", a, b)
	}
}

func TestPositionRect(t *testing.T) {
	a4 := Box{Rect: [4]float64{0, 0, 595, 842}}
	tests := []struct {
		name string
		pos  Position
		box  Box
		want [4]float64
	}{
		{"bottom right", Position{Place: PlaceBottomRight}, a4, [4]float64{595 - 36 - 210, 36, 595 - 36, 36 + 54}},
		{"bottom left", Position{Place: PlaceBottomLeft}, a4, [4]float64{36, 36, 246, 90}},
		{"bottom centre", Position{Place: PlaceBottomCenter}, a4, [4]float64{192.5, 36, 402.5, 90}},
		{"top left", Position{Place: PlaceTopLeft}, a4, [4]float64{36, 842 - 90, 246, 842 - 36}},
		{"top right", Position{Place: PlaceTopRight}, a4, [4]float64{349, 752, 559, 806}},
		{"centre point", Position{Place: PlacePoint, X: .5, Y: .5}, a4, [4]float64{192.5, 394, 402.5, 448}},
		// A click in the corner keeps the box inside the page.
		{"corner point", Position{Place: PlacePoint, X: 0, Y: 0}, a4, [4]float64{1, 842 - 55, 211, 841}},
		// A MediaBox that does not start at 0,0.
		{"offset box", Position{Place: PlaceBottomLeft}, Box{Rect: [4]float64{100, 200, 695, 1042}}, [4]float64{136, 236, 346, 290}},
		// Rotated 90° clockwise: the shown page is 842 wide, 595 high; its bottom right is the
		// user space's top right. The box stays 210×54 in user space, where its text is.
		{"rotated 90 bottom right", Position{Place: PlaceBottomRight}, Box{Rect: a4.Rect, Rotate: 90}, [4]float64{349, 752, 559, 806}},
		{"rotated 180 bottom left", Position{Place: PlaceBottomLeft}, Box{Rect: a4.Rect, Rotate: 180}, [4]float64{595 - 36 - 210, 842 - 90, 595 - 36, 842 - 36}},
		{"rotated 270 top left", Position{Place: PlaceTopLeft}, Box{Rect: a4.Rect, Rotate: 270}, [4]float64{349, 752, 559, 806}},
		{"rotated 90 top left", Position{Place: PlaceTopLeft}, Box{Rect: a4.Rect, Rotate: 90}, [4]float64{36, 36, 246, 90}}, // the user space's origin shows top left
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.pos.Rect(tt.box)
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 0.01 {
					t.Fatalf("Rect = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// A click on the preview maps through the preview's pixels to the page's points.
func TestClickToPoints(t *testing.T) {
	x, y, err := ClickPoint(90, 127, 360, 509) // a quarter across, a quarter down
	if err != nil {
		t.Fatal(err)
	}
	r := Position{Place: PlacePoint, X: x, Y: y}.Rect(Box{Rect: [4]float64{0, 0, 595, 842}})
	cx, cy := (r[0]+r[2])/2, (r[1]+r[3])/2
	if math.Abs(cx-595/4.0) > 1 || math.Abs(cy-(842-842*127/509.0)) > 1 {
		t.Errorf("centre %.1f,%.1f from %v", cx, cy, r)
	}
	for _, c := range [][4]int{{-1, 0, 10, 10}, {0, 11, 10, 10}, {1, 1, 0, 10}} {
		if _, _, err := ClickPoint(c[0], c[1], c[2], c[3]); !errors.Is(err, signing.ErrInvalid) {
			t.Errorf("ClickPoint%v: %v", c, err)
		}
	}
}

func TestPositionPages(t *testing.T) {
	info := Info{Pages: 3, First: Box{Rect: [4]float64{0, 0, 595, 842}}, Last: Box{Rect: [4]float64{0, 0, 842, 595}}}
	for _, c := range []struct {
		page string
		n    int
		last bool
		ok   bool
	}{{"first", 1, false, true}, {"last", 3, true, true}, {"2", 2, false, true}, {"3", 3, true, true}, {"4", 0, false, false}} {
		n, box, err := Position{Page: c.page, Place: PlaceBottomLeft}.PageIn(info)
		if (err == nil) != c.ok || n != c.n || (c.ok && (box == info.Last) != c.last) {
			t.Errorf("page %s: %d %v %v", c.page, n, box, err)
		}
	}
	for _, p := range []Position{{Page: "0", Place: PlaceBottomLeft}, {Page: "x", Place: PlaceBottomLeft}, {Page: "first", Place: "middle"},
		{Page: "first", Place: PlacePoint, X: 1.5}} {
		if err := p.Check(); !errors.Is(err, signing.ErrInvalid) {
			t.Errorf("Check(%+v): %v", p, err)
		}
	}
}

// Pdftoppm renders the first page; a missing program is ErrNoPreview.
func TestPdftoppm(t *testing.T) {
	if _, _, _, err := (Pdftoppm{Path: "/nonexistent/pdftoppm"}).FirstPage(t.Context(), nil, 100); !errors.Is(err, ErrNoPreview) {
		t.Errorf("a missing pdftoppm: %v", err)
	}
	testenv.Need(t, "pdftoppm")
	img, w, h, err := Pdftoppm{}.FirstPage(t.Context(), signingtest.PDF("preview"), 200)
	if err != nil || w != 200 || h < 200 || !bytes.HasPrefix(img, []byte("\x89PNG")) {
		t.Fatalf("%d×%d %v", w, h, err)
	}
	if _, _, _, err := (Pdftoppm{}).FirstPage(t.Context(), []byte("not a pdf"), 200); err == nil {
		t.Error("a broken PDF rendered")
	}
}

// FuzzInspect feeds the upload path's PDF inspection untrusted bytes: it must answer or err,
// never panic or hang.
func FuzzInspect(f *testing.F) {
	for _, dir := range []string{"testdata", "../signing/pades/testdata/bad", "../signing/pades/testdata/realworld"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && len(b) < 256<<10 {
				f.Add(b)
			}
		}
	}
	f.Add(signingtest.PDF("seed"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Inspect(data)
		if err == nil && (info.Pages < 1 || info.First.Rect[2] <= info.First.Rect[0]) {
			t.Fatalf("accepted with %+v", info)
		}
		if err != nil && !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
			t.Fatalf("an error that is neither ErrInvalid, ErrUnsupported nor ErrTooLarge: %v", err)
		}
		if err == nil {
			Position{Page: "last", Place: PlaceBottomRight}.Rect(info.Last)
		}
	})
}
