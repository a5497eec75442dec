package trustlist

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// Files names the lists an operator configured (validation.lotl, validation.trusted_lists)
// and the PEM files of the certificates they may be signed with.
type Files struct {
	LOTL, LOTLSigners string
	Lists             []string
	ListSigners       string
}

// LoadFiles reads and verifies the lists files names (see Load); nil when none is named.
func LoadFiles(f Files, v Verifier) (*Set, error) {
	if f.LOTL == "" && len(f.Lists) == 0 {
		return nil, nil
	}
	var src Source
	if f.LOTL != "" {
		data, err := readBounded(f.LOTL)
		if err != nil {
			return nil, err
		}
		signers, err := readCerts(f.LOTLSigners)
		if err != nil {
			return nil, err
		}
		src.LOTL = &Input{Name: f.LOTL, Data: data, Signers: signers}
	}
	var signers []*x509.Certificate
	if f.ListSigners != "" {
		var err error
		if signers, err = readCerts(f.ListSigners); err != nil {
			return nil, err
		}
	}
	for _, name := range f.Lists {
		data, err := readBounded(name)
		if err != nil {
			return nil, err
		}
		src.Lists = append(src.Lists, Input{Name: name, Data: data, Signers: signers})
	}
	return Load(src, v)
}

func readBounded(name string) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("trustlist: %w", err)
	}
	defer func() { _ = fh.Close() }() // read only: a failed close loses nothing
	data, err := io.ReadAll(io.LimitReader(fh, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("trustlist: %s: %w", name, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("trustlist: %s is over %d bytes", name, MaxSize)
	}
	return data, nil
}

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(name string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("trustlist: signer certificates: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trustlist: %s: %w", name, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trustlist: %s holds no certificate", name)
	}
	return out, nil
}
