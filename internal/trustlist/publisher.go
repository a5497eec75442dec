package trustlist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
)

// MediaType is the media type of a trusted list in XML (TS 119 612 Annex H).
const MediaType = "application/vnd.etsi.tsl+xml"

// Publisher keeps the platform's own list: it signs a new issue when what the list says
// changes or when half of Period has passed since the last issue, numbering each issue one
// above the last, and keeps every issue in the settings so that every replica serves the same
// list and the numbers survive restarts.
type Publisher struct {
	Settings store.Settings
	Signer   signing.Signer
	// List is what to publish; its SequenceNumber and dates are the Publisher's to set.
	List   Publication
	Period time.Duration // from one issue to its NextUpdate
	Now    func() time.Time
	Log    *slog.Logger

	mu      sync.Mutex
	current issue
}

// issue is one signed issue of the list as kept in the settings.
type issue struct {
	Sequence int       `json:"sequence"`
	Digest   string    `json:"digest"` // of what the list says, not of its dates or signature
	Issued   time.Time `json:"issued"`
	XML      []byte    `json:"xml"`
}

const settingCurrent = "trustlist/current"

func settingIssue(n int) string { return "trustlist/" + strconv.Itoa(n) }

// Current returns the list to serve, signing a new issue when one is due.
func (p *Publisher) Current(ctx context.Context) ([]byte, error) {
	if p.Period <= 0 {
		return nil, fmt.Errorf("%w: trustlist: no update period", signing.ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.Now()
	digest, err := p.digest()
	if err != nil {
		return nil, err
	}
	if p.current.XML != nil && p.current.Digest == digest && now.Before(p.current.Issued.Add(p.Period/2)) {
		return p.current.XML, nil
	}
	// Another replica may have issued since: the settings hold the newest issue.
	last, err := p.latest(ctx)
	if err != nil {
		return nil, err
	}
	if last.XML != nil && last.Digest == digest && now.Before(last.Issued.Add(p.Period/2)) {
		p.current = last
		return last.XML, nil
	}
	next := issue{Sequence: last.Sequence + 1, Digest: digest, Issued: now.UTC().Truncate(time.Second)}
	pub := p.List
	pub.SequenceNumber, pub.IssueDate, pub.NextUpdate = next.Sequence, next.Issued, next.Issued.Add(p.Period)
	if next.XML, err = Publish(ctx, pub, p.Signer); err != nil {
		return nil, fmt.Errorf("trustlist: signing issue %d: %w", next.Sequence, err)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	// Two replicas issuing the same number at once: the first stored is the issue.
	stored, err := p.Settings.PutSettingIfAbsent(ctx, settingIssue(next.Sequence), b)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(stored, &next); err != nil {
		return nil, fmt.Errorf("trustlist: issue %d in the settings: %w", next.Sequence, err)
	}
	if err := p.Settings.PutSetting(ctx, settingCurrent, []byte(strconv.Itoa(next.Sequence))); err != nil {
		return nil, err
	}
	p.Log.Info("trusted list issued", slog.Int("sequence", next.Sequence), slog.Time("next_update", next.Issued.Add(p.Period)))
	p.current = next
	return next.XML, nil
}

// latest is the newest issue in the settings; the zero issue when there is none.
func (p *Publisher) latest(ctx context.Context) (issue, error) {
	v, err := p.Settings.Setting(ctx, settingCurrent)
	if errors.Is(err, store.ErrNotFound) {
		return issue{}, nil
	}
	if err != nil {
		return issue{}, err
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return issue{}, fmt.Errorf("trustlist: the current issue number %q in the settings: %w", v, err)
	}
	b, err := p.Settings.Setting(ctx, settingIssue(n))
	if err != nil {
		return issue{}, err
	}
	var is issue
	if err := json.Unmarshal(b, &is); err != nil {
		return issue{}, fmt.Errorf("trustlist: issue %d in the settings: %w", n, err)
	}
	return is, nil
}

// digest identifies what the list says: operator, services, their certificates and statuses.
func (p *Publisher) digest() (string, error) {
	pub := p.List
	pub.SequenceNumber, pub.IssueDate, pub.NextUpdate = 0, time.Time{}, time.Time{}
	type svc struct {
		Name, Type, Status string
		Since              time.Time
		Cert               []byte
		Additional         []string
	}
	var svcs []svc
	for _, s := range pub.Services {
		if s.Certificate == nil {
			return "", fmt.Errorf("%w: trustlist: the service %q has no certificate", signing.ErrInvalid, s.Name)
		}
		svcs = append(svcs, svc{s.Name, s.Type, s.Status, s.Since.UTC(), s.Certificate.Raw, s.Additional})
	}
	b, err := json.Marshal([]any{pub.Operator, pub.Territory, pub.InfoURI, pub.Location, svcs})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// ServeHTTP answers GET and HEAD with the current list.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := p.Current(r.Context())
	if err != nil {
		// The key layer or the durable store is down: the list cannot be signed or read now.
		p.Log.Error("trusted list", slog.Any("err", err))
		w.Header().Set("Retry-After", "30")
		http.Error(w, "the trusted list is not available now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", MediaType)
	w.Header().Set("Cache-Control", "public, max-age=300")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}
