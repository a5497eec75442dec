package csc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/signing"
)

// Reading a credential authorization request (CSC API v2 §8.4.2, RFC 9396), for the identity
// provider's authorization endpoint: which credential, which digests of which algorithm, which
// labels the consent page shows. The provider runs the login and the consent; this is what
// is asked.

// CredentialRequests reads credential authorization requests (auth.CredentialRequests); the
// Service offers it to the provider.
type CredentialRequests struct{}

var _ auth.CredentialRequests = CredentialRequests{}

// ParseDetails is ParseAuthorizationDetails.
func (CredentialRequests) ParseDetails(raw []byte) (*auth.CredentialAuthorization, error) {
	return ParseAuthorizationDetails(raw)
}

// ParseParams is ParseCredentialParams.
func (CredentialRequests) ParseParams(form url.Values) (*auth.CredentialAuthorization, error) {
	return ParseCredentialParams(form)
}

// HashName names the hash algorithm of oid ("SHA-256"), "" when it is not one offered.
func (CredentialRequests) HashName(oid string) string { return credentialHashes[oid].name }

// MaxDocumentDigests bounds the digests of one credential authorization.
const MaxDocumentDigests = 100

// maxLabel bounds a document's label (characters), which the consent page shows.
const maxLabel = 200

// credentialHashes are the hash algorithms a credential authorization may name, with the
// length of their digests.
var credentialHashes = map[string]struct {
	name string
	size int
}{
	"2.16.840.1.101.3.4.2.1": {"SHA-256", 32},
	"2.16.840.1.101.3.4.2.2": {"SHA-384", 48},
	"2.16.840.1.101.3.4.2.3": {"SHA-512", 64},
}

// The CSC request parameters of the scope form (§8.4.2).
var credentialParams = []string{"credentialID", "numSignatures", "hashes", "hashAlgorithmOID"}

// rawDetail is an authorization_details entry as sent; unknown members are refused.
type rawDetail struct {
	Type               string      `json:"type"`
	CredentialID       string      `json:"credentialID"`
	HashAlgorithmOID   string      `json:"hashAlgorithmOID"`
	DocumentDigests    []rawDigest `json:"documentDigests"`
	SignatureQualifier string      `json:"signatureQualifier"`
}

type rawDigest struct {
	Hash  string `json:"hash"`
	Label string `json:"label"`
}

// maxDetails bounds the authorization_details text: 100 SHA-512 digests with long labels fit.
const maxDetails = 64 << 10

// ParseAuthorizationDetails reads and checks an authorization_details parameter (a JSON array,
// RFC 9396 §2) holding exactly one entry of type credential: a credentialID, a known
// hashAlgorithmOID, 1 to MaxDocumentDigests documentDigests whose hashes (base64) have that
// algorithm's length and are all different, labels of at most 200 printable characters.
// signatureQualifier may only be eu_eidas_qes (the officials' certificates are qualified);
// any other member is refused. Every error wraps signing.ErrInvalid; its text, without a
// prefix, is the hint the client gets.
func ParseAuthorizationDetails(raw []byte) (*auth.CredentialAuthorization, error) {
	if len(raw) > maxDetails {
		return nil, invalidDetails("authorization_details is longer than %d bytes", maxDetails)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, invalidDetails("authorization_details is not a JSON array of objects")
	}
	if len(entries) != 1 {
		return nil, invalidDetails("authorization_details must hold exactly one entry, of type credential")
	}
	dec := json.NewDecoder(bytes.NewReader(entries[0]))
	dec.DisallowUnknownFields()
	var d rawDetail
	if err := dec.Decode(&d); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, invalidDetails("authorization_details: member %q has the wrong type", ute.Field)
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return nil, invalidDetails("authorization_details: unknown member %s", strings.TrimPrefix(msg, "json: unknown field "))
		}
		return nil, invalidDetails("authorization_details: the entry is not a JSON object")
	}
	if dec.More() {
		return nil, invalidDetails("authorization_details: trailing data")
	}
	if d.Type != auth.CredentialDetailsType {
		return nil, invalidDetails("authorization_details type %q is not supported (want credential)", truncateValue(d.Type))
	}
	if d.SignatureQualifier != "" && d.SignatureQualifier != "eu_eidas_qes" {
		return nil, invalidDetails("signatureQualifier %q is not offered (eu_eidas_qes is)", truncateValue(d.SignatureQualifier))
	}
	hashes := make([][]byte, len(d.DocumentDigests))
	labels := make([]string, len(d.DocumentDigests))
	for i, dd := range d.DocumentDigests {
		h, err := decodeDigest(dd.Hash)
		if err != nil {
			return nil, invalidDetails("documentDigests[%d].hash: %v", i, err)
		}
		if err := checkLabel(dd.Label); err != nil {
			return nil, invalidDetails("documentDigests[%d].label: %v", i, err)
		}
		hashes[i], labels[i] = h, dd.Label
	}
	return newCredentialAuthorization(d.CredentialID, d.HashAlgorithmOID, hashes, labels)
}

// ParseCredentialParams reads the scope form: credentialID, numSignatures (as many as hashes),
// hashes (base64url, comma-separated) and hashAlgorithmOID.
func ParseCredentialParams(form url.Values) (*auth.CredentialAuthorization, error) {
	for _, k := range credentialParams {
		if len(form[k]) > 1 {
			return nil, invalidDetails("parameter %s is given more than once", k)
		}
	}
	if form.Get("hashes") == "" {
		return nil, invalidDetails("scope credential needs the hashes parameter")
	}
	parts := strings.Split(form.Get("hashes"), ",")
	if len(parts) > MaxDocumentDigests {
		return nil, invalidDetails("more than %d hashes", MaxDocumentDigests)
	}
	n, err := strconv.Atoi(form.Get("numSignatures"))
	if err != nil || n != len(parts) {
		return nil, invalidDetails("numSignatures must be the number of hashes (%d)", len(parts))
	}
	hashes := make([][]byte, len(parts))
	for i, p := range parts {
		if hashes[i], err = decodeDigest(p); err != nil {
			return nil, invalidDetails("hashes[%d]: %v", i, err)
		}
	}
	return newCredentialAuthorization(form.Get("credentialID"), form.Get("hashAlgorithmOID"), hashes, make([]string, len(hashes)))
}

func newCredentialAuthorization(credentialID, oid string, hashes [][]byte, labels []string) (*auth.CredentialAuthorization, error) {
	if credentialID == "" || len(credentialID) > 64 || strings.ContainsFunc(credentialID, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, invalidDetails("credentialID is missing or not valid")
	}
	alg, ok := credentialHashes[oid]
	if !ok {
		return nil, invalidDetails("hashAlgorithmOID %q is not supported (SHA-256, SHA-384 or SHA-512)", truncateValue(oid))
	}
	if len(hashes) == 0 || len(hashes) > MaxDocumentDigests {
		return nil, invalidDetails("want 1 to %d document digests, got %d", MaxDocumentDigests, len(hashes))
	}
	a := &auth.CredentialAuthorization{Type: auth.CredentialDetailsType, CredentialID: credentialID, HashAlgorithmOID: oid}
	for i, h := range hashes {
		if len(h) != alg.size {
			return nil, invalidDetails("digest %d has %d bytes, %s digests have %d", i, len(h), alg.name, alg.size)
		}
		for j := range i {
			if bytes.Equal(h, hashes[j]) {
				return nil, invalidDetails("digest %d is the same as digest %d", i, j)
			}
		}
		a.DocumentDigests = append(a.DocumentDigests, auth.DocumentDigest{Hash: h, Label: labels[i]})
	}
	return a, nil
}

// decodeDigest reads a base64 digest: CSC writes standard base64 in JSON and base64url in
// query parameters; both are accepted, padded or not.
func decodeDigest(s string) ([]byte, error) {
	if s == "" || len(s) > 128 {
		return nil, invalidDetails("missing or too long")
	}
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, invalidDetails("not base64")
	}
	return b, nil
}

func checkLabel(l string) error {
	if !utf8.ValidString(l) || utf8.RuneCountInString(l) > maxLabel {
		return invalidDetails("not UTF-8 text of at most %d characters", maxLabel)
	}
	if strings.ContainsFunc(l, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return invalidDetails("holds control or invisible characters")
	}
	return nil
}

// detailsError is a refused credential authorization request; its text is the OAuth hint.
type detailsError struct{ msg string }

func (e *detailsError) Error() string { return e.msg }
func (e *detailsError) Unwrap() error { return signing.ErrInvalid }

func invalidDetails(format string, args ...any) error {
	return &detailsError{msg: fmt.Sprintf(format, args...)}
}

// truncateValue shortens a value quoted back in an error.
func truncateValue(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
