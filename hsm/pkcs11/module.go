package pkcs11

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// module is a loaded and initialised PKCS#11 library.
type module struct {
	path string
	ctx  *p11.Ctx
	refs int
	// pins holds, per token label, the SHA-256 of the PIN that logged in. A login belongs to
	// the whole process, so a second Manager's C_Login answers CKR_USER_ALREADY_LOGGED_IN
	// whatever PIN it gives; comparing with this is how a wrong one is still refused.
	// Guarded by modules.
	pins map[string][32]byte
	// login serialises C_Login with noting its PIN, so that a second Manager never meets a
	// login whose PIN is not noted yet (it would take its right PIN for a wrong one).
	login sync.Mutex
}

// modules is the process's one owner of each PKCS#11 library. This is the one package-level
// variable of the key layer, and it has to be: C_Initialize and C_Finalize act on the whole
// process, so two Managers on one library must share the initialisation and only the last
// Close may finalise it.
var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: map[string]*module{}}

func loadModule(path string) (*module, error) {
	modules.Lock()
	defer modules.Unlock()
	if m, ok := modules.byPath[path]; ok {
		m.refs++
		return m, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: %w", path, err)
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("pkcs11: module %s could not be loaded (not a PKCS#11 library?)", path)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("pkcs11: module %s: C_Initialize: %w", path, err)
	}
	m := &module{path: path, ctx: ctx, refs: 1, pins: map[string][32]byte{}}
	modules.byPath[path] = m
	return m, nil
}

func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.byPath, m.path)
	err := m.ctx.Finalize()
	m.ctx.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11: finalize %s: %w", m.path, err)
	}
	return nil
}

// notePIN records the PIN that logged in to token.
func (m *module) notePIN(token, pin string) {
	modules.Lock()
	defer modules.Unlock()
	m.pins[token] = sha256.Sum256([]byte(pin))
}

// samePIN reports whether pin is the one that logged in to token; false when none is recorded
// (a login this process did not make cannot vouch for the PIN).
func (m *module) samePIN(token, pin string) bool {
	modules.Lock()
	defer modules.Unlock()
	want, ok := m.pins[token]
	got := sha256.Sum256([]byte(pin))
	return ok && subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

func isCode(err error, code uint) bool {
	e, ok := err.(p11.Error)
	return ok && uint(e) == code
}

// reconnectable reports whether err means the session or token went away, so that reopening
// the sessions and logging in again may cure it.
func reconnectable(err error) bool {
	e, ok := err.(p11.Error)
	if !ok {
		return false
	}
	switch uint(e) {
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_DEVICE_REMOVED, p11.CKR_DEVICE_ERROR,
		p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_CRYPTOKI_NOT_INITIALIZED,
		p11.CKR_TOKEN_NOT_RECOGNIZED, p11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}
