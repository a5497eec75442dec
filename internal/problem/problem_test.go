package problem

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestCatalog: names are unique URI segments, statuses are errors, and api/openapi.yaml
// documents exactly the catalog: the Problem schema's type enum, and a table row with each
// type's status.
func TestCatalog(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Description string `yaml:"description"`
					Properties  struct {
						Type struct {
							Enum []string `yaml:"enum"`
						} `yaml:"type"`
					} `yaml:"properties"`
				} `yaml:"Problem"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	doc := spec.Components.Schemas.Problem
	seen := map[string]bool{}
	var uris []string
	for _, ty := range Types() {
		if seen[ty.Name] || ty.Name == "" || strings.ContainsAny(ty.Name, "/ #?") || ty.Title == "" || ty.Status < 400 || ty.Status > 599 {
			t.Errorf("bad or repeated type %+v", ty)
		}
		seen[ty.Name] = true
		uris = append(uris, ty.URI())
		if !strings.Contains(doc.Description, "| "+ty.URI()+" | "+strconv.Itoa(ty.Status)+" | ") {
			t.Errorf("api/openapi.yaml's Problem has no row for %s (%d)", ty.URI(), ty.Status)
		}
	}
	got := slices.Clone(doc.Properties.Type.Enum)
	slices.Sort(got)
	slices.Sort(uris)
	if !slices.Equal(got, uris) {
		t.Errorf("api/openapi.yaml's Problem type enum %v, want %v", got, uris)
	}
}

// TestOf: a sentinel is found through wrapping, the outermost mark wins, and an error with no
// mark has no type.
func TestOf(t *testing.T) {
	inner := New(TooLarge, "x: too large")
	for _, tc := range []struct {
		err  error
		want Type
		ok   bool
	}{
		{inner, TooLarge, true},
		{fmt.Errorf("reading: %w", inner), TooLarge, true},
		{fmt.Errorf("%w: %w", New(InvalidRequest, "bad"), inner), InvalidRequest, true},
		{Mark(Unavailable, fmt.Errorf("%w", inner)), Unavailable, true},
		{Errorf(NotFound, "no %s", "key"), NotFound, true},
		{errors.New("plain"), Type{}, false},
		{nil, Type{}, false},
	} {
		got, ok := Of(tc.err)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Of(%v) = %v %v, want %v %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
	if m := Mark(Unavailable, inner); !errors.Is(m, inner) || m.Error() != inner.Error() {
		t.Errorf("Mark hides what it marks: %v", m)
	}
	if e := Errorf(NotFound, "no %s", "key"); e.Error() != "no key" {
		t.Errorf("Errorf's text %q", e.Error())
	}
}
