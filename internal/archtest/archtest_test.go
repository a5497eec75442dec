// Package archtest checks Vula's import rules: which package may import which. It has no code
// of its own, only the test, which reads the packages' imports with go list.
//
// The layers, lowest first. A package imports only from lower layers or from its own unit; two
// units of one layer never import each other.
//
//  1. the key layer: hsm and its backends (hsm/...). It imports nothing of Vula's outside hsm/.
//  2. storage, configuration and CMS encoding: internal/store/..., internal/config, internal/cms,
//     internal/backup (the archive of the embedded default's files), internal/problem (the catalog
//     of problem types), internal/sdjwt (reading SD-JWTs, RFC 9901), internal/mdoc (checking
//     mdocs and their DeviceResponses, ISO/IEC 18013-5), internal/rawsig (JOSE's and COSE's raw
//     signatures and compact JWS through the key layer), internal/statuslist (the list of a Token
//     Status List); then, above them, internal/holder (the reference wallet: a client of
//     OpenID4VCI and OpenID4VP that checks its mdocs through internal/mdoc and, placed here, can
//     import nothing of the server).
//  3. the HTTP edge the services share: internal/server (problems, request ids, limits),
//     internal/upload (bounded request bodies), internal/web (the page renderer) and internal/rp
//     (the pages' login at Vula's own identity provider, their sessions and CSRF tokens);
//     then, above it, internal/audit (the audit log, whose checkpoint and proofs it serves) and
//     internal/auth (the contract between idp and the services it protects: the caller, the
//     levels of assurance, bearer tokens, the factor check, credential authorization).
//  4. trust services others build on: internal/certs (the CA, which issues the certificates of csc's
//     officials and seal's organizations), internal/tsa (timestamps), and one unit of
//     internal/signing, its format packages (cades, pades, xades, asic) and internal/pdfsafe
//     (their guard for untrusted PDFs, which returns signing's errors) and internal/trustlist
//     (ETSI TS 119 612 trusted lists, signed as XAdES): the signature formats the services use;
//     and internal/letter (the activation letter's PDF, sealed through its own Sealer interface).
//  5. the services: internal/idp, internal/csc, internal/seal, internal/portal,
//     internal/validation (its format packages pades, cades, xmlsig, asic over
//     internal/validation/core), internal/pid (the wallet issuer), internal/eid (the
//     registration desk), internal/verifier (the OpenID4VP verifier for relying parties), each a
//     unit with its sub-packages.
//  6. the composition root, internal/app: the one place services are built and wired together;
//  7. the command line, internal/cli; 8. the command, cmd/vula.
//
// The public Go API is hsm/... and pkg/...: every other package is under internal/ (or is the
// command, cmd/, or the end-to-end tests, test/). Outside the layers: pkg/... (for outsiders)
// imports nothing under internal/; test support
// (internal/testenv, internal/apitest, hsm/hsmtest, and the *test packages beside what they
// help test) may import anything but is imported by no other package's non-test code.
// Only non-test imports are checked: a test may assemble whatever it needs.
package archtest
