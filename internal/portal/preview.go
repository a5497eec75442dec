package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Previewer renders the first page of a PDF as a PNG.
type Previewer interface {
	// FirstPage returns a PNG of page 1 of pdf, width pixels wide, and its size in pixels. It
	// MUST NOT change pdf, and MUST return within its own time bound. ErrNoPreview when the
	// renderer is not installed.
	FirstPage(ctx context.Context, pdf []byte, width int) (img []byte, w, h int, err error)
}

// ErrNoPreview: no renderer on this machine (poppler-utils' pdftoppm is not installed).
var ErrNoPreview = errors.New("portal: pdftoppm is not installed: no previews")

// Pdftoppm renders with poppler's pdftoppm, run directly (no shell) on a copy of the document in
// a fresh temporary directory, and killed after Timeout. Rendering is left to poppler because
// a PDF renderer is far beyond what Vula should write.
type Pdftoppm struct {
	Path    string        // the program; looked up on PATH as "pdftoppm" when empty
	Timeout time.Duration // 10 s when 0
	// Dir is where the working directories are made: the platform's spool directory, emptied
	// at start, so that a crash leaves nothing behind for long. os.TempDir() when empty.
	Dir string
}

var _ Previewer = Pdftoppm{}

// FirstPage implements Previewer.
func (p Pdftoppm) FirstPage(ctx context.Context, pdf []byte, width int) (img []byte, w, h int, err error) {
	prog := p.Path
	if prog == "" {
		prog = "pdftoppm"
	}
	prog, err = exec.LookPath(prog)
	if err != nil {
		return nil, 0, 0, ErrNoPreview
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir, err := os.MkdirTemp(p.Dir, "vula-preview-")
	if err != nil {
		return nil, 0, 0, err
	}
	// The folder holds a copy of the document: failing to remove it is an error.
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			img, err = nil, fmt.Errorf("portal: removing the preview folder: %w", rerr)
		}
	}()
	in := filepath.Join(dir, "in.pdf")
	if err := os.WriteFile(in, pdf, 0o600); err != nil {
		return nil, 0, 0, err
	}
	cmd := exec.CommandContext(ctx, prog, "-png", "-f", "1", "-l", "1", "-singlefile",
		"-scale-to-x", fmt.Sprint(width), "-scale-to-y", "-1", in, filepath.Join(dir, "page"))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, 0, 0, fmt.Errorf("portal: pdftoppm took longer than %v", timeout)
		}
		return nil, 0, 0, fmt.Errorf("portal: pdftoppm: %v: %s", err, bytes.TrimSpace(stderr.Bytes()[:min(stderr.Len(), 300)]))
	}
	img, err = os.ReadFile(filepath.Join(dir, "page.png"))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("portal: pdftoppm wrote no image: %w", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("portal: pdftoppm's image: %w", err)
	}
	return img, cfg.Width, cfg.Height, nil
}
