package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

// readmeSkip marks the ```sh block right after it as one the README test cannot run, with the
// reason: <!-- readme-test: skip: make targets; the test builds bin/vula itself -->
var readmeSkip = regexp.MustCompile(`^<!--\s*readme-test:\s*skip:\s*(\S.*?)\s*-->$`)

// readmeBlock is one ```sh block of the README.
type readmeBlock struct {
	line       int // of the block's first command, 1-based
	text       string
	skipReason string
}

// readmeBlocks returns the ```sh blocks of the markdown file at path, in order.
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var cur *readmeBlock
	prev := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```sh"):
			cur = &readmeBlock{line: n + 1}
			if m := readmeSkip.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.skipReason = m[1]
			}
		case cur != nil && strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.Contains(line, "readme-test:") && readmeSkip.FindStringSubmatch(strings.TrimSpace(line)) == nil:
			t.Fatalf("%s:%d: a readme-test marker that is not <!-- readme-test: skip: REASON -->: %q", path, n, line)
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if cur != nil {
		t.Fatalf("%s: the block at line %d is not closed", path, cur.line)
	}
	return blocks
}

// TestREADME runs the README's ```sh blocks, in the README's order, as one bash script with
// `set -euo pipefail`, against the real binary: a command that fails, or a check in the README
// (a grep, `vula verify`'s exit code) that does not hold, fails the test and names the README
// line. It runs in a fresh directory where bin/vula is the binary just built, the repository's
// other top-level entries are linked (so README paths such as internal/.../testdata resolve),
// and ./var does not exist yet. The server starts and stops where the README says: the admin
// commands run with it up (through its control socket), and those after the README stops it
// (the restored copy's `audit verify`, `keys list`, `pki list`) with it down, opening the
// stores themselves.
//
// Two things differ from a reader's shell, both so that the test can run beside others: the
// address 127.0.0.1:8080 is replaced by a free port, in the text and through VULA_LISTEN; and
// blocks marked <!-- readme-test: skip: REASON --> are not run — only make targets (the test
// builds bin/vula itself, and `make test` is what runs this test), listed in the log.
func TestREADME(t *testing.T) {
	t.Parallel()
	bin := vulaBinary(t)
	testenv.Need(t, "curl", "jq", "openssl", "pdfsig")
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(repo, "README.md"))
	work := t.TempDir()
	entries, err := os.ReadDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "bin", "var", ".git":
			continue
		}
		if err := os.Symlink(filepath.Join(repo, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(work, "bin"), 0o755)
	if err := os.Symlink(bin, filepath.Join(work, "bin", "vula")); err != nil {
		t.Fatal(err)
	}

	addr := freePort(t)
	var script strings.Builder
	// lineOf maps a line of the script to the README line it came from.
	lineOf := map[int]int{}
	script.WriteString("set -Eeuo pipefail\ntrap 'echo \"readme-test: exit $? at script line $LINENO\" >&2' ERR\n")
	scriptLine := 3
	ran := 0
	for _, b := range blocks {
		if b.skipReason != "" {
			t.Logf("README.md:%d: not run: %s", b.line, b.skipReason)
			continue
		}
		ran++
		fmt.Fprintf(&script, "echo '--- README.md:%d' >&2\n", b.line)
		scriptLine++
		for i, l := range strings.Split(strings.TrimSuffix(b.text, "\n"), "\n") {
			script.WriteString(strings.ReplaceAll(l, "127.0.0.1:8080", addr) + "\n")
			lineOf[scriptLine] = b.line + i
			scriptLine++
		}
	}
	if ran == 0 {
		t.Fatal("the README has no block to run")
	}
	path := filepath.Join(work, "readme.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	cmd.Dir = work
	// VULA_* variables of the caller's environment would change what the README shows.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VULA_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "VULA_LISTEN="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the README's background server goes with it
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a server the README left running
	if err != nil {
		where := ""
		if m := regexp.MustCompile(`readme-test: exit \d+ at script line (\d+)`).FindStringSubmatch(out.String()); m != nil {
			n, _ := strconv.Atoi(m[1])
			where = fmt.Sprintf(" at README.md:%d", lineOf[n])
		}
		log, _ := os.ReadFile(filepath.Join(work, "vula.log"))
		t.Fatalf("the README's commands failed%s: %v\n%s\n--- vula.log (the README's server):\n%s", where, err, out.String(), tail(log, 4000))
	}
	t.Logf("ran %d README blocks in %v", ran, time.Since(start).Round(time.Second))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestREADMEBlocks checks the README test's reading of a markdown file: which blocks run, which
// are skipped and why, and on which line each begins.
func TestREADMEBlocks(t *testing.T) {
	t.Parallel()
	md := "# T\n\n<!-- readme-test: skip: needs a vendor's HSM library -->\n```sh\nmodutil -add x\n```\n\ntext\n\n" +
		"```sh\necho one\necho two\n```\n```yaml\nnot: run\n```\n<!-- a comment -->\n```sh\necho three\n```\n"
	path := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(path, []byte(md), 0o600)
	got := readmeBlocks(t, path)
	if len(got) != 3 || got[0].skipReason != "needs a vendor's HSM library" || got[0].line != 5 ||
		got[1].skipReason != "" || got[1].line != 11 || got[1].text != "echo one\necho two\n" ||
		got[2].skipReason != "" || got[2].text != "echo three\n" {
		t.Fatalf("blocks: %+v", got)
	}
}
