package cms

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrBER is returned by DER for input that is not BER.
var ErrBER = errors.New("cms: not BER")

// maxDepth bounds the nesting DER follows; CMS with its certificates and timestamp tokens is
// about 15 deep.
const maxDepth = 64

// DER re-encodes the first BER element of b (X.690) with the length encodings DER wants:
// indefinite lengths (as NSS and several commercial signers write CMS) become definite and
// long forms minimal, and constructed OCTET STRINGs become one primitive OCTET STRING. The
// contents of primitive elements are copied as they are, so a DER element comes out
// unchanged; SET OF is not re-sorted. Bytes after the element are ignored (a PDF's /Contents
// is padded). It works in one buffer about the size of the element (cryptobyte moves a
// child along when its length needs more bytes), and refuses high tag numbers, which CMS
// does not use.
func DER(b []byte) ([]byte, error) {
	var out cryptobyte.Builder
	r := berReader{b: b}
	if err := r.element(&out, 0); err != nil {
		return nil, err
	}
	der, err := out.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBER, err)
	}
	return der, nil
}

type berReader struct {
	b   []byte
	off int
}

func (r *berReader) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrBER, what, r.off)
}

// header reads an identifier and a length: the tag, whether it is constructed, and the
// length (-1 when indefinite).
func (r *berReader) header() (tag cbasn1.Tag, constructed bool, n int, err error) {
	if r.off+2 > len(r.b) {
		return 0, false, 0, r.fail("truncated element")
	}
	tag = cbasn1.Tag(r.b[r.off])
	if tag&0x1f == 0x1f {
		return 0, false, 0, r.fail("a high tag number")
	}
	constructed = tag&0x20 != 0
	l := r.b[r.off+1]
	r.off += 2
	switch {
	case l < 0x80:
		n = int(l)
	case l == 0x80:
		if !constructed {
			return 0, false, 0, r.fail("indefinite length of a primitive element")
		}
		return tag, true, -1, nil
	default:
		k := int(l & 0x7f)
		if k > 4 || r.off+k > len(r.b) {
			return 0, false, 0, r.fail("length too long")
		}
		for _, c := range r.b[r.off : r.off+k] {
			n = n<<8 | int(c)
		}
		r.off += k
	}
	if n > len(r.b)-r.off {
		return 0, false, 0, r.fail("length beyond the input")
	}
	return tag, constructed, n, nil
}

// children calls each for the children of a constructed element whose contents begin at
// r.off and are n bytes long (n -1: up to an end-of-contents).
func (r *berReader) children(n int, each func() error) error {
	end := r.off + n
	for {
		if n < 0 {
			if r.off+2 > len(r.b) {
				return r.fail("no end-of-contents")
			}
			if r.b[r.off] == 0 && r.b[r.off+1] == 0 {
				r.off += 2
				return nil
			}
		} else if r.off >= end {
			if r.off > end {
				return r.fail("a child runs past its parent")
			}
			return nil
		}
		if err := each(); err != nil {
			return err
		}
	}
}

// element copies one element to out in DER.
func (r *berReader) element(out *cryptobyte.Builder, depth int) error {
	if depth > maxDepth {
		return r.fail("nested too deep")
	}
	tag, constructed, n, err := r.header()
	if err != nil {
		return err
	}
	switch {
	case !constructed:
		out.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(r.b[r.off : r.off+n]) })
		r.off += n
	case tag == cbasn1.OCTET_STRING.Constructed():
		out.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			if err := r.children(n, func() error { return r.octets(b, depth+1) }); err != nil {
				b.SetError(err)
			}
		})
	default:
		out.AddASN1(tag, func(b *cryptobyte.Builder) {
			if err := r.children(n, func() error { return r.element(b, depth+1) }); err != nil {
				b.SetError(err)
			}
		})
	}
	return nil
}

// octets appends to out the contents of one segment of a constructed OCTET STRING: a
// primitive OCTET STRING, or a constructed one in turn.
func (r *berReader) octets(out *cryptobyte.Builder, depth int) error {
	if depth > maxDepth {
		return r.fail("nested too deep")
	}
	tag, _, n, err := r.header()
	if err != nil {
		return err
	}
	switch tag {
	case cbasn1.OCTET_STRING:
		out.AddBytes(r.b[r.off : r.off+n])
		r.off += n
		return nil
	case cbasn1.OCTET_STRING.Constructed():
		return r.children(n, func() error { return r.octets(out, depth+1) })
	}
	return r.fail("a segment of an OCTET STRING is not an OCTET STRING")
}
