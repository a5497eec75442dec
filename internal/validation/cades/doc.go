// Package cades validates CMS signatures (CAdES baseline, plain CMS, the CMS inside a PAdES or
// ASiC signature) and RFC 3161 timestamp tokens, over the shared core.
//
// The contract: Parse reads BER or DER (through internal/cms, the parser the signer uses too);
// Signature checks one SignerInfo (its certificate found and, for a baseline profile, bound by
// signing-certificate(-v2), its message digest over the content, its signature value), its
// signature timestamps, the chain and revocation at the proof of existence; Timestamp checks a
// token (imprint, TSA certificate, chain and revocation at the validation time, or at a later
// timestamp's proof once the TSA certificate has expired). Validate and ValidateTimestamp are
// the entry points for a CMS document and a standalone token or reply.
package cades
