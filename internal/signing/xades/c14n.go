package xades

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/beevik/etree"
	"github.com/russellhaering/goxmldsig/etreeutils"

	"github.com/vula-eid/vula/internal/signing"
)

const algExcC14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

// excC14N returns the exclusive canonical form (Exclusive XML Canonicalization 1.0, without
// comments) of el as it stands in its document: the namespaces in scope from its ancestors
// count, el itself is left untouched.
//
// The transform is goxmldsig's (etreeutils.TransformExcC14n). Two things are done here because
// it does not: it reads no namespace declaration above el (so el is first copied with the ones
// in scope, without goxmldsig's NSDetatch, which refuses subtrees of more than 1000 elements),
// and it orders prefixed attributes by prefix rather than by namespace URI as C14N requires
// (so the attributes are sorted again, in sortAttrs), and it starts from a default namespace
// that is not empty, so it may render an xmlns="" that C14N leaves out (dropEmptyDefault).
func excC14N(el *etree.Element) ([]byte, error) { return excC14NWith(el, false) }

// excC14NWith is excC14N, keeping comments when asked (only the tests compare that form, with
// xmllint's).
func excC14NWith(el *etree.Element, comments bool) ([]byte, error) {
	return excC14NPrefixes(el, "", comments)
}

// excC14NPrefixes is excC14NWith with an InclusiveNamespaces PrefixList (space-separated
// prefixes, #default for the default namespace), which others' signatures may carry.
func excC14NPrefixes(el *etree.Element, prefixList string, comments bool) ([]byte, error) {
	c := el.Copy()
	declared := map[string]bool{}
	for _, a := range c.Attr {
		if p, ok := nsDecl(a); ok {
			declared[p] = true
		}
	}
	for p := el.Parent(); p != nil; p = p.Parent() {
		for _, a := range p.Attr {
			if pre, ok := nsDecl(a); ok && !declared[pre] {
				declared[pre] = true
				c.Attr = append(c.Attr, a)
			}
		}
	}
	if err := etreeutils.TransformExcC14n(c, prefixList, comments); err != nil {
		return nil, fmt.Errorf("%w: xades: canonicalize <%s>: %v", signing.ErrInvalid, el.FullTag(), err)
	}
	dropEmptyDefault(c, "")
	sortAttrs(c, map[string]string{"": "", "xml": "http://www.w3.org/XML/1998/namespace"})
	doc := etree.NewDocument()
	doc.SetRoot(c)
	doc.WriteSettings = etree.WriteSettings{CanonicalAttrVal: true, CanonicalEndTags: true, CanonicalText: true}
	return doc.WriteToBytes()
}

// docC14N is the exclusive canonical form of the whole document (a same-document Reference
// URI=""): the processing instructions around the root element, each on its own line, and the
// root. Comments are left out, as URI="" asks; the XML declaration is not a node.
func docC14N(doc *etree.Document) ([]byte, error) { return docC14NWith(doc, false) }

func docC14NWith(doc *etree.Document, comments bool) ([]byte, error) {
	var out bytes.Buffer
	seenRoot := false
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.ProcInst, *etree.Comment:
			var node string
			if pi, ok := t.(*etree.ProcInst); ok {
				if pi.Target == "xml" {
					continue
				}
				node = "<?" + pi.Target
				if pi.Inst != "" {
					node += " " + pi.Inst
				}
				node += "?>"
			} else if comments {
				node = "<!--" + t.(*etree.Comment).Data + "-->"
			} else {
				continue
			}
			if seenRoot {
				out.WriteByte('\n')
			}
			out.WriteString(node)
			if !seenRoot {
				out.WriteByte('\n')
			}
		case *etree.Element:
			b, err := excC14NWith(t, comments)
			if err != nil {
				return nil, err
			}
			out.Write(b)
			seenRoot = true
		}
	}
	return out.Bytes(), nil
}

// nsDecl reports whether a declares a namespace, and the prefix it declares ("" the default).
func nsDecl(a etree.Attr) (string, bool) {
	switch {
	case a.Space == "xmlns":
		return a.Key, true
	case a.Space == "" && a.Key == "xmlns":
		return "", true
	}
	return "", false
}

// sortAttrs puts the attributes of el and its descendants in canonical order: the default
// namespace declaration, the other declarations by prefix, then the attributes by namespace URI
// (none first) and local name. scope maps the prefixes in scope above el to their URIs.
func sortAttrs(el *etree.Element, scope map[string]string) {
	local, copied := scope, false
	for _, a := range el.Attr {
		if p, ok := nsDecl(a); ok {
			if !copied {
				copied = true
				local = make(map[string]string, len(scope)+2)
				for k, v := range scope {
					local[k] = v
				}
			}
			local[p] = a.Value
		}
	}
	rank := func(a etree.Attr) (int, string, string) {
		if p, ok := nsDecl(a); ok {
			if p == "" {
				return 0, "", ""
			}
			return 1, p, ""
		}
		if a.Space == "" {
			return 2, "", a.Key
		}
		return 2, local[a.Space], a.Key
	}
	slices.SortStableFunc(el.Attr, func(x, y etree.Attr) int {
		rx, ux, kx := rank(x)
		ry, uy, ky := rank(y)
		if rx != ry {
			return rx - ry
		}
		if c := strings.Compare(ux, uy); c != 0 {
			return c
		}
		return strings.Compare(kx, ky)
	})
	for _, c := range el.ChildElements() {
		sortAttrs(c, local)
	}
}

// dropEmptyDefault removes each xmlns="" of the canonical tree under el that undeclares nothing:
// the nearest rendered default namespace above it (def) is already empty.
func dropEmptyDefault(el *etree.Element, def string) {
	for i := 0; i < len(el.Attr); i++ {
		if p, ok := nsDecl(el.Attr[i]); ok && p == "" {
			if el.Attr[i].Value == "" && def == "" {
				el.Attr = slices.Delete(el.Attr, i, i+1)
				i--
				continue
			}
			def = el.Attr[i].Value
		}
	}
	for _, c := range el.ChildElements() {
		dropEmptyDefault(c, def)
	}
}
