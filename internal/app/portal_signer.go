package app

import (
	"context"
	"crypto"
	"errors"
	"time"

	"github.com/vula-eid/vula/internal/csc"
	"github.com/vula-eid/vula/internal/portal"
)

// portalSigner is the CSC service as the portal signs through it: the portal's confirmation is
// CSC's authorization by login and one-time code over the documents' SHA-256 digests, then
// signDoc of those documents as PAdES revisions.
type portalSigner struct{ s *csc.Service }

var _ portal.Signer = portalSigner{}

// sha256OID is the digest algorithm the portal authorizes with.
const sha256OID = "2.16.840.1.101.3.4.2.1"

func (p portalSigner) Credentials(ctx context.Context, subject string) ([]portal.Credential, error) {
	cs, err := p.s.Credentials(ctx, subject)
	if err != nil {
		return nil, err
	}
	out := make([]portal.Credential, len(cs))
	for i, c := range cs {
		out[i] = portal.Credential{ID: c.ID, Cert: c.Cert, Revoked: c.Revoked}
	}
	return out, nil
}

func (p portalSigner) Sign(ctx context.Context, subject string, r portal.SignRequest) ([][]byte, error) {
	docs := make([]csc.Document, len(r.Documents))
	hashes := make([][]byte, len(r.Documents))
	for i, d := range r.Documents {
		docs[i] = csc.Document{Data: d.Data, Format: csc.FormatPAdES, Level: r.Level, Packaging: csc.Revision, Visible: d.Visible}
		hashes[i] = csc.DocumentDigest(crypto.SHA256, d.Data)
	}
	login := csc.Login{ACR: r.Login.ACR, AMR: r.Login.AMR, AuthTime: r.Login.AuthTime}
	az, err := p.s.AuthorizeLogin(ctx, subject, login, csc.Authorization{CredentialID: r.CredentialID, NumSignatures: len(docs),
		Hashes: hashes, HashOID: sha256OID, OTP: r.OTP, IP: r.IP})
	if err != nil {
		return nil, refusal(err)
	}
	res, err := p.s.SignDoc(ctx, subject, csc.DocRequest{CredentialID: r.CredentialID, SAD: az.SAD, HashOID: sha256OID, Documents: docs})
	if err != nil {
		return nil, refusal(err)
	}
	return res.Documents, nil
}

func (p portalSigner) LoginMaxAge() time.Duration { return p.s.LoginMaxAge() }

// refusal turns the CSC service's refusal into the portal's; other errors pass as they are.
func refusal(err error) error {
	var ce *csc.Error
	if errors.As(err, &ce) {
		return &portal.Refusal{Status: ce.Status, Code: ce.Code, Description: ce.Description}
	}
	return err
}
