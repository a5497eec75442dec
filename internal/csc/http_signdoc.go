package csc

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/vula-eid/vula/internal/signing"
)

// maxDocBody bounds a signatures/signDoc body: the documents travel in it, in base64.
const maxDocBody = 64 << 20

// docParams are what signDoc's documents and documentDigests entries share (CSC API v2 §11.11).
type docParams struct {
	SignatureFormat        string            `json:"signature_format"`
	ConformanceLevel       string            `json:"conformance_level"`
	SignAlgo               string            `json:"signAlgo"`
	SignAlgoParams         string            `json:"signAlgoParams"`
	SignedProps            []json.RawMessage `json:"signed_props"`
	SignedEnvelopeProperty string            `json:"signed_envelope_property"`
}

// check refuses what Vula does not make and checks signAlgo against the credential's key: the
// formats sign with signing.HashFor of the key.
func (p docParams) check(what string, c Credential) error {
	if p.SignAlgo == "" {
		return invalidRequest("Missing (or invalid type) string parameter signAlgo (%s)", what)
	}
	alg, ok := signAlgos[p.SignAlgo]
	if !ok {
		return invalidRequest("Invalid parameter signAlgo (%s)", what)
	}
	if keyIsEC(c.Cert) != alg.ec {
		return invalidRequest("Invalid parameter signAlgo (%s): the credential's key is %s", what, c.Cert.PublicKeyAlgorithm)
	}
	if h, err := signing.HashFor(c.Cert.PublicKey); err != nil || alg.hash != 0 && alg.hash != h {
		return invalidRequest("Invalid parameter signAlgo (%s): the credential's key signs with %v", what, h)
	}
	if p.SignAlgoParams != "" {
		return invalidRequest("Invalid parameter signAlgoParams (%s): none are supported", what)
	}
	if len(p.SignedProps) > 0 {
		return invalidRequest("Invalid parameter signed_props (%s): not supported", what)
	}
	return nil
}

// signDoc is signatures/signDoc (CSC API v2 §11.11): documents are signed through the signing
// engine and come back in DocumentWithSignature (PAdES, enveloped XAdES) or SignatureObject
// (detached or enveloping signatures), in the order given; documentDigests get detached CAdES
// signatures in SignatureObject. Only synchronous mode; one of documents and documentDigests
// per request, since one SAD is redeemed at once.
func (h Handler) signDoc(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		CredentialID       string `json:"credentialID"`
		SignatureQualifier string `json:"signatureQualifier"`
		SAD                string `json:"SAD"`
		Documents          []struct {
			Document string `json:"document"`
			docParams
		} `json:"documents"`
		DocumentDigests []struct {
			Hashes           []string `json:"hashes"`
			HashAlgorithmOID string   `json:"hashAlgorithmOID"`
			docParams
		} `json:"documentDigests"`
		OperationMode        string `json:"operationMode"`
		ValidityPeriod       *int   `json:"validity_period"`
		ResponseURI          string `json:"response_uri"`
		ClientData           string `json:"clientData"`
		ReturnValidationInfo bool   `json:"returnValidationInfo"`
		// Some clients spell it so; it means the same.
		ReturnValidationInformation bool `json:"returnValidationInformation"`
	}
	if err := decodeAtMost(r, &req, maxDocBody); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := tokenSAD(r.Context(), &req.SAD); err != nil { // a credential token stands in for the SAD (oauth.go)
		h.fail(w, r, err)
		return
	}
	switch {
	case req.CredentialID == "" || req.SAD == "":
		h.fail(w, r, missingCredentialOrSAD(req.CredentialID))
		return
	case req.OperationMode != "" && req.OperationMode != "S":
		h.fail(w, r, invalidRequest("Invalid parameter operationMode: only S is supported"))
		return
	case req.ValidityPeriod != nil || req.ResponseURI != "":
		h.fail(w, r, invalidRequest("Invalid parameter validity_period or response_uri: only for operationMode A, which is not supported"))
		return
	case len(req.Documents) == 0 && len(req.DocumentDigests) == 0:
		h.fail(w, r, invalidRequest("Missing (or invalid type) array parameter documents or documentDigests"))
		return
	case len(req.Documents) > 0 && len(req.DocumentDigests) > 0:
		h.fail(w, r, invalidRequest("Invalid parameters documents and documentDigests: give one of them per request"))
		return
	}
	ctx := r.Context()
	c, err := h.S.Credential(ctx, subject, req.CredentialID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	validation := req.ReturnValidationInfo || req.ReturnValidationInformation
	var res DocResult
	enveloped := make([]bool, 0)
	if len(req.Documents) > 0 {
		dr := DocRequest{CredentialID: req.CredentialID, SAD: req.SAD, ReturnValidationInfo: validation}
		for i, d := range req.Documents {
			what := "documents[" + strconv.Itoa(i) + "]"
			if err := d.check(what, c); err != nil {
				h.fail(w, r, err)
				return
			}
			data, err := base64.StdEncoding.DecodeString(d.Document)
			if err != nil || len(data) == 0 {
				h.fail(w, r, invalidRequest("Invalid Base64 document string parameter (%s)", what))
				return
			}
			level, err := ParseConformanceLevel(d.ConformanceLevel)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			dr.Documents = append(dr.Documents, Document{Data: data, Format: d.SignatureFormat, Level: level, Packaging: d.SignedEnvelopeProperty})
			pack := d.SignedEnvelopeProperty
			enveloped = append(enveloped, d.SignatureFormat == FormatPAdES || d.SignatureFormat == FormatXAdES && (pack == "" || pack == Enveloped))
		}
		res, err = h.S.SignDoc(ctx, subject, dr)
	} else {
		dr := DigestRequest{CredentialID: req.CredentialID, SAD: req.SAD, ReturnValidationInfo: validation}
		for i, d := range req.DocumentDigests {
			what := "documentDigests[" + strconv.Itoa(i) + "]"
			if err := d.check(what, c); err != nil {
				h.fail(w, r, err)
				return
			}
			if d.SignatureFormat != FormatCAdES {
				h.fail(w, r, invalidRequest("Invalid parameter signature_format (%s): documentDigests are signed as CAdES (C) only", what))
				return
			}
			// A signature over a digest cannot hold the document: Detached is the only choice
			// (the spec's CAdES default, Attached, is impossible here).
			if d.SignedEnvelopeProperty != "" && d.SignedEnvelopeProperty != Detached {
				h.fail(w, r, invalidRequest("Invalid parameter signed_envelope_property (%s): only Detached for documentDigests", what))
				return
			}
			if i > 0 && d.HashAlgorithmOID != dr.HashOID {
				h.fail(w, r, invalidRequest("Invalid parameter hashAlgorithmOID (%s): all digests of one request take one algorithm", what))
				return
			}
			level, err := ParseConformanceLevel(d.ConformanceLevel)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			if i > 0 && level != dr.Level {
				h.fail(w, r, invalidRequest("Invalid parameter conformance_level (%s): all digests of one request take one level", what))
				return
			}
			hs, err := decodeHashes(d.Hashes)
			if err != nil {
				h.fail(w, r, err)
				return
			}
			dr.HashOID, dr.Level = d.HashAlgorithmOID, level
			dr.Digests = append(dr.Digests, hs...)
		}
		for range dr.Digests {
			enveloped = append(enveloped, false)
		}
		res, err = h.S.SignDigests(ctx, subject, dr)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := map[string]any{}
	var withSig, objects []string
	for i, d := range res.Documents {
		if enveloped[i] {
			withSig = append(withSig, base64.StdEncoding.EncodeToString(d))
		} else {
			objects = append(objects, base64.StdEncoding.EncodeToString(d))
		}
	}
	if withSig != nil {
		out["DocumentWithSignature"] = withSig
	}
	if objects != nil {
		out["SignatureObject"] = objects
	}
	if vi := res.ValidationInfo; vi != nil {
		certs := make([]string, len(vi.Certs))
		for i, c := range vi.Certs {
			certs[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		b64s := func(bs [][]byte) []string {
			o := make([]string, len(bs))
			for i, b := range bs {
				o[i] = base64.StdEncoding.EncodeToString(b)
			}
			return o
		}
		out["validationInfo"] = map[string]any{"ocsp": b64s(vi.OCSPs), "crl": b64s(vi.CRLs), "certificates": certs}
	}
	writeJSON(w, http.StatusOK, out)
}

// extendTransaction is credentials/extendTransaction (CSC API v2 §11.8): a new SAD for what is
// left of an authorization, with a fresh expiry within the overall limit; the old SAD is spent.
func (h Handler) extendTransaction(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		CredentialID string `json:"credentialID"`
		SAD          string `json:"SAD"`
		ClientData   string `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.CredentialID == "" || req.SAD == "" {
		h.fail(w, r, missingCredentialOrSAD(req.CredentialID))
		return
	}
	res, err := h.S.ExtendTransaction(r.Context(), subject, req.CredentialID, req.SAD)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"SAD": res.SAD, "expiresIn": res.ExpiresIn})
}
