package cades

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
	scades "github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/validation/core"
)

// LongTerm validates the CMS signature p (ber as it came) over content with what CAdES adds
// for the long term (EN 319 122-1), fills s, concludes it and sets the level reached:
//   - the certificate-values and revocation-values unsigned attributes, and SignedData's
//     certificates and revocation choices, are the evidence for the signer's chain and every
//     timestamp's TSA;
//   - each archive-time-stamp-v3 is verified against the imprint recomputed from the signature
//     as it is now (signing/cades.Archives, which checks its ats-hash-index-v3), the newest at
//     the validation time and each earlier one at the time of the earliest passed one after
//     it; the earliest passed one proves that the signature and its signature timestamps
//     existed at its time (EN 319 102-1 §5.6.2.1, past signature validation).
func LongTerm(v *core.Validator, s *core.SignatureReport, p *cms.SignedData, ber []byte, content Imprint, requireBinding bool) {
	ev, hasLT, err := longTermEvidence(v.Evidence(), p)
	if err != nil {
		s.Fail("format", core.FormatFailure, "%v", err)
		s.Conclude()
		return
	}
	v = v.With(ev)

	var archives []core.SignatureReport
	if len(p.UnsignedAttrs[scades.OIDArchiveTimestampV3.String()]) > 0 {
		der, err := cms.DER(ber)
		var list []scades.Archive
		if err == nil {
			list, err = scades.Archives(der, func(h crypto.Hash) ([]byte, error) {
				if h == p.Hash {
					if md, ok := messageDigest(p); ok {
						return md, nil // checkSigner compares it with the content
					}
				}
				if content == nil {
					return nil, fmt.Errorf("the signed content is not available")
				}
				return content(h)
			})
		}
		if err != nil {
			s.Fail("archive-timestamp", core.FormatFailure, "the archive timestamps cannot be read: %v", err)
			s.Conclude()
			return
		}
		archives = make([]core.SignatureReport, len(list))
		// later is the proof the passed archive timestamps after the n-th give.
		later := func(n int) core.Proof {
			var pr core.Proof
			for _, a := range archives[n+1:] {
				if a.Indication == core.TotalPassed {
					pr = pr.Earlier(core.Proof{At: a.ProofOfExistence, By: "the archive timestamp " + a.ID})
				}
			}
			return pr
		}
		for n := len(list) - 1; n >= 0; n-- {
			archives[n] = Timestamp(v, list[n].Token, "archive-timestamp", fmt.Sprintf("%s-ats%d", s.ID, n+1), Imprint(list[n].Imprint), later(n))
		}
	}
	var first core.Proof
	for _, a := range archives {
		if a.Indication == core.TotalPassed {
			first = first.Earlier(core.Proof{At: a.ProofOfExistence, By: "the archive timestamp " + a.ID})
		}
	}

	embedded, timestamped := Signature(v, s, p, content, requireBinding, first)
	archived := false
	for _, a := range archives {
		s.Timestamps = append(s.Timestamps, a)
		switch a.Indication {
		case core.TotalPassed:
			archived = true
		case core.TotalFailed:
			s.Fail("archive-timestamp", a.SubIndication, "the archive timestamp %s failed", a.ID)
		default:
			s.Info("archive-timestamp", "the archive timestamp %s is indeterminate (%s)", a.ID, a.SubIndication)
		}
	}
	if archived {
		s.Pass("archive-timestamp", "the archive timestamps prove the signature and its validation data existed at %s", first.At.Format(time.RFC3339))
	}
	s.Conclude()
	if s.Format != "CAdES-BASELINE" || s.Failed() {
		return
	}
	s.Level = signing.LevelB
	if timestamped {
		s.Level = signing.LevelT
		if embedded && (hasLT || len(p.OCSPs) > 0 || len(p.CRLs) > 0) {
			s.Level = signing.LevelLT
			if archived {
				s.Level = signing.LevelLTA
			}
		}
	}
}

// longTermEvidence is e with p's embedded validation data added: SignedData's certificates
// and revocation choices and the certificate-values and revocation-values attributes, so that
// the signature's timestamps find them too. It reports whether revocation-values is there.
func longTermEvidence(e core.Evidence, p *cms.SignedData) (core.Evidence, bool, error) {
	out := core.Evidence{Source: e.Source, Certs: slices.Concat(e.Certs, p.Certs), OCSPs: slices.Concat(e.OCSPs, p.OCSPs), CRLs: slices.Concat(e.CRLs, p.CRLs)}
	if out.Source == "" {
		out.Source = "CAdES"
	}
	for _, val := range p.UnsignedAttrs[scades.OIDCertValues.String()] {
		s := cryptobyte.String(val)
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return e, false, fmt.Errorf("the certificate-values attribute is not a SEQUENCE OF Certificate")
		}
		for !seq.Empty() {
			var c cryptobyte.String
			if !seq.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return e, false, fmt.Errorf("the certificate-values attribute is not a SEQUENCE OF Certificate")
			}
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				return e, false, fmt.Errorf("a certificate of certificate-values does not parse: %v", err)
			}
			out.Certs = append(out.Certs, cert)
		}
	}
	rvs := p.UnsignedAttrs[scades.OIDRevocationValues.String()]
	for _, val := range rvs {
		bad := fmt.Errorf("the revocation-values attribute is not a RevocationValues")
		s := cryptobyte.String(val)
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return e, false, bad
		}
		for i, dst := range []*[][]byte{&out.CRLs, &out.OCSPs} { // crlVals [0], ocspVals [1]; otherRevVals not read
			var tagged, list cryptobyte.String
			var present bool
			if !seq.ReadOptionalASN1(&tagged, &present, cbasn1.Tag(i).ContextSpecific().Constructed()) {
				return e, false, bad
			}
			if !present {
				continue
			}
			if !tagged.ReadASN1(&list, cbasn1.SEQUENCE) {
				return e, false, bad
			}
			for !list.Empty() {
				var el cryptobyte.String
				if !list.ReadASN1Element(&el, cbasn1.SEQUENCE) {
					return e, false, bad
				}
				if i == 1 {
					*dst = append(*dst, ocspResponseOf(el))
				} else {
					*dst = append(*dst, []byte(el))
				}
			}
		}
	}
	return out, len(rvs) > 0, nil
}

// ocspResponseOf wraps a BasicOCSPResponse (what revocation-values holds) in the successful
// OCSPResponse (RFC 6960 §4.2.1) the OCSP checks read.
func ocspResponseOf(basic []byte) []byte {
	return cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Enum(0) // successful
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidOCSPBasic)
					b.AddASN1OctetString(basic)
				})
			})
		})
	})
}

// oidOCSPBasic is id-pkix-ocsp-basic.
var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
