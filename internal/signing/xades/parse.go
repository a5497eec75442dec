package xades

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
)

// maxDepth bounds the nesting of an input document (etree recurses on it when copying).
const maxDepth = 256

// parseXML parses an untrusted XML document. A first pass over the raw tokens refuses any
// directive (<!DOCTYPE ...>, which is where entities are declared) before the tree is built, so
// no entity is ever defined, expanded or fetched; encoding/xml itself knows only the five
// predefined entities and resolves nothing external.
func parseXML(data []byte) (*etree.Document, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: xades: not well-formed XML: %v", signing.ErrInvalid, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			what := "a directive"
			if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(string(t))), "DOCTYPE") {
				what = "a DTD (<!DOCTYPE>)"
			}
			return nil, fmt.Errorf("%w: xades: the document has %s; DTDs and entity declarations are refused", signing.ErrInvalid, what)
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: xades: not well-formed XML: text outside the root element", signing.ErrInvalid)
			}
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					return nil, fmt.Errorf("%w: xades: not well-formed XML: a second root element <%s>", signing.ErrInvalid, t.Name.Local)
				}
			}
			if depth++; depth > maxDepth {
				return nil, fmt.Errorf("%w: xades: elements nested deeper than %d", signing.ErrInvalid, maxDepth)
			}
		case xml.EndElement:
			depth--
		}
	}
	doc := etree.NewDocument()
	doc.ReadSettings = etree.ReadSettings{MaxDepth: maxDepth}
	if err := doc.ReadFromBytes(data); err != nil {
		return nil, fmt.Errorf("%w: xades: not well-formed XML: %v", signing.ErrInvalid, err)
	}
	if doc.Root() == nil {
		return nil, fmt.Errorf("%w: xades: %v", signing.ErrInvalid, errNoRoot)
	}
	return doc, nil
}
