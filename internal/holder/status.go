package holder

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Status values of a Token Status List (IETF OAuth Token Status List §7.1).
const (
	StatusValid     = "valid"
	StatusRevoked   = "revoked"
	StatusSuspended = "suspended"
)

// statusList is a fetched, verified status list.
type statusList struct {
	bits int
	lst  []byte
}

// Status fetches the status list token at ref's uri as a JWT, checks it (signed by a
// certificate chaining to anchors, its sub the uri, not expired) and reads ref's slot. cache
// holds lists already fetched in this run, by uri.
func (c Client) status(ctx context.Context, ref *statusRef, anchors []*x509.Certificate, cache map[string]*statusList) (string, error) {
	l, ok := cache[ref.URI]
	if !ok {
		var err error
		if l, err = c.fetchStatusList(ctx, ref.URI, anchors); err != nil {
			return "", err
		}
		cache[ref.URI] = l
	}
	per := 8 / l.bits
	if ref.Idx < 0 || ref.Idx/per >= len(l.lst) {
		return "", fmt.Errorf("%w: index %d is outside the status list", ErrInvalid, ref.Idx)
	}
	v := (l.lst[ref.Idx/per] >> ((ref.Idx % per) * l.bits)) & (1<<l.bits - 1)
	switch v {
	case 0:
		return StatusValid, nil
	case 1:
		return StatusRevoked, nil
	case 2:
		return StatusSuspended, nil
	}
	return fmt.Sprintf("status 0x%x", v), nil
}

func (c Client) fetchStatusList(ctx context.Context, uri string, anchors []*x509.Certificate) (*statusList, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/statuslist+jwt")
	_, b, err := c.do(req, maxStatusList)
	if err != nil {
		return nil, err
	}
	t, err := parseJWT(string(bytes.TrimSpace(b)), maxStatusList)
	if err != nil {
		return nil, fmt.Errorf("the status list: %w", err)
	}
	if t.typ != "statuslist+jwt" {
		return nil, fmt.Errorf("%w: the status list's typ is %q", ErrInvalid, t.typ)
	}
	now := c.now()
	if err := verifyChain(t.x5c, anchors, now); err != nil {
		return nil, fmt.Errorf("the status list: %w", err)
	}
	var claims struct {
		Sub        string `json:"sub"`
		Exp        int64  `json:"exp"`
		StatusList struct {
			Bits int    `json:"bits"`
			Lst  string `json:"lst"`
		} `json:"status_list"`
	}
	if err := t.verify(t.x5c[0].PublicKey, &claims); err != nil {
		return nil, fmt.Errorf("the status list: %w", err)
	}
	if claims.Sub != uri {
		return nil, fmt.Errorf("%w: the status list at %s says it is %q", ErrInvalid, uri, claims.Sub)
	}
	if claims.Exp != 0 && !now.Before(time.Unix(claims.Exp, 0).Add(clockSkew)) {
		return nil, fmt.Errorf("%w: the status list expired", ErrInvalid)
	}
	switch claims.StatusList.Bits {
	case 1, 2, 4, 8:
	default:
		return nil, fmt.Errorf("%w: status list bits %d", ErrInvalid, claims.StatusList.Bits)
	}
	z, err := b64.DecodeString(claims.StatusList.Lst)
	if err != nil {
		return nil, fmt.Errorf("%w: the status list's lst is not base64url", ErrInvalid)
	}
	lst, err := inflate(z)
	if err != nil {
		return nil, err
	}
	return &statusList{bits: claims.StatusList.Bits, lst: lst}, nil
}

// inflate decompresses a ZLIB status list, refusing one that inflates past maxListBits.
func inflate(z []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("%w: the status list is not ZLIB: %v", ErrInvalid, err)
	}
	lst, err := io.ReadAll(io.LimitReader(r, maxListBits+1))
	if err != nil {
		return nil, fmt.Errorf("%w: the status list does not inflate: %v", ErrInvalid, err)
	}
	if len(lst) > maxListBits {
		return nil, fmt.Errorf("%w: the status list inflates past %d bytes", ErrInvalid, maxListBits)
	}
	return lst, nil
}

// Listed is a credential as `vula wallet list` shows it.
type Listed struct {
	Credential
	Claims []string `json:"claims"`
	Status string   `json:"status"` // valid, revoked, suspended, or why it is unknown
}

// List reads every credential of w and, for each, its status now.
func (c Client) List(ctx context.Context, w *Wallet) []Listed {
	anchors := w.Trust()
	cache := map[string]*statusList{}
	failed := map[string]error{}
	var out []Listed
	for _, cr := range w.Credentials() {
		l := Listed{Credential: cr}
		var ref *statusRef
		// Read again at the time it was received: what is shown is what was checked then.
		switch cr.Format {
		case formatSDJWT:
			t, err := parseSDJWT(cr.Credential, anchors, cr.Received)
			if err != nil {
				l.Status = "unreadable: " + err.Error()
				out = append(out, l)
				continue
			}
			l.Claims, ref = t.disclosedNames(), t.status
		case formatMdoc:
			m, err := parseMdoc(cr.Credential, anchors, cr.Received)
			if err != nil {
				l.Status = "unreadable: " + err.Error()
				out = append(out, l)
				continue
			}
			l.Claims, ref = m.names(), m.statusRef()
		}
		switch {
		case !c.now().Before(cr.Expires) && !cr.Expires.IsZero():
			l.Status = "expired"
		case ref == nil:
			l.Status = "no status list"
		case failed[ref.URI] != nil:
			l.Status = "unknown: " + failed[ref.URI].Error()
		default:
			s, err := c.status(ctx, ref, anchors, cache)
			if err != nil {
				if !errors.Is(err, ErrInvalid) || cache[ref.URI] == nil {
					failed[ref.URI] = err
				}
				s = "unknown: " + err.Error()
			}
			l.Status = s
		}
		out = append(out, l)
	}
	return out
}
