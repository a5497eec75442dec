// Package core is what the validation of every format shares (EN 319 102-1's building blocks
// and TS 119 102-2's report): the Report with its indications, sub-indications and checks;
// the Validator of one document, which holds its Options, its validation time and the
// evidence embedded beside the signature being validated (Evidence: a PDF's DSS, a XAdES
// signature's CertificateValues and RevocationValues); the building of a certificate's chain
// to a trust anchor at a time (BuildChain), its revocation status from embedded or fetched
// data (Revocation), key usage and qualification; and the proof of existence a verified
// timestamp gives (Proof).
//
// The contract: a check is recorded in the SignatureReport as it is made, and the report's
// indication follows from the checks (Conclude: the first failure decides, then the first
// indeterminate result). A chain is valid at the validation time, or at an earlier proven time
// only for a certificate that has expired since; revocation data counts only once its
// signature verifies under the certificate's issuer (or a responder the issuer delegated to).
// The format packages (cades, pades, xmlsig, asic) build on this one; it imports none of them.
package core
