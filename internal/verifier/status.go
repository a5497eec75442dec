package verifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vula-eid/vula/internal/statuslist"
)

// The status of a credential is one entry of a status list (IETF OAuth Token Status List): the
// credential names the list (uri) and its entry (idx); the list is a signed token whose
// status_list.lst is the ZLIB-compressed entries, bits each, least significant first.

const (
	statusTimeout = 5 * time.Second
	maxStatusList = 4 << 20 // bytes of a decompressed list: 32 million entries of one bit
)

// statusNames are the registered status values.
var statusNames = map[int]string{0: "valid", 1: "invalid", 2: "suspended"}

// checkStatus reads the credential's status: "none" when it names no status list. An error
// means the status could not be established, which refuses the presentation.
func (s *Service) checkStatus(ctx context.Context, claims map[string]any, now time.Time) (string, error) {
	st, ok := claims["status"].(map[string]any)
	if !ok {
		return "none", nil
	}
	sl, ok := st["status_list"].(map[string]any)
	if !ok {
		return "none", nil
	}
	uri, _ := sl["uri"].(string)
	idxN, _ := sl["idx"].(json.Number)
	idx, err := idxN.Int64()
	if uri == "" || err != nil || idx < 0 {
		return "unknown", errors.New("status.status_list needs a uri and a non-negative idx")
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	tok, err := s.status.StatusList(ctx, uri)
	if err != nil {
		return "unknown", fmt.Errorf("fetching the status list %s: %w", uri, err)
	}
	l, err := s.readList(tok, uri, now)
	if err != nil {
		return "unknown", err
	}
	v, err := l.At(idx)
	if err != nil {
		return "unknown", err
	}
	if n, ok := statusNames[v]; ok {
		return n, nil
	}
	return "status-0x" + strconv.FormatInt(int64(v), 16), nil
}

// statusList is a verified, decompressed status list.
type statusList struct {
	*statuslist.List
	uri     string
	expires time.Time // zero when the token has no exp
}

// maxCachedLists bounds the cache of verified lists; it is emptied when full.
const maxCachedLists = 64

// readList verifies a status list token (signer's chain to a trust anchor, signature, sub,
// exp) and decompresses its list. A token seen before is taken from the cache: a list is
// signed once per issuer's ttl and read by every presentation of its credentials.
func (s *Service) readList(tok []byte, uri string, now time.Time) (*statusList, error) {
	key := sha256.Sum256(tok)
	s.mu.Lock()
	l := s.lists[key]
	s.mu.Unlock()
	if l != nil && l.uri == uri && (l.expires.IsZero() || now.Before(l.expires)) {
		return l, nil
	}
	leaf, err := s.issuerCert(string(tok), now)
	if err != nil {
		return nil, fmt.Errorf("the status list's signer: %w", err)
	}
	_, payload, err := verifyJWS(string(tok), "statuslist+jwt", leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("the status list token: %w", err)
	}
	var c struct {
		Sub        string `json:"sub"`
		Exp        int64  `json:"exp"`
		StatusList struct {
			Bits int    `json:"bits"`
			Lst  string `json:"lst"`
		} `json:"status_list"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errors.New("the status list token's claims are malformed")
	}
	if c.Sub != uri {
		return nil, fmt.Errorf("the status list token is for %q, not %q", c.Sub, uri)
	}
	l = &statusList{uri: uri}
	if c.Exp != 0 {
		l.expires = time.Unix(c.Exp, 0)
		if !now.Before(l.expires) {
			return nil, errors.New("the status list token has expired")
		}
	}
	if l.List, err = statuslist.Decode(c.StatusList.Lst, c.StatusList.Bits, maxStatusList); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.lists) >= maxCachedLists {
		clear(s.lists)
	}
	s.lists[key] = l
	s.mu.Unlock()
	return l, nil
}

// statusAt reads entry idx of a compressed list of bits-wide entries.
func statusAt(lst string, bits int, idx int64) (int, error) {
	list, err := statuslist.Decode(lst, bits, maxStatusList)
	if err != nil {
		return 0, err
	}
	return list.At(idx)
}

// StatusList fetches the token at uri over HTTPS (HTTP only for a loopback host).
func (h HTTPStatusLists) StatusList(ctx context.Context, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && checkRedirect(uri) == nil)) {
		return nil, fmt.Errorf("status list uri %q is not an https URL", uri)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/statuslist+jwt")
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: statusTimeout}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read only
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	limit := h.MaxSize
	if limit <= 0 {
		limit = 1 << 20
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the status list is larger than %d bytes", limit)
	}
	return bytes.TrimSpace(b), nil
}
