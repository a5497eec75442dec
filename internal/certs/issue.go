package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"sort"
	"strings"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"go.step.sm/crypto/x509util"
)

// Linter checks a certificate before the CA key signs it.
type Linter struct{ registry lint.Registry }

// NewLinter runs zlint's RFC 5280 and ETSI lints. The CA/Browser Forum and Mozilla lints are
// left out: they are for TLS server certificates, and this PKI issues none.
func NewLinter() (*Linter, error) {
	r, err := lint.GlobalRegistry().Filter(lint.FilterOptions{
		IncludeSources: lint.SourceList{lint.RFC5280, lint.EtsiEsi, lint.RFC5480, lint.RFC8813, lint.Community},
	})
	if err != nil {
		return nil, err
	}
	return &Linter{registry: r}, nil
}

// Check signs tmpl with a throwaway key of the issuer's kind (nothing the CA key signs is ever
// unlinted) and returns an error naming every error- or fatal-level finding.
func (l *Linter) Check(tmpl, parent *x509.Certificate, pub crypto.PublicKey, issuerPub crypto.PublicKey) error {
	var throwaway crypto.Signer
	var err error
	switch k := issuerPub.(type) {
	case *ecdsa.PublicKey:
		throwaway, err = ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		throwaway, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		throwaway, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return err
	}
	// Go checks that the signer matches the parent: give the copy's parent the throwaway key
	// (and a self-signed copy the throwaway key as its own).
	p := *parent
	p.PublicKey = throwaway.Public()
	if parent == tmpl {
		pub = throwaway.Public()
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &p, pub, throwaway)
	if err != nil {
		return fmt.Errorf("certs: lint copy: %w", err)
	}
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("certs: lint copy does not parse: %w", err)
	}
	res := zlint.LintCertificateEx(zc, l.registry)
	var bad []string
	for name, r := range res.Results {
		if r.Status == lint.Error || r.Status == lint.Fatal {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("certs: lint refused the certificate: %s", strings.Join(bad, ", "))
	}
	return nil
}

// Issue lints and signs the certificate req asks for. issuer nil makes a self-signed root,
// signed by rootSigner.
func Issue(req Request, issuer *Issuer, rootSigner crypto.Signer, pol Policy, l *Linter) (*x509.Certificate, error) {
	tmpl, err := template(req, issuer, pol)
	if err != nil {
		return nil, err
	}
	parent, signer := tmpl, rootSigner
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Signer
		tmpl.AuthorityKeyId = issuer.Cert.SubjectKeyId
	} else {
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	}
	if signer == nil {
		return nil, fmt.Errorf("certs: no signer for %s", req.Profile)
	}
	if err := l.Check(tmpl, parent, req.PublicKey, signer.Public()); err != nil {
		return nil, err
	}
	cert, err := x509util.CreateCertificate(tmpl, parent, req.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("certs: signing %s: %w", req.Profile, err)
	}
	return cert, nil
}
