package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/vula-eid/vula"

// layers are the units of each layer, lowest first (see the package comment). A unit is one
// or more package paths, each with everything beneath it; it is named by its first path.
var layers = [][][]string{
	{{"hsm"}},
	{{"internal/store"}, {"internal/config"}, {"internal/cms"}, {"internal/backup"}, {"internal/problem"}, {"internal/sdjwt"}, {"internal/mdoc"}, {"internal/rawsig"}, {"internal/statuslist"}},
	{{"internal/holder"}}, // the wallet, over mdoc's checks: still below everything of the server
	{{"internal/server"}, {"internal/upload"}, {"internal/web"}, {"internal/rp"}},
	{{"internal/audit"}, {"internal/auth"}}, // over the edge: audit serves its proofs, auth answers refused tokens
	{{"internal/certs"}, {"internal/tsa"}, {"internal/signing", "internal/pdfsafe", "internal/trustlist"}, {"internal/letter"}},
	{{"internal/idp"}, {"internal/csc"}, {"internal/seal"}, {"internal/portal"}, {"internal/validation"}, {"internal/pid"}, {"internal/eid"}, {"internal/verifier"}},
	{{"internal/app"}},
	{{"internal/cli"}},
	{{"cmd"}},
}

// testSupport are the packages that exist for tests; no other package's non-test code imports
// them. A unit's own *test sub-package (idptest, signingtest, ...) is test support too.
var testSupport = []string{"internal/testenv", "internal/apitest", "test"}

// knownExceptions are the imports that break the rules today, each with the reason. The list
// only shrinks: a new violation fails the test, and so does an exception that no longer occurs
// (remove it from here).
var knownExceptions = map[string]string{}

type pkg struct {
	ImportPath string
	Imports    []string
}

// listPackages runs go list over the module.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// within reports whether path is unit or beneath it.
func within(path, unit string) bool {
	return path == unit || strings.HasPrefix(path, unit+"/")
}

// place gives a module-relative path's layer (1-based) and unit; 0 and "" when it has none.
func place(path string) (int, string) {
	for i, units := range layers {
		for _, u := range units {
			for _, p := range u {
				if within(path, p) {
					return i + 1, u[0]
				}
			}
		}
	}
	return 0, ""
}

func isTestSupport(path string) bool {
	for _, u := range testSupport {
		if within(path, u) {
			return true
		}
	}
	last := path[strings.LastIndex(path, "/")+1:]
	return strings.HasSuffix(last, "test") && last != "archtest"
}

// violation says why from may not import to, or "" when it may.
func violation(from, to string) string {
	if isTestSupport(to) && !isTestSupport(from) {
		return "non-test code imports test support"
	}
	if within(from, "pkg") {
		if within(to, "internal") {
			return "pkg/ is for outsiders and imports nothing under internal/"
		}
		return ""
	}
	if isTestSupport(from) {
		return ""
	}
	lf, uf := place(from)
	lt, ut := place(to)
	switch {
	case lf == 0:
		return "the importing package is in no layer: add it to layers"
	case lt == 0 && !within(to, "pkg"):
		return "the imported package is in no layer: add it to layers"
	case lt == 0 || uf == ut || lt < lf:
		return ""
	case lt > lf:
		return "imports a higher layer"
	default:
		return "imports another unit of its own layer"
	}
}

// TestImportRules checks every non-test import between Vula's packages against the layers.
func TestImportRules(t *testing.T) {
	seen := map[string]bool{}
	var bad []string
	for _, p := range listPackages(t) {
		from := strings.TrimPrefix(p.ImportPath, module+"/")
		if from == "internal/archtest" {
			continue
		}
		if _, u := place(from); u == "" && !isTestSupport(from) && !within(from, "pkg") {
			bad = append(bad, from+": in no layer: add it to layers")
		}
		for _, imp := range p.Imports {
			if !within(imp, module) {
				continue
			}
			to := strings.TrimPrefix(imp, module+"/")
			why := violation(from, to)
			if why == "" {
				continue
			}
			_, uf := place(from)
			_, ut := place(to)
			key := uf + " -> " + ut
			if _, ok := knownExceptions[key]; ok {
				seen[key] = true
				continue
			}
			bad = append(bad, from+" -> "+to+": "+why)
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
	for key := range knownExceptions {
		if !seen[key] {
			t.Errorf("%s no longer occurs: remove it from knownExceptions", key)
		}
	}
}

// TestRules checks the rule function on imports made up to break each rule, so that a
// TestImportRules that passes is not a check that cannot fail.
func TestRules(t *testing.T) {
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"hsm/pkcs11", "hsm", true},
		{"hsm/pkcs11", "internal/store", false},
		{"hsm", "internal/idp", false},
		{"internal/signing/pades", "internal/signing/cades", true},
		{"internal/signing/pades", "internal/pdfsafe", true},
		{"internal/store/sqlstore", "internal/signing", false},
		{"internal/csc", "internal/certs", true},
		{"internal/csc", "internal/seal", false},
		{"internal/tsa", "internal/certs", false},
		{"internal/tsa", "internal/idp", false},
		{"internal/idp/idptest", "internal/testenv", true},
		{"internal/idp", "internal/idp/idptest", false},
		{"internal/csc", "internal/testenv", false},
		{"pkg/tsclient", "internal/tsa", false},
		{"internal/cli", "internal/portal", true},
		{"internal/validation/pades", "internal/validation/core", true},
		{"internal/validation/cades", "internal/cms", true},
		{"internal/validation/core", "internal/idp", false},
		{"internal/newthing", "internal/store", false},
		{"internal/eid", "internal/letter", true},
		{"internal/letter", "internal/seal", false},
		{"internal/letter", "internal/signing", false},
		{"internal/holder", "internal/mdoc", true},
		{"internal/mdoc", "internal/holder", false},
		{"internal/pid", "internal/rawsig", true},
		{"internal/rawsig", "hsm", true},
		{"internal/holder", "internal/statuslist", true},
		{"internal/statuslist", "internal/holder", false},
		{"internal/holder", "internal/rp", false},
		{"internal/holder", "internal/verifier", false},
	} {
		if got := violation(c.from, c.to) == ""; got != c.ok {
			t.Errorf("%s -> %s: allowed %v, want %v (%s)", c.from, c.to, got, c.ok, violation(c.from, c.to))
		}
	}
}

// public are the module's packages another module may import (see docs/architecture.md).
var public = []string{"hsm", "pkg"}

// TestPublicSurface: every package outside internal/ is public API, the command or the
// end-to-end tests; anything else belongs under internal/.
func TestPublicSurface(t *testing.T) {
	for _, p := range listPackages(t) {
		path := strings.TrimPrefix(p.ImportPath, module+"/")
		if within(path, "internal") || within(path, "cmd") || within(path, "test") {
			continue
		}
		ok := false
		for _, u := range public {
			ok = ok || within(path, u)
		}
		if !ok {
			t.Errorf("%s is importable by other modules but is not public API: move it under internal/ or add it to public", path)
		}
	}
}
