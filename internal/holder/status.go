package holder

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/statuslist"
)

// Status values of a Token Status List (IETF OAuth Token Status List §7.1).
const (
	StatusValid     = "valid"
	StatusRevoked   = "revoked"
	StatusSuspended = "suspended"
)

// statusList is a fetched, verified status list.
type statusList = statuslist.List

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
	v, err := l.At(int64(ref.Idx))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
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
	l, err := statuslist.Decode(claims.StatusList.Lst, claims.StatusList.Bits, maxListBits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return l, nil
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
