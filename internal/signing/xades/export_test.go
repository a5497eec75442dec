package xades_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// ParseXMLBounded counts elements and attributes before it builds a tree, and still refuses
// what ParseXML refuses.
func TestParseXMLBounded(t *testing.T) {
	doc := `<r a="1">` + strings.Repeat(`<e b="2"/>`, 10) + `</r>` // 22 nodes
	if d, err := xades.ParseXMLBounded([]byte(doc), 22); err != nil || len(d.Root().ChildElements()) != 10 {
		t.Fatalf("at the bound: %v", err)
	}
	if _, err := xades.ParseXMLBounded([]byte(doc), 21); !errors.Is(err, signing.ErrTooLarge) {
		t.Fatalf("past the bound: %v", err)
	}
	dtd := `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>`
	if _, err := xades.ParseXMLBounded([]byte(dtd), 100); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("a DTD: %v", err)
	}
}
