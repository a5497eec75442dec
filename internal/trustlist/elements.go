package trustlist

import (
	"encoding/base64"
	"strings"

	"github.com/beevik/etree"
)

// is reports whether e is the element {ns}local.
func is(e *etree.Element, ns, local string) bool {
	return e != nil && e.Tag == local && e.NamespaceURI() == ns
}

// children are e's child elements {ns}local; none when e is nil.
func children(e *etree.Element, ns, local string) []*etree.Element {
	if e == nil {
		return nil
	}
	var out []*etree.Element
	for _, c := range e.ChildElements() {
		if is(c, ns, local) {
			out = append(out, c)
		}
	}
	return out
}

// only is the single child {ns}local of e, or nil when there is none or more than one.
func only(e *etree.Element, ns, local string) *etree.Element {
	c := children(e, ns, local)
	if len(c) != 1 {
		return nil
	}
	return c[0]
}

// text is e's trimmed text, "" for nil.
func text(e *etree.Element) string {
	if e == nil {
		return ""
	}
	return strings.TrimSpace(e.Text())
}

func decodeB64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}
