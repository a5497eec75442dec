package validation_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/validation"
)

// TestSubIndicationsAsTheStandardGives: every verdict the validator's code (this package and
// its sub-packages) gives with a fixed sub-indication (the checks' Fail and Indeterminate) pairs it with an indication EN 319 102-1
// gives it (validation.SubIndicationsOf). Verdicts passed on from a timestamp's report carry
// that report's pair.
func TestSubIndicationsAsTheStandardGives(t *testing.T) {
	names := map[string]validation.SubIndication{
		"FormatFailure": validation.FormatFailure, "HashFailure": validation.HashFailure, "SigCryptoFailure": validation.SigCryptoFailure,
		"Revoked": validation.Revoked, "RevokedNoPOE": validation.RevokedNoPOE, "RevokedCANoPOE": validation.RevokedCANoPOE,
		"NoSigningCertificateFound": validation.NoSigningCertificateFound, "NoCertificateChainFound": validation.NoCertificateChainFound,
		"CertificateChainGeneral": validation.CertificateChainGeneral, "OutOfBoundsNoPOE": validation.OutOfBoundsNoPOE,
		"NotYetValid": validation.NotYetValid, "Expired": validation.Expired, "TryLater": validation.TryLater,
		"RevocationOutOfBoundsNoPOE": validation.RevocationOutOfBoundsNoPOE, "SignedDataNotFound": validation.SignedDataNotFound,
		"SigConstraintsFailure": validation.SigConstraintsFailure, "TimestampOrderFailure": validation.TimestampOrderFailure,
		"CryptoConstraintsFailure": validation.CryptoConstraintsFailure, "ChainConstraintsFailure": validation.ChainConstraintsFailure,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := filepath.Glob("*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, sub...)
	fset := token.NewFileSet()
	calls := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			ind := map[string]validation.Indication{"Fail": validation.TotalFailed, "Indeterminate": validation.Indeterminate}[sel.Sel.Name]
			if ind == "" {
				return true
			}
			var name string
			switch a := call.Args[1].(type) {
			case *ast.Ident: // within core
				name = a.Name
			case *ast.SelectorExpr: // core.FormatFailure
				if x, ok := a.X.(*ast.Ident); ok && x.Name == "core" {
					name = a.Sel.Name
				}
			}
			if name == "" {
				return true // passed on from a timestamp's report
			}
			sub, known := names[name]
			if !known {
				return true // a variable
			}
			calls++
			if !slices.Contains(validation.SubIndicationsOf[ind], sub) {
				t.Errorf("%s: %s with %s; EN 319 102-1 gives %s only under another indication", fset.Position(call.Pos()), ind, sub, sub)
			}
			return true
		})
	}
	if calls < 30 {
		t.Fatalf("found only %d verdicts: the test no longer finds them", calls)
	}
}
