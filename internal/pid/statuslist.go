package pid

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"strconv"
)

// A status list (IETF OAuth Token Status List) is one bit a credential: 1 revoked. Bits are
// packed least significant first (entry i is bit i%8 of byte i/8) and the bytes are compressed
// with ZLIB (RFC 1950) before they are put in a token.

// statusBits packs the list of size entries with the revoked indexes set.
func statusBits(size int, revoked []int) ([]byte, error) {
	b := make([]byte, (size+7)/8)
	for _, i := range revoked {
		if i < 0 || i >= size {
			return nil, fmt.Errorf("pid: status index %d outside a list of %d", i, size)
		}
		b[i/8] |= 1 << (i % 8)
	}
	return b, nil
}

// compressBits is the list as a token carries it.
func compressBits(bits []byte) ([]byte, error) {
	var out bytes.Buffer
	w, err := zlib.NewWriterLevel(&out, zlib.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(bits); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// statusURI is where list is published.
func (s *Service) statusURI(list int) string {
	return s.cfg.Issuer + "/pid/status/" + strconv.Itoa(list)
}
