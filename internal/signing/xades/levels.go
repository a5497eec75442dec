package xades

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
)

// addUnsigned adds the unsigned signature properties of B-T and above, in the order
// EN 319 132-1 lists them: SignatureTimeStamp, CertificateValues, RevocationValues,
// ArchiveTimeStamp.
func (b *builder) addUnsigned(ctx context.Context, sigValue *etree.Element) error {
	usp := b.qp.CreateElement("xades:UnsignedProperties").CreateElement("xades:UnsignedSignatureProperties")
	b.unsignedSP = usp

	// B-T: a timestamp over the canonical ds:SignatureValue element.
	sv, err := excC14N(sigValue)
	if err != nil {
		return err
	}
	token, err := b.timestamp(ctx, sv)
	if err != nil {
		return err
	}
	b.addTimestamp(usp, "xades:SignatureTimeStamp", b.id+"-sigts", token)
	if !b.opts.Level.AtLeast(signing.LevelLT) {
		return nil
	}

	// B-LT: what a verifier needs later, offline, for the signer's chain and the TSA's.
	tsaChain, err := signing.TokenCerts(token)
	if err != nil {
		return fmt.Errorf("xades: the signature timestamp: %w", err)
	}
	vd, err := signing.Collect(ctx, b.opts.Revocation, b.keyInfoCerts(), tsaChain)
	if err != nil {
		return fmt.Errorf("xades: validation data: %w", err)
	}
	addValidationData(usp, vd, b.keyInfoCerts())
	if !b.opts.Level.AtLeast(signing.LevelLTA) {
		return nil
	}

	// B-LTA: the archive timestamp over archiveInput.
	in, err := b.archiveInput()
	if err != nil {
		return err
	}
	token, err = b.opts.Timestamper.Timestamp(ctx, b.hash, in)
	if err != nil {
		return fmt.Errorf("xades: archive timestamp: %w", err)
	}
	ats := b.addTimestamp(usp, "xadesv141:ArchiveTimeStamp", b.id+"-archts", token)
	ats.CreateAttr("xmlns:xadesv141", nsXAdES4)
	return nil
}

// archiveInput is the digest of the input of a xadesv141:ArchiveTimeStamp, built as
// EN 319 132-1 clause 5.5.2.2 defines it, with exclusive C14N (the ArchiveTimeStamp's
// CanonicalizationMethod) wherever it canonicalizes:
//  1. the octets each ds:Reference of SignedInfo yields after its transforms, in order (the
//     data, then the canonical SignedProperties: b.arch has received them as they were made);
//  2. the canonical ds:SignedInfo, ds:SignatureValue and ds:KeyInfo;
//  3. each unsigned signature property before this ArchiveTimeStamp, canonicalized, in order
//     (SignatureTimeStamp, CertificateValues, RevocationValues);
//  4. each ds:Object but the one holding the QualifyingProperties, canonicalized (the
//     enveloping data's Object).
func (b *builder) archiveInput() ([]byte, error) {
	var els []*etree.Element
	els = append(els, b.sig.SelectElement("ds:SignedInfo"), b.sig.SelectElement("ds:SignatureValue"), b.keyInfo)
	els = append(els, b.unsignedSP.ChildElements()...)
	for _, o := range b.sig.SelectElements("ds:Object") {
		if o.SelectElement("xades:QualifyingProperties") == nil {
			els = append(els, o)
		}
	}
	for _, el := range els {
		c, err := excC14N(el)
		if err != nil {
			return nil, err
		}
		_, _ = b.arch.Write(c) // a hash or io.Discard: never fails
	}
	return b.archHash.Sum(nil), nil
}

func (b *builder) timestamp(ctx context.Context, octets []byte) ([]byte, error) {
	token, err := b.opts.Timestamper.Timestamp(ctx, b.hash, digest(b.hash, octets))
	if err != nil {
		return nil, fmt.Errorf("xades: signature timestamp: %w", err)
	}
	return token, nil
}

// addTimestamp adds a XAdESTimeStampType property holding token.
func (b *builder) addTimestamp(parent *etree.Element, tag, id string, token []byte) *etree.Element {
	ts := parent.CreateElement(tag)
	ts.CreateAttr("Id", id)
	ts.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algExcC14N)
	ts.CreateElement("xades:EncapsulatedTimeStamp").SetText(b64(token))
	return ts
}

// addValidationData adds to parent the xades:CertificateValues of vd's certificates but those
// already in skip (the signature's KeyInfo), and the xades:RevocationValues of its CRLs and
// OCSP responses.
func addValidationData(parent *etree.Element, vd signing.ValidationData, skip []*x509.Certificate) {
	cv := parent.CreateElement("xades:CertificateValues")
	for _, c := range vd.Certs {
		if !containsCert(skip, c) {
			cv.CreateElement("xades:EncapsulatedX509Certificate").SetText(b64(c.Raw))
		}
	}
	rv := parent.CreateElement("xades:RevocationValues")
	if len(vd.CRLs) > 0 {
		crls := rv.CreateElement("xades:CRLValues")
		for _, c := range vd.CRLs {
			crls.CreateElement("xades:EncapsulatedCRLValue").SetText(b64(c))
		}
	}
	if len(vd.OCSPs) > 0 {
		ocsps := rv.CreateElement("xades:OCSPValues")
		for _, o := range vd.OCSPs {
			ocsps.CreateElement("xades:EncapsulatedOCSPValue").SetText(b64(o))
		}
	}
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}
