package verifier

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/mdoc"
)

// verifyMdoc checks one mso_mdoc presentation (a DeviceResponse, OpenID4VP 1.0 Appendix B.2)
// for query q: the issuer's x5chain to a trust anchor and its signature on the MSO, the items'
// digests, the validity, the device signature over this transaction's SessionTranscript, and
// the MSO's status list entry.
func (s *Service) verifyMdoc(ctx context.Context, tx transaction, q CredentialQuery, pres string, now time.Time) CredentialResult {
	r := CredentialResult{ID: q.ID, Format: q.Format, Trust: "unchecked", Status: "unchecked", KeyBinding: "unchecked"}
	refuse := func(format string, a ...any) CredentialResult {
		r.Refusal = fmt.Sprintf(format, a...)
		r.Claims = nil
		return r
	}
	st, err := s.sessionTranscript(tx)
	if err != nil {
		return refuse("%v", err)
	}
	doc, err := mdoc.Verify(pres, s.anchors, st, now)
	if doc != nil {
		r.DocType = doc.DocType
		if len(doc.Chain) > 0 {
			r.Issuer = doc.Chain[0].Subject.String()
		}
	}
	if err == nil && !certs.IsPIDIssuer(doc.Chain[0]) {
		// mdoc.Verify took any anchor; a leaf that is not a PID issuer's must chain to an
		// outside one.
		err = s.trusted(doc.Chain, now)
	}
	if err != nil {
		return refuse("%v", err)
	}
	r.Trust, r.KeyBinding = "trusted", "ok"
	if doc.DocType != q.Meta.DoctypeValue {
		return refuse("docType %q is not %q", doc.DocType, q.Meta.DoctypeValue)
	}
	claims := map[string]any{}
	if doc.Status != nil {
		claims["status"] = map[string]any{"status_list": map[string]any{"uri": doc.Status.URI,
			"idx": json.Number(strconv.FormatUint(doc.Status.Idx, 10))}}
	}
	status, err := s.checkStatus(ctx, claims, now)
	r.Status = status
	if err != nil {
		return refuse("status: %v", err)
	}
	if status != "valid" && status != "none" {
		return refuse("the credential's status is %s", status)
	}
	byNS := map[string]any{}
	for _, e := range doc.Elements {
		ns, _ := byNS[e.Namespace].(map[string]any)
		if ns == nil {
			ns = map[string]any{}
			byNS[e.Namespace] = ns
		}
		ns[e.Identifier] = jsonValue(e.Value)
	}
	picked, err := q.pick(byNS)
	if err != nil {
		return refuse("%v", err)
	}
	r.Claims = picked
	return r
}

// sessionTranscript is the transaction's OpenID4VP SessionTranscript: this verifier's client
// id, the nonce, the thumbprint of the response encryption key (direct_post.jwt) and the
// response URI.
func (s *Service) sessionTranscript(tx transaction) ([]byte, error) {
	clientID, err := s.clientIDOf(tx)
	if err != nil {
		return nil, err
	}
	var jkt []byte
	if len(tx.Key) > 0 {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(tx.Key); err != nil {
			return nil, fmt.Errorf("the transaction's encryption key: %v", err)
		}
		pub := k.Public()
		if jkt, err = pub.Thumbprint(crypto.SHA256); err != nil {
			return nil, fmt.Errorf("the transaction's encryption key: %v", err)
		}
	}
	return mdoc.SessionTranscript(clientID, tx.Nonce, jkt, s.responseURI(tx))
}

// jsonValue turns a CBOR element value into what the relying party's JSON carries: dates
// (tdate, full-date) as their strings, byte strings as base64url, maps with string keys.
func jsonValue(v any) any {
	switch t := v.(type) {
	case cbor.Tag:
		if s, ok := t.Content.(string); ok && (t.Number == 0 || t.Number == 1004) {
			return s
		}
		return jsonValue(t.Content)
	case []byte:
		return base64.RawURLEncoding.EncodeToString(t)
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[fmt.Sprint(k)] = jsonValue(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = jsonValue(x)
		}
		return out
	case big.Int:
		return t.String()
	}
	return v
}
