// Package xmlsig validates XML signatures: XML-DSig, and XAdES baseline (EN 319 132-1) when a
// ds:Signature carries QualifyingProperties, in an XML document or in an ASiC-E container
// (package asic passes each signature of its signature files to Signature with a Resolver for
// the container's entries). See xml.go for the rules; the XML-DSig core (References,
// transforms, SignatureValue) is xmldsig.go, its canonicalization internal/signing/xades's.
//
// Each signature is validated by a signature value built for it alone, whose validator has the
// signature's own CertificateValues and RevocationValues as its evidence.
package xmlsig
