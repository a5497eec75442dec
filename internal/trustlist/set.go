package trustlist

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/signing"
)

// Verifier checks a list's signature.
type Verifier interface {
	// VerifyEnveloped MUST return nil only when doc holds an enveloped XML signature whose
	// References cover the whole root element (URI="" or the root's Id) and whose
	// SignatureValue verifies with the key of one of signers; it returns that signer.
	VerifyEnveloped(doc []byte, signers []*x509.Certificate) (*x509.Certificate, error)
}

// Input is one list to load.
type Input struct {
	Name string // for errors: the file's name
	Data []byte
	// Signers are the certificates the operator configured for it; a LOTL's pointer to the
	// list adds its own.
	Signers []*x509.Certificate
}

// Source is what the operator configured.
type Source struct {
	LOTL  *Input  // the list of lists, with its signers; optional
	Lists []Input // trusted lists
}

// Set is the verified lists a validator consults.
type Set struct {
	lists []*List
}

// Lists are the loaded lists, the LOTL first when there is one.
func (s *Set) Lists() []*List { return s.lists }

// ErrSignature is a list whose signature does not verify with any certificate it may be
// signed with.
var ErrSignature = errors.New("trustlist: the list's signature does not verify")

// Load verifies and reads the lists of src. A trusted list must verify with its configured
// signers or with the certificates the LOTL's pointer for its territory names.
func Load(src Source, v Verifier) (*Set, error) {
	set := &Set{}
	var lotl *List
	if src.LOTL != nil {
		l, err := verified(*src.LOTL, src.LOTL.Signers, v)
		if err != nil {
			return nil, err
		}
		if !l.IsLOTL() {
			return nil, fmt.Errorf("%w: trustlist: %s is of type %q, not a list of lists", signing.ErrInvalid, src.LOTL.Name, l.Type)
		}
		lotl = l
		set.lists = append(set.lists, l)
	}
	for _, in := range src.Lists {
		claimed, err := Parse(in.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Name, err)
		}
		signers := slices.Clone(in.Signers)
		if lotl != nil {
			for _, p := range lotl.Pointers {
				if p.Territory == claimed.Territory && !isLOTLType(p.Type) {
					signers = append(signers, p.Signers...)
				}
			}
		}
		if len(signers) == 0 {
			return nil, fmt.Errorf("%w: trustlist: %s (%s): no signer configured and no LOTL pointer for its territory", ErrSignature, in.Name, claimed.Territory)
		}
		l, err := verified(in, signers, v)
		if err != nil {
			return nil, err
		}
		if l.IsLOTL() {
			return nil, fmt.Errorf("%w: trustlist: %s is a list of lists; give it as the LOTL", signing.ErrInvalid, in.Name)
		}
		set.lists = append(set.lists, l)
	}
	return set, nil
}

func isLOTLType(t string) bool { return strings.HasSuffix(t, "listofthelists") }

// verified checks in's signature and then reads it.
func verified(in Input, signers []*x509.Certificate, v Verifier) (*List, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: trustlist: %s: no signer certificate configured", ErrSignature, in.Name)
	}
	if _, err := v.VerifyEnveloped(in.Data, signers); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSignature, in.Name, err)
	}
	l, err := Parse(in.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Name, err)
	}
	return l, nil
}

// Anchors are the certificates of the services in a positive status at t: CA/QC and CA/PKC
// services for signatures and seals, TSA services when timestamping.
func (s *Set) Anchors(t time.Time, timestamping bool) []*x509.Certificate {
	var out []*x509.Certificate
	for _, l := range s.lists {
		for _, p := range l.Providers {
			for _, svc := range p.Services {
				per, ok := svc.At(t)
				if !ok || !Positive(per.Status) {
					continue
				}
				isTSA := per.Type == TypeQTST || per.Type == TypeTSA || per.Type == TypeTSAQES
				isCA := per.Type == TypeCAQC || per.Type == TypeCAPKC
				if (timestamping && isTSA) || (!timestamping && isCA) {
					out = append(out, svc.Certificates...)
				}
			}
		}
	}
	return out
}

// Found is a service of a list that covers a certificate.
type Found struct {
	Territory string
	Provider  string
	Service   *Service
	Stale     bool // the list is past its NextUpdate at the time asked
}

// find lists the services of types whose identity is a certificate of chain: the same
// subject and public key (a re-issued CA certificate is the same service).
func (s *Set) find(chain []*x509.Certificate, now time.Time, types ...string) []Found {
	var out []Found
	for _, l := range s.lists {
		for _, p := range l.Providers {
			for i := range p.Services {
				svc := &p.Services[i]
				if !slices.ContainsFunc(svc.Periods, func(per Period) bool { return slices.Contains(types, per.Type) }) {
					continue
				}
				if slices.ContainsFunc(svc.Certificates, func(c *x509.Certificate) bool {
					return slices.ContainsFunc(chain, func(cc *x509.Certificate) bool { return sameIdentity(c, cc) })
				}) {
					out = append(out, Found{Territory: l.Territory, Provider: p.Name, Service: svc, Stale: !l.NextUpdate.IsZero() && now.After(l.NextUpdate)})
				}
			}
		}
	}
	return out
}

func sameIdentity(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}
