package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
)

// ErrNoServiceKey: there is no active key of the purpose with a valid certificate of the profile.
var ErrNoServiceKey = errors.New("certs: no usable service key")

// ServiceKeySpec names a service's own signing key (the PID issuer's, the verifier's): its
// purpose in the key layer, and the profile and subject of its certificate under seal-ca.
type ServiceKeySpec struct {
	Purpose   hsm.Purpose
	Profile   Profile
	Algorithm hsm.Algorithm
	Subject   pkix.Name
}

// LeafIssuer issues a service key's certificate and gives its chain (*Authority).
type LeafIssuer interface {
	IssueLeaf(ctx context.Context, req Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
}

var _ LeafIssuer = (*Authority)(nil)

// ServiceKeyRecords is the part of the durable store a ServiceKey reads and writes.
type ServiceKeyRecords interface {
	store.KeyRecords
	store.Certificates
}

// ServiceKey is a service's own signing key with the newest valid certificate of its profile.
// Provision makes both when there is none. Current re-reads the certificate's status from the
// store at every call, so a revoked certificate stops the service on every replica; a key
// rotated elsewhere is picked up once the cached certificate is revoked or expires.
type ServiceKey struct {
	spec ServiceKeySpec
	keys hsm.Manager
	recs ServiceKeyRecords
	ca   LeafIssuer
	log  *slog.Logger
	now  func() time.Time

	mu  sync.Mutex
	cur *Leaf
}

// Leaf is a service key as signers need it.
type Leaf struct {
	URI    string
	Signer crypto.Signer
	Cert   *x509.Certificate
	// Chain is the leaf and its issuers, leaf first, without the self-signed root: the root is
	// the relying side's trust anchor and is not sent (HAIP, RFC 9360 practice).
	Chain []*x509.Certificate
}

// NewServiceKey returns the service key of spec.
func NewServiceKey(spec ServiceKeySpec, keys hsm.Manager, recs ServiceKeyRecords, ca LeafIssuer, log *slog.Logger,
	now func() time.Time) *ServiceKey {
	return &ServiceKey{spec: spec, keys: keys, recs: recs, ca: ca, log: log, now: now}
}

// Provision makes sure there is an active key with a valid certificate, making both when
// there is none; a key whose certificate cannot be made is retired again. The label carries
// microseconds: a key replaced within the second of its making must not collide.
func (k *ServiceKey) Provision(ctx context.Context) error {
	_, err := k.Current(ctx)
	if !errors.Is(err, ErrNoServiceKey) {
		return err
	}
	now := k.now()
	purpose := k.spec.Purpose
	made, err := k.keys.CreateKey(ctx, hsm.KeySpec{Label: string(purpose) + "-" + now.UTC().Format("20060102-150405.000000"),
		Algorithm: k.spec.Algorithm, Purpose: purpose, Owner: "vula"})
	if err != nil {
		return err
	}
	pub, err := k.keys.PublicKey(ctx, made.URI)
	if err == nil {
		err = k.recs.PutKeyRecord(ctx, store.KeyRecord{URI: made.URI, Purpose: string(purpose), Owner: "vula",
			Algorithm: string(k.spec.Algorithm), State: string(hsm.StateActive), Created: made.Created})
	}
	if err == nil {
		_, err = k.ca.IssueLeaf(ctx, Request{Profile: k.spec.Profile, Subject: k.spec.Subject, PublicKey: pub,
			NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(3, 0, 0)}, made.URI)
	}
	if err != nil {
		if rerr := k.keys.Retire(context.WithoutCancel(ctx), made.URI); rerr != nil {
			k.log.ErrorContext(ctx, "retiring a new service key", "purpose", purpose, "key", made.URI, "err", rerr)
		}
		return err
	}
	k.log.InfoContext(ctx, "service key made", "purpose", purpose, "key", made.URI)
	_, err = k.Current(ctx)
	return err
}

// Current returns the key and its certificate: the cached one while its certificate is
// unrevoked and unexpired, else the newest valid certificate of an active key of the purpose.
func (k *ServiceKey) Current(ctx context.Context) (*Leaf, error) {
	now := k.now()
	k.mu.Lock()
	cur := k.cur
	k.mu.Unlock()
	if cur != nil {
		rec, err := k.recs.Certificate(ctx, NameSealCA, cur.Cert.SerialNumber.Text(16))
		if err != nil {
			return nil, err
		}
		if !rec.Revoked && now.Before(cur.Cert.NotAfter) {
			return cur, nil
		}
	}
	keys, err := k.recs.KeyRecords(ctx)
	if err != nil {
		return nil, err
	}
	issued, err := k.recs.CertificatesByCA(ctx, NameSealCA)
	if err != nil {
		return nil, err
	}
	var best *store.Certificate
	for _, kr := range keys {
		if kr.Purpose != string(k.spec.Purpose) || kr.State != string(hsm.StateActive) {
			continue
		}
		for i, rec := range issued {
			if rec.KeyURI != kr.URI || rec.Profile != string(k.spec.Profile) || rec.Revoked || !now.Before(rec.NotAfter) || now.Before(rec.NotBefore) {
				continue
			}
			if best == nil || rec.NotBefore.After(best.NotBefore) {
				best = &issued[i]
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: no active %s key with a valid %s certificate", ErrNoServiceKey, k.spec.Purpose, k.spec.Profile)
	}
	cert, err := x509.ParseCertificate(best.DER)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate %s in the store: %w", best.Serial, err)
	}
	signer, err := k.keys.Signer(ctx, best.KeyURI, k.spec.Purpose)
	if err != nil {
		return nil, err
	}
	leaf := &Leaf{URI: best.KeyURI, Signer: signer, Cert: cert}
	for _, c := range append([]*x509.Certificate{cert}, k.ca.Chain(cert)...) {
		if c != cert && c.IsCA && string(c.RawSubject) == string(c.RawIssuer) {
			continue
		}
		leaf.Chain = append(leaf.Chain, c)
	}
	k.mu.Lock()
	k.cur = leaf
	k.mu.Unlock()
	return leaf, nil
}
