package cades

import (
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
)

// AddTimestamp adds a signature-time-stamp to an existing CMS signature, turning B-B into B-T.
// The CMS must be DER with one SignerInfo and no signature-time-stamp yet (else ErrInvalid);
// everything but that SignerInfo's unsigned attributes is kept byte for byte. The token is over
// the signature value, with the SignerInfo's digest algorithm.
func AddTimestamp(ctx context.Context, der []byte, ts signing.Timestamper) ([]byte, error) {
	if ts == nil {
		return nil, fmt.Errorf("%w: cades: no timestamper", signing.ErrInvalid)
	}
	p, err := parseCMS(der)
	if err != nil {
		return nil, err
	}
	if p.has(oidSignatureTimeStamp) {
		return nil, fmt.Errorf("%w: cades: the signature already has a signature-time-stamp", signing.ErrInvalid)
	}
	attr, err := timestampAttr(ctx, ts, p.hash, p.signature)
	if err != nil {
		return nil, err
	}
	p.unsigned = append(p.unsigned, attr)
	return p.encode()
}

// parsed is a CMS SignedData with one signer, cut where AddTimestamp and AddArchiveTimestamp
// rebuild it and where an archive-time-stamp-v3 looks.
type parsed struct {
	head        []byte            // version, digestAlgorithms, encapContentInfo
	contentType []byte            // the DER eContentType (an archive-time-stamp-v3 covers it)
	certs       [][]byte          // the CertificateChoices of SignedData.certificates, each DER
	crls        [][]byte          // the RevocationInfoChoices of SignedData.crls, each DER
	signerHead  []byte            // the SignerInfo up to and with its signature OCTET STRING
	signature   []byte            // the signature value
	signedAttrs cryptobyte.String // the signed attributes, each a DER Attribute, one after another
	unsigned    [][]byte          // the unsigned attributes, each a DER Attribute
	hash        crypto.Hash
}

// parseCMS cuts a DER ContentInfo of SignedData with exactly one SignerInfo, read by
// cms.ParseSignedData, the parser validation uses too; the part before the signerInfos it
// cuts further into the header and the certificates and revocation choices, which
// AddArchiveTimestamp adds to and an archive timestamp's hash index lists. It checks the
// structure, not the signature.
func parseCMS(der []byte) (*parsed, error) {
	bad := func(what string) error {
		return fmt.Errorf("%w: cades: not a DER CMS SignedData with one signer: %s", signing.ErrInvalid, what)
	}
	sd, err := cms.ParseSignedData(der)
	switch {
	case errors.Is(err, cms.ErrUnsupportedDigest):
		return nil, fmt.Errorf("%w: cades: %w", signing.ErrUnsupported, err)
	case err != nil:
		return nil, bad(err.Error())
	case sd.Signers != 1:
		return nil, bad("not exactly one SignerInfo")
	case !sd.Exact:
		return nil, bad("bytes after an element")
	}
	if _, ok := oidDigest[sd.Hash]; !ok { // SHA-1: recognised, not used
		return nil, fmt.Errorf("%w: cades: digest algorithm %v", signing.ErrUnsupported, sd.Hash)
	}
	p := &parsed{signerHead: sd.SignerHead, signature: sd.Signature, unsigned: sd.Unsigned, hash: sd.Hash}
	if sd.SignedAttrs != nil {
		p.signedAttrs = setContents(sd.SignedAttrs)
	}
	// BeforeSigners: version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls.
	s := cryptobyte.String(sd.BeforeSigners)
	start := s
	var encap, ctype cryptobyte.String
	if !s.SkipASN1(cbasn1.INTEGER) || !s.SkipASN1(cbasn1.SET) || !s.ReadASN1(&encap, cbasn1.SEQUENCE) ||
		!encap.ReadASN1Element(&ctype, cbasn1.OBJECT_IDENTIFIER) {
		return nil, bad("SignedData header")
	}
	p.head, p.contentType = start[:len(start)-len(s)], ctype
	for i, list := range []*[][]byte{&p.certs, &p.crls} {
		var set cryptobyte.String
		if !s.ReadOptionalASN1(&set, nil, cbasn1.Tag(i).ContextSpecific().Constructed()) {
			return nil, bad("certificates or CRLs")
		}
		for !set.Empty() {
			var e cryptobyte.String
			var tag cbasn1.Tag
			if !set.ReadAnyASN1Element(&e, &tag) {
				return nil, bad("certificates or CRLs")
			}
			*list = append(*list, e)
		}
	}
	if !s.Empty() {
		return nil, bad("SignedData before its signerInfos")
	}
	return p, nil
}

// checkImprint checks that a TimeStampToken's message imprint is digest under hash.
func checkImprint(tok []byte, hash crypto.Hash, digest []byte) error {
	bad := func(what string) error {
		return fmt.Errorf("cades: the timestamp authority returned an unusable token: %s", what)
	}
	s := cryptobyte.String(tok)
	var ci, content, sd, encap, eContent, tstInfo, info, imprint, alg cryptobyte.String
	var oid, policy asn1.ObjectIdentifier
	var version int64
	var got []byte
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !s.Empty() ||
		!ci.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidSignedData) ||
		!ci.ReadASN1(&content, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) ||
		!sd.ReadASN1Integer(&version) || !sd.SkipASN1(cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.SkipASN1(cbasn1.OBJECT_IDENTIFIER) ||
		!encap.ReadASN1(&eContent, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!eContent.ReadASN1(&tstInfo, cbasn1.OCTET_STRING) ||
		!tstInfo.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.ReadASN1Integer(&version) || !info.ReadASN1ObjectIdentifier(&policy) ||
		!info.ReadASN1(&imprint, cbasn1.SEQUENCE) ||
		!imprint.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!imprint.ReadASN1Bytes(&got, cbasn1.OCTET_STRING) {
		return bad("not a DER TimeStampToken")
	}
	if !oid.Equal(oidDigest[hash]) || string(got) != string(digest) {
		return bad("its message imprint is not the signature value's digest")
	}
	return nil
}
