package validation_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// BenchmarkValidateXAdES: validations per second of a XAdES B-LT enveloped signature over a
// 100 KB XML document, revocation data embedded (no fetching).
func BenchmarkValidateXAdES(b *testing.B) {
	env := signingtest.New(b, signingtest.Options{})
	var doc strings.Builder
	doc.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<inv:Invoices xmlns:inv="urn:vula:invoice">` + "\n")
	for i := 0; doc.Len() < 100<<10; i++ {
		fmt.Fprintf(&doc, `  <inv:Invoice Id="i%d" number="2026-%06d"><inv:Party>Tax Administration</inv:Party><inv:Amount currency="EUR">%d.00</inv:Amount></inv:Invoice>`+"\n", i, i, i*7)
	}
	doc.WriteString("</inv:Invoices>\n")
	signed := signXAdES(b, env, env.Seal, []byte(doc.String()), xades.Enveloped, signing.LevelLT)
	opts := validation.Options{TrustAnchors: anchors(env)}
	b.Run("B-LT-enveloped-100KB", func(b *testing.B) {
		b.SetBytes(int64(len(signed)))
		cpu0 := cpuTime()
		for b.Loop() {
			rep, err := validation.Validate(context.Background(), bytes.NewReader(signed), int64(len(signed)), opts)
			if err != nil || rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLT {
				b.Fatalf("%v %s", err, rep.Indication)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
		// The process's CPU time a validation: steadier than the rate on a shared machine.
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
