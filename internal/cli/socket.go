package cli

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
)

// The control socket: while `vula serve` runs it listens on <data_dir>/vula.sock (mode 0600),
// and the commands that need the key layer (which the software keystore gives to one process
// only) run inside the server, against its open key layer, instead of failing on the lock.
//
// The CLI sends one request, a JSON line {"args": [...], "dir": "/its/cwd"}; the server runs the
// same command line in-process and answers with frames: a kind byte ('o' standard output, 'e'
// standard error, 'x' the exit code), a big-endian uint32 length, the payload. A peer that is not
// the server's own user (or root), by SO_PEERCRED, is refused before it is read. When no server
// answers, the CLI opens the stores itself.

// socketName is the control socket's name in the data directory.
const socketName = "vula.sock"

// annotRemote marks the commands that run inside a running server (see remoteCommands).
const annotRemote = "vula.socket"

// maxSocketPath is the longest path a Unix socket may have (sun_path less its NUL on Linux).
const maxSocketPath = 107

// maxSocketRequest bounds the request line a peer may send.
const maxSocketRequest = 1 << 20

// socketRequest is what the CLI sends.
type socketRequest struct {
	Args []string `json:"args"`
	Dir  string   `json:"dir"` // the CLI's working directory: relative paths are relative to it
}

// inServer is what a command run through the socket uses instead of opening its own: the
// server's configuration and key layer, and who asked.
type inServer struct {
	cfg  config.Config
	keys hsm.Manager
	dir  string
	uid  int
}

// sharedKeys is the server's key layer lent to a command: its Close leaves it open.
type sharedKeys struct{ hsm.Manager }

var _ hsm.Manager = sharedKeys{}

func (sharedKeys) Close() error { return nil }

// actor names who asked for the signatures of a command in the audit log.
func (g *globals) actor() string {
	if g.server != nil {
		return fmt.Sprintf("cli via socket (uid %d)", g.server.uid)
	}
	return "cli"
}

// path resolves a path given on the command line: through the socket, against the CLI's
// working directory, not the server's.
func (g *globals) path(p string) string {
	if g.server == nil || p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(g.server.dir, p)
}

// remoteCommands are the commands that open the key layer. With a server up they run inside it;
// when returns false, the command does not need the key layer this time and runs here.
var remoteCommands = map[string]func(cmd *cobra.Command) bool{
	"keys create": nil, "keys list": nil, "keys show": nil, "keys retire": nil, "keys destroy": nil,
	"pki list": nil, "pki init": nil, "pki issue": nil, "pki crl": nil,
	"orgs create": nil, "orgs list": nil, "orgs show": nil,
	"pid revoke":                nil,
	"persons issue-signing-key": nil,
	"persons register":          nil, // audited, and with --letter sealed
	"persons reset":             nil,
	"persons renew-signing-key": nil,
	"idp rotate-key":            nil,
	"audit key":                 nil,
	"audit verify": func(cmd *cobra.Command) bool {
		// With --public-key it reads no key layer; with --file it reads the CLI's own file.
		return cmd.Flag("public-key").Value.String() == "" && cmd.Flag("file").Value.String() == ""
	},
}

// markRemote wraps the commands of remoteCommands under root: run outside a server, each first
// tries the socket, and runs here only when no server answers.
func (g *globals) markRemote(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		name := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		when, ok := remoteCommands[name]
		if !ok || c.RunE == nil {
			return
		}
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[annotRemote] = "yes"
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if g.server == nil && (when == nil || when(cmd)) {
				code, forwarded, err := g.forward(cmd)
				if forwarded {
					if err == nil && code != 0 {
						err = exitCode(code)
					}
					return err
				}
			}
			return run(cmd, args)
		}
	}
	walk(root)
}

// exitCode is a forwarded command's failure: the server already wrote why on standard error.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// forward sends the command line to the server of the configured data directory and copies
// its answer. forwarded is false when no server answers there: the caller runs the command.
func (g *globals) forward(cmd *cobra.Command) (code int, forwarded bool, err error) {
	cfg, err := g.load()
	if err != nil {
		return 0, false, nil // the command itself reports the configuration's error
	}
	path := filepath.Join(cfg.DataDir, socketName)
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return 0, false, nil // no server (or a stale socket of one killed): open the stores here
	}
	defer func() { _ = conn.Close() }() // the exit frame was read, or err says what went wrong
	dir, err := os.Getwd()
	if err != nil {
		return 0, true, err
	}
	req, _ := json.Marshal(socketRequest{Args: g.env.Args, Dir: dir}) // strings only: never fails
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return 0, true, fmt.Errorf("the server at %s: %w", path, err)
	}
	stop := context.AfterFunc(cmd.Context(), func() { _ = conn.Close() }) // interrupted: the server cancels
	defer stop()
	r := bufio.NewReader(conn)
	for {
		kind, payload, err := readFrame(r)
		if err != nil {
			return 0, true, fmt.Errorf("the server at %s stopped answering: %w", path, err)
		}
		switch kind {
		case 'o':
			_, err = cmd.OutOrStdout().Write(payload)
		case 'e':
			_, err = cmd.ErrOrStderr().Write(payload)
		case 'x':
			if len(payload) != 4 {
				return 0, true, errors.New("the server sent a malformed exit frame")
			}
			return int(binary.BigEndian.Uint32(payload)), true, nil
		default:
			return 0, true, fmt.Errorf("the server sent an unknown frame %q", kind)
		}
		if err != nil {
			return 0, true, err
		}
	}
}

// maxFrame bounds a frame's payload, on both sides.
const maxFrame = 1 << 20

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("a frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return h[0], b, err
}

// frames writes frames of one kind to a connection shared by the two output streams.
type frames struct {
	mu   *sync.Mutex
	conn net.Conn
	kind byte
}

func (f frames) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for off := 0; off < len(p); off += maxFrame {
		chunk := p[off:min(off+maxFrame, len(p))]
		var h [5]byte
		h[0] = f.kind
		binary.BigEndian.PutUint32(h[1:], uint32(len(chunk)))
		if _, err := f.conn.Write(append(h[:], chunk...)); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// errSocketInUse is listenSocket's error when a live server answers on the socket.
var errSocketInUse = errors.New("another vula serve answers on it")

// listenSocket listens on path with mode 0600. A socket file left by a killed server (nothing
// answers on it) is replaced; one a live server answers on is an error. The socket is made under
// a temporary name, restricted, then renamed into place, so it is never reachable with a wider
// mode.
func listenSocket(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close() // only probed
		return nil, fmt.Errorf("%s: %w", path, errSocketInUse)
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	_ = os.Remove(tmp) // a leftover of a process with our pid
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // it is renamed: closeSocket removes it by its final name
	if err := os.Chmod(tmp, 0o600); err != nil {
		return nil, errors.Join(err, ln.Close(), os.Remove(tmp))
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, errors.Join(err, ln.Close(), os.Remove(tmp))
	}
	return ln, nil
}

// startSocket listens on the data directory's control socket and runs the commands sent there
// with keys; stop closes it and waits for the commands in flight.
func (g *globals) startSocket(ctx context.Context, cfg config.Config, keys hsm.Manager, log *slog.Logger) (stop func(), err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.DataDir, socketName)
	if len(path)+12 > maxSocketPath { // the temporary name's suffix: "." and a pid
		// The CLI then opens the stores itself, and says so if they are in use.
		log.Warn("control socket: the data directory's path is too long for a Unix socket; admin commands must run while serve is stopped",
			"path", path, "max", maxSocketPath-12)
		return func() {}, nil
	}
	ln, err := listenSocket(path)
	if errors.Is(err, errSocketInUse) {
		// Another replica on this data directory (a shared PKCS#11 token and database): the
		// commands run in that one, on the same platform.
		log.Warn("control socket: another vula serve answers on it; this one opens none", "path", path)
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.serveSocket(sctx, ln, path, inServer{cfg: cfg, keys: keys}, log)
	}()
	log.Info("control socket: admin commands run here while serve runs", "path", path)
	return func() { cancel(); <-done }, nil
}

// serveSocket answers the control socket until ctx ends; each connection runs one command.
func (g *globals) serveSocket(ctx context.Context, ln *net.UnixListener, path string, side inServer, log *slog.Logger) {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() }) // unblocks Accept
	defer stop()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Error("control socket: accept", "err", err)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.serveCommand(ctx, conn, side, log)
		}()
	}
	wg.Wait()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("control socket: not removed", "path", path, "err", err)
	}
}

// serveCommand runs the one command a peer sends.
func (g *globals) serveCommand(ctx context.Context, conn *net.UnixConn, side inServer, log *slog.Logger) {
	defer func() { _ = conn.Close() }() // the answer's last frame is written, or the peer left
	uid, err := peerUID(conn)
	if err != nil || (uid != os.Getuid() && uid != 0) {
		log.Warn("control socket: refused a peer", "uid", uid, "err", err)
		return
	}
	side.uid = uid
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a peer that sends nothing goes
	line, err := bufio.NewReader(io.LimitReader(conn, maxSocketRequest)).ReadBytes('\n')
	var req socketRequest
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	mu := &sync.Mutex{}
	stdout, stderr := frames{mu, conn, 'o'}, frames{mu, conn, 'e'}
	exit := func(code int) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(code))
		_, _ = frames{mu, conn, 'x'}.Write(b[:]) // a peer that left has nothing to read it
	}
	if err != nil || !filepath.IsAbs(req.Dir) {
		_, _ = fmt.Fprintln(stderr, "vula: the server could not read the request") // as above
		exit(2)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	// The command ends when the peer goes (interrupted) or the server stops.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, conn) // returns when the peer closes its side
		cancel()
	}()
	side.dir = req.Dir
	start := time.Now()
	code := g.runInServer(cctx, req.Args, side, stdout, stderr)
	log.Info("command via the control socket", "command", commandName(req.Args), "uid", uid, "exit", code,
		"duration", time.Since(start))
	exit(code)
}

// runInServer runs one command line in this process, with the server's key layer.
func (g *globals) runInServer(ctx context.Context, args []string, side inServer, stdout, stderr io.Writer) (code int) {
	defer func() {
		if p := recover(); p != nil {
			_, _ = fmt.Fprintln(stderr, "vula: the command failed inside the server") // the peer may have left
			code = 1
		}
	}()
	env := Env{Args: args, Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Environ: g.env.Environ, Version: g.env.Version}
	return runLine(ctx, env, &side)
}

// commandName is the command's words without its flags or arguments' values, for the log:
// arguments may be personal numbers, and flags may carry what should not be logged.
func commandName(args []string) string {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") || len(words) == 2 {
			break
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}
