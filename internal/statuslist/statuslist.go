// Package statuslist is the list inside an IETF OAuth Token Status List token: entries of 1, 2,
// 4 or 8 bits, packed least significant first (entry i's bits start at bit i*bits of the
// bytes), compressed with ZLIB (RFC 1950) as the token's status_list.lst carries it. It makes
// and reads the list, not the token: the issuer signs the token, a reader checks it.
//
// The contract: Decode refuses bits other than 1, 2, 4, 8 and a list that is not base64url of
// ZLIB data or that decompresses past the caller's bound (a small token must not make a reader
// allocate without limit); At refuses an index outside the list. Errors are ErrInvalid.
package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// ErrInvalid is a list that cannot be read, or an entry outside it.
var ErrInvalid = errors.New("invalid status list")

// List is a status list, decompressed.
type List struct {
	Bits  int
	Bytes []byte
}

// New is a list of size entries of bits each, all 0 (valid).
func New(size, bits int) (*List, error) {
	if !validBits(bits) || size < 0 {
		return nil, fmt.Errorf("%w: %d entries of %d bits", ErrInvalid, size, bits)
	}
	return &List{Bits: bits, Bytes: make([]byte, (size*bits+7)/8)}, nil
}

func validBits(bits int) bool { return bits == 1 || bits == 2 || bits == 4 || bits == 8 }

// Decode reads lst, base64url of the ZLIB-compressed list of bits-wide entries, refusing one
// that decompresses past max bytes.
func Decode(lst string, bits, max int) (*List, error) {
	if !validBits(bits) {
		return nil, fmt.Errorf("%w: bits %d (want 1, 2, 4 or 8)", ErrInvalid, bits)
	}
	z, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		return nil, fmt.Errorf("%w: lst is not base64url", ErrInvalid)
	}
	b, err := Inflate(z, max)
	if err != nil {
		return nil, err
	}
	return &List{Bits: bits, Bytes: b}, nil
}

// Inflate decompresses ZLIB data z, refusing what decompresses past max bytes.
func Inflate(z []byte, max int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("%w: not ZLIB data: %v", ErrInvalid, err)
	}
	defer func() { _ = zr.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: it does not decompress: %v", ErrInvalid, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w: it decompresses past %d bytes", ErrInvalid, max)
	}
	return b, nil
}

// At is entry idx.
func (l *List) At(idx int64) (int, error) {
	bit := idx * int64(l.Bits)
	if idx < 0 || bit/8 >= int64(len(l.Bytes)) {
		return 0, fmt.Errorf("%w: index %d is outside the list", ErrInvalid, idx)
	}
	return int(l.Bytes[bit/8]>>(bit%8)) & (1<<l.Bits - 1), nil
}

// Set makes entry idx v.
func (l *List) Set(idx int64, v int) error {
	bit := idx * int64(l.Bits)
	if idx < 0 || bit/8 >= int64(len(l.Bytes)) || v < 0 || v >= 1<<l.Bits {
		return fmt.Errorf("%w: entry %d of a list of %d bytes set to %d", ErrInvalid, idx, len(l.Bytes), v)
	}
	shift := bit % 8
	l.Bytes[bit/8] = l.Bytes[bit/8]&^byte((1<<l.Bits-1)<<shift) | byte(v<<shift)
	return nil
}

// Compress is the list's bytes as a token carries them (before base64url, which a CWT omits).
func (l *List) Compress() ([]byte, error) {
	var out bytes.Buffer
	w, err := zlib.NewWriterLevel(&out, zlib.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(l.Bytes); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
