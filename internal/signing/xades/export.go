package xades

import (
	"bytes"
	"encoding/xml"
	"fmt"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
)

// These are the parsing and canonicalization of this package, for the validator
// (internal/validation), which must read and canonicalize exactly as the signer does.

// ParseXML parses an untrusted XML document as Sign does: a DTD or any directive is refused
// with signing.ErrInvalid before the tree is built (no entity is defined, expanded or fetched),
// and elements may nest at most 256 deep.
func ParseXML(data []byte) (*etree.Document, error) { return parseXML(data) }

// ParseXMLBounded is ParseXML behind a count: a document of more than maxNodes elements and
// attributes is refused with signing.ErrTooLarge before the tree is built, since a node of the
// tree costs a few hundred bytes however small it is in the input.
func ParseXMLBounded(data []byte, maxNodes int) (*etree.Document, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	nodes := 0
	for {
		tok, err := dec.RawToken()
		if err != nil {
			break // ParseXML says what is wrong
		}
		if t, ok := tok.(xml.StartElement); ok {
			if nodes += 1 + len(t.Attr); nodes > maxNodes {
				return nil, fmt.Errorf("%w: the XML document has more than %d elements and attributes", signing.ErrTooLarge, maxNodes)
			}
		}
	}
	return parseXML(data)
}

// ExcC14N is the exclusive canonical form (Exclusive XML Canonicalization 1.0, without
// comments, no InclusiveNamespaces prefix list) of el as it stands in its document.
func ExcC14N(el *etree.Element) ([]byte, error) { return excC14N(el) }

// ExcC14NPrefixes is ExcC14N with an InclusiveNamespaces PrefixList (space-separated
// prefixes, "#default" for the default namespace): the namespaces it names are rendered as
// inclusive C14N renders them.
func ExcC14NPrefixes(el *etree.Element, prefixList string) ([]byte, error) {
	return excC14NPrefixes(el, prefixList, false)
}

// DocC14N is the exclusive canonical form of the whole document without comments: what a
// same-document Reference URI="" yields after exclusive C14N.
func DocC14N(doc *etree.Document) ([]byte, error) { return docC14N(doc) }
