package pades_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/vula-eid/vula/internal/pdfsafe/pdftest"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestSignRefusesLooping: the PDFs on which digitorus/pdf loops, recurses or allocates without
// end (internal/pdfsafe names the place of each) are refused at once, with nothing signed or
// written: ErrInvalid, or ErrUnsupported for those that name /Encrypt. They are also
// FuzzSign's corpus (testdata/fuzz/FuzzSign/loop-*), which go test replays.
func TestSignRefusesLooping(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	for _, in := range pdftest.Hostile(t, "testdata/fuzz/FuzzSign") {
		t.Run(in.Name, func(t *testing.T) {
			var w bytes.Buffer
			err := pades.Sign(context.Background(), bytes.NewReader(in.Data), int64(len(in.Data)), &w, env.Seal, pades.Options{Level: signing.LevelB})
			if !errors.Is(err, in.Want) || w.Len() != 0 {
				t.Errorf("got %v (%d bytes written), want %v", err, w.Len(), in.Want)
			}
		})
	}
}
