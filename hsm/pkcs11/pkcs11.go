// Package pkcs11 is the key layer's backend for hardware security modules, over any PKCS#11
// library (SoftHSM2 in development and tests), on github.com/miekg/pkcs11.
//
// Keys are generated on the token as sensitive, never extractable, sign-only objects (decrypt,
// unwrap and derive false). Each key's metadata (purpose, owner, creation time, state) is a
// private CKO_DATA object on the token beside it (application "vula-key", same label), so every
// replica that shares the token sees the same keys. Keys are named by RFC 7512 URIs:
// pkcs11:token=<token>;object=<label>;type=private.
//
// The Manager keeps one logged-in session open for its life (a login lasts only while a session
// is open) and a pool of working sessions. When the token or its sessions go away
// (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED, ...), it finds the token again by label,
// logs in again, and retries the operation once: no restart needed.
package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/vula-eid/vula/hsm"
)

// Config says which token to use.
type Config struct {
	Module     string // path of the PKCS#11 library
	TokenLabel string
	PIN        string // the user PIN; never logged, never in an error
	PoolSize   int    // working sessions; 0 means max(4, 2×GOMAXPROCS)
}

// Manager is the PKCS#11 key backend.
type Manager struct {
	cfg Config
	log *slog.Logger
	mod *module

	mu     sync.RWMutex // guards the sessions; held for writing only to reconnect or close
	slot   uint
	login  p11.SessionHandle
	pool   chan p11.SessionHandle
	gen    uint64 // counts reconnections; cached handles are valid for one generation
	closed bool

	cacheMu sync.RWMutex
	keys    map[string]*entry // by label
}

var _ hsm.Manager = (*Manager)(nil)

// entry caches what signing needs of one key.
type entry struct {
	gen  uint64
	priv p11.ObjectHandle
	meta meta
	pub  crypto.PublicKey
}

// meta is the JSON kept in the key's CKO_DATA object.
type meta struct {
	Algorithm hsm.Algorithm `json:"algorithm"`
	Purpose   hsm.Purpose   `json:"purpose"`
	Owner     string        `json:"owner,omitempty"`
	Created   time.Time     `json:"created"`
	State     hsm.State     `json:"state"`
	ID        []byte        `json:"id"` // CKA_ID of the key pair
}

const application = "vula-key"

// Open loads the module, finds the token by label and logs in.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Manager, error) {
	if cfg.Module == "" || cfg.TokenLabel == "" {
		return nil, fmt.Errorf("%w: pkcs11: module and token label are required", hsm.ErrInvalid)
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = max(4, 2*runtime.GOMAXPROCS(0))
	}
	mod, err := loadModule(cfg.Module)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsm.ErrUnavailable, err)
	}
	m := &Manager{cfg: cfg, log: log, mod: mod, keys: map[string]*entry{}}
	if err := m.connect(); err != nil {
		_ = mod.release() // the connect error is the one to report
		return nil, err
	}
	return m, nil
}

// connect finds the token, opens the login session and the pool. Called with mu held (or before
// m is shared).
func (m *Manager) connect() error {
	c := m.mod.ctx
	slots, err := c.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("%w: pkcs11: listing slots: %v", hsm.ErrUnavailable, err)
	}
	found := false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err == nil && ti.Label == m.cfg.TokenLabel {
			m.slot, found = s, true
			if ti.Flags&p11.CKF_USER_PIN_LOCKED != 0 {
				return fmt.Errorf("%w: pkcs11: the user PIN of token %q is locked", hsm.ErrLogin, m.cfg.TokenLabel)
			}
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: pkcs11: no token labelled %q in %s", hsm.ErrUnavailable, m.cfg.TokenLabel, m.cfg.Module)
	}
	login, err := c.OpenSession(m.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("%w: pkcs11: opening a session on %q: %v", hsm.ErrUnavailable, m.cfg.TokenLabel, err)
	}
	m.mod.login.Lock()
	err = c.Login(login, p11.CKU_USER, m.cfg.PIN)
	switch {
	case err == nil:
		m.mod.notePIN(m.cfg.TokenLabel, m.cfg.PIN)
	case isCode(err, p11.CKR_USER_ALREADY_LOGGED_IN):
		if !m.mod.samePIN(m.cfg.TokenLabel, m.cfg.PIN) {
			err = p11.Error(p11.CKR_PIN_INCORRECT)
		} else {
			err = nil
		}
	}
	m.mod.login.Unlock()
	if err != nil {
		_ = c.CloseSession(login) // the login error is the one to report
		switch {
		case isCode(err, p11.CKR_PIN_INCORRECT):
			return fmt.Errorf("%w: pkcs11: wrong PIN for token %q", hsm.ErrLogin, m.cfg.TokenLabel)
		case isCode(err, p11.CKR_PIN_LOCKED):
			return fmt.Errorf("%w: pkcs11: the user PIN of token %q is locked", hsm.ErrLogin, m.cfg.TokenLabel)
		}
		return fmt.Errorf("%w: pkcs11: login to %q: %v", hsm.ErrLogin, m.cfg.TokenLabel, err)
	}
	pool := make(chan p11.SessionHandle, m.cfg.PoolSize)
	for i := 0; i < m.cfg.PoolSize; i++ {
		s, err := c.OpenSession(m.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			close(pool)
			// The OpenSession error is the one to report; these sessions are discarded anyway.
			for s := range pool {
				_ = c.CloseSession(s)
			}
			_ = c.CloseSession(login)
			return fmt.Errorf("%w: pkcs11: opening working sessions: %v", hsm.ErrUnavailable, err)
		}
		pool <- s
	}
	m.login, m.pool = login, pool
	m.gen++
	return nil
}

// reconnect drops every session and connects again, unless another goroutine already did
// since generation seen.
func (m *Manager) reconnect(seen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return hsm.ErrClosed
	}
	if m.gen != seen {
		return nil
	}
	m.log.Warn("pkcs11: token sessions lost, reconnecting", "token", m.cfg.TokenLabel)
	m.closeSessions()
	m.cacheMu.Lock()
	m.keys = map[string]*entry{}
	m.cacheMu.Unlock()
	return m.connect()
}

// do runs f on a pooled session, reconnecting and retrying once when the session or token went
// away.
func (m *Manager) do(f func(s p11.SessionHandle, gen uint64) error) error {
	for attempt := 0; ; attempt++ {
		m.mu.RLock()
		if m.closed {
			m.mu.RUnlock()
			return hsm.ErrClosed
		}
		gen, pool := m.gen, m.pool
		s := <-pool
		err := f(s, gen)
		pool <- s
		m.mu.RUnlock()
		if err == nil || !reconnectable(err) || attempt > 0 {
			return err
		}
		if rerr := m.reconnect(gen); rerr != nil {
			return rerr
		}
	}
}

// Ping checks that the login session is alive, reconnecting once if it is not.
func (m *Manager) Ping(ctx context.Context) error {
	m.mu.RLock()
	closed, gen, login := m.closed, m.gen, m.login
	m.mu.RUnlock()
	if closed {
		return hsm.ErrClosed
	}
	if _, err := m.mod.ctx.GetSessionInfo(login); err != nil {
		if err := m.reconnect(gen); err != nil {
			return err
		}
		m.mu.RLock()
		defer m.mu.RUnlock()
		if _, err := m.mod.ctx.GetSessionInfo(m.login); err != nil {
			return fmt.Errorf("%w: pkcs11: token %q: %v", hsm.ErrUnavailable, m.cfg.TokenLabel, err)
		}
	}
	return nil
}

// Close logs out, closes the sessions and releases the module.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.closeSessions()
	return m.mod.release()
}

// closeSessions closes this Manager's sessions (some may be gone already). Only its own:
// C_CloseAllSessions would also end the sessions, and with the last of them the login, of any
// other Manager on the token in this process. Called with mu held for writing, so every pooled
// session is back in the pool. Errors are ignored: a session that is gone already (the token
// was reset, which is why sessions are being replaced) cannot be closed, and nothing else can
// be done about one that will not close.
func (m *Manager) closeSessions() {
	for len(m.pool) > 0 {
		_ = m.mod.ctx.CloseSession(<-m.pool)
	}
	_ = m.mod.ctx.CloseSession(m.login)
}

// CreateKey generates a key pair on the token and its metadata object.
func (m *Manager) CreateKey(ctx context.Context, spec hsm.KeySpec) (hsm.KeyInfo, error) {
	if err := spec.Validate(); err != nil {
		return hsm.KeyInfo{}, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return hsm.KeyInfo{}, err
	}
	md := meta{Algorithm: spec.Algorithm, Purpose: spec.Purpose, Owner: spec.Owner,
		Created: time.Now().UTC().Truncate(time.Second), State: hsm.StateActive, ID: id}
	err := m.do(func(s p11.SessionHandle, _ uint64) error {
		if _, _, err := m.findMeta(s, spec.Label); err == nil {
			return fmt.Errorf("%w: %s", hsm.ErrConflict, m.uri(spec.Label))
		} else if !errors.Is(err, hsm.ErrNotFound) {
			return err
		}
		pubT, privT, mech, err := keyTemplates(spec.Algorithm, spec.Label, id)
		if err != nil {
			return err
		}
		pub, priv, err := m.mod.ctx.GenerateKeyPair(s, mech, pubT, privT)
		if err != nil {
			return err
		}
		if err := m.writeMeta(s, spec.Label, md); err != nil {
			// No key without its metadata: remove the pair again.
			for _, o := range []p11.ObjectHandle{priv, pub} {
				if derr := m.mod.ctx.DestroyObject(s, o); derr != nil {
					m.log.Warn("pkcs11: a key pair without metadata is left on the token", "token", m.cfg.TokenLabel,
						"label", spec.Label, "error", derr)
				}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return hsm.KeyInfo{}, m.wrap("create key "+spec.Label, err)
	}
	return m.info(spec.Label, md), nil
}

func (m *Manager) uri(label string) string { return formatURI(m.cfg.TokenLabel, label) }

func (m *Manager) info(label string, md meta) hsm.KeyInfo {
	return hsm.KeyInfo{URI: m.uri(label), Label: label, Algorithm: md.Algorithm, Purpose: md.Purpose,
		Owner: md.Owner, Created: md.Created, State: md.State}
}

// wrap keeps the key layer's sentinels and names everything else as a token failure.
func (m *Manager) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{hsm.ErrNotFound, hsm.ErrConflict, hsm.ErrInvalid, hsm.ErrWrongPurpose,
		hsm.ErrKeyNotActive, hsm.ErrUnavailable, hsm.ErrLogin, hsm.ErrClosed, hsm.ErrUnsupportedOp} {
		if errors.Is(err, s) {
			return err
		}
	}
	if reconnectable(err) {
		return fmt.Errorf("%w: pkcs11: %s: %v", hsm.ErrUnavailable, op, err)
	}
	return fmt.Errorf("pkcs11: %s: %w", op, err)
}

// findMeta finds the metadata objects of label and returns the newest. A state change writes
// a new object before it deletes the old one (SoftHSM2 keeps a data object's CKA_VALUE read-only),
// so after a crash two may exist; states only move forward, so the furthest one is current.
func (m *Manager) findMeta(s p11.SessionHandle, label string) ([]p11.ObjectHandle, meta, error) {
	objs, err := m.find(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_APPLICATION, application),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}, 16)
	if err != nil {
		return nil, meta{}, err
	}
	if len(objs) == 0 {
		return nil, meta{}, fmt.Errorf("%w: %s", hsm.ErrNotFound, m.uri(label))
	}
	var best meta
	for i, o := range objs {
		md, err := m.readMeta(s, o)
		if err != nil {
			return nil, meta{}, err
		}
		if i == 0 || stateRank[md.State] > stateRank[best.State] {
			best = md
		}
	}
	return objs, best, nil
}

var stateRank = map[hsm.State]int{hsm.StateActive: 0, hsm.StateRetired: 1, hsm.StateDestroyed: 2}

// writeMeta stores md as a new metadata object of label.
func (m *Manager) writeMeta(s p11.SessionHandle, label string, md meta) error {
	value, _ := json.Marshal(md)
	_, err := m.mod.ctx.CreateObject(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_APPLICATION, application),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_VALUE, value),
	})
	return err
}

func (m *Manager) readMeta(s p11.SessionHandle, h p11.ObjectHandle) (meta, error) {
	attrs, err := m.mod.ctx.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	if err != nil {
		return meta{}, err
	}
	var md meta
	if err := json.Unmarshal(attrs[0].Value, &md); err != nil {
		return meta{}, fmt.Errorf("%w: pkcs11: unreadable key metadata: %v", hsm.ErrKeystore, err)
	}
	return md, nil
}

func (m *Manager) find(s p11.SessionHandle, tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	c := m.mod.ctx
	if err := c.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	objs, _, err := c.FindObjects(s, max)
	if ferr := c.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	return objs, err
}

// findKey finds the private (or public) key object with the given CKA_ID.
func (m *Manager) findKey(s p11.SessionHandle, class uint, id []byte) (p11.ObjectHandle, error) {
	objs, err := m.find(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class), p11.NewAttribute(p11.CKA_ID, id)}, 2)
	if err != nil {
		return 0, err
	}
	if len(objs) == 0 {
		return 0, hsm.ErrNotFound
	}
	return objs[0], nil
}

// load returns the cached entry of label for the current generation, reading the token if
// needed. Called on a pooled session.
func (m *Manager) load(s p11.SessionHandle, label string, gen uint64) (*entry, error) {
	m.cacheMu.RLock()
	e, ok := m.keys[label]
	m.cacheMu.RUnlock()
	if ok && e.gen == gen {
		return e, nil
	}
	_, md, err := m.findMeta(s, label)
	if err != nil {
		return nil, err
	}
	e = &entry{gen: gen, meta: md}
	if md.State != hsm.StateDestroyed {
		if e.priv, err = m.findKey(s, p11.CKO_PRIVATE_KEY, md.ID); err != nil {
			return nil, fmt.Errorf("%w: private key of %s missing on the token", hsm.ErrKeystore, m.uri(label))
		}
		pubH, err := m.findKey(s, p11.CKO_PUBLIC_KEY, md.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: public key of %s missing on the token", hsm.ErrKeystore, m.uri(label))
		}
		if e.pub, err = m.publicKey(s, pubH, md.Algorithm); err != nil {
			return nil, err
		}
	}
	m.cacheMu.Lock()
	m.keys[label] = e
	m.cacheMu.Unlock()
	return e, nil
}

// entryFor resolves a URI to its cached entry.
func (m *Manager) entryFor(uri string) (*entry, string, error) {
	label, err := parseURI(uri, m.cfg.TokenLabel)
	if err != nil {
		return nil, "", err
	}
	var e *entry
	err = m.do(func(s p11.SessionHandle, gen uint64) error {
		var err error
		e, err = m.load(s, label, gen)
		return err
	})
	return e, label, m.wrap("key "+uri, err)
}

// Key returns the metadata of one key.
func (m *Manager) Key(ctx context.Context, uri string) (hsm.KeyInfo, error) {
	e, label, err := m.entryFor(uri)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return m.info(label, e.meta), nil
}

// Keys lists every key of the token that has Vula metadata.
func (m *Manager) Keys(ctx context.Context) ([]hsm.KeyInfo, error) {
	var out []hsm.KeyInfo
	err := m.do(func(s p11.SessionHandle, _ uint64) error {
		out = out[:0]
		byLabel := map[string]meta{}
		objs, err := m.find(s, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA),
			p11.NewAttribute(p11.CKA_APPLICATION, application),
		}, 100000)
		if err != nil {
			return err
		}
		for _, o := range objs {
			attrs, err := m.mod.ctx.GetAttributeValue(s, o, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil)})
			if err != nil {
				return err
			}
			md, err := m.readMeta(s, o)
			if err != nil {
				return err
			}
			label := string(attrs[0].Value)
			if prev, ok := byLabel[label]; !ok || stateRank[md.State] > stateRank[prev.State] {
				byLabel[label] = md
			}
		}
		for label, md := range byLabel {
			out = append(out, m.info(label, md))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out, m.wrap("list keys", err)
}

// PublicKey returns the public key of an active or retired key.
func (m *Manager) PublicKey(ctx context.Context, uri string) (crypto.PublicKey, error) {
	e, _, err := m.entryFor(uri)
	if err != nil {
		return nil, err
	}
	if e.pub == nil {
		return nil, fmt.Errorf("%w: %s is destroyed", hsm.ErrKeyNotActive, uri)
	}
	return e.pub, nil
}

// Signer returns a signer for an active key of the given purpose.
func (m *Manager) Signer(ctx context.Context, uri string, purpose hsm.Purpose) (crypto.Signer, error) {
	e, label, err := m.entryFor(uri)
	if err != nil {
		return nil, err
	}
	if err := m.info(label, e.meta).Usable(purpose); err != nil {
		return nil, err
	}
	return &signer{m: m, label: label, uri: uri, alg: e.meta.Algorithm, pub: e.pub}, nil
}

// Retire marks a key retired: it signs no more.
func (m *Manager) Retire(ctx context.Context, uri string) error {
	return m.setState(uri, hsm.StateRetired, false)
}

// Destroy deletes the key pair from the token and keeps its metadata as destroyed.
func (m *Manager) Destroy(ctx context.Context, uri string) error {
	return m.setState(uri, hsm.StateDestroyed, true)
}

func (m *Manager) setState(uri string, state hsm.State, destroy bool) error {
	label, err := parseURI(uri, m.cfg.TokenLabel)
	if err != nil {
		return err
	}
	err = m.do(func(s p11.SessionHandle, _ uint64) error {
		old, md, err := m.findMeta(s, label)
		if err != nil {
			return err
		}
		if md.State == hsm.StateDestroyed {
			return fmt.Errorf("%w: %s is destroyed", hsm.ErrKeyNotActive, uri)
		}
		md.State = state
		if err := m.writeMeta(s, label, md); err != nil {
			return err
		}
		for _, o := range old {
			_ = m.mod.ctx.DestroyObject(s, o) // a leftover is harmless: the newest state wins
		}
		if destroy {
			for _, class := range []uint{p11.CKO_PRIVATE_KEY, p11.CKO_PUBLIC_KEY} {
				if o, err := m.findKey(s, class, md.ID); err == nil {
					if err := m.mod.ctx.DestroyObject(s, o); err != nil {
						return err
					}
				}
			}
		}
		m.cacheMu.Lock()
		delete(m.keys, label)
		m.cacheMu.Unlock()
		return nil
	})
	return m.wrap(string(state)+" "+uri, err)
}
