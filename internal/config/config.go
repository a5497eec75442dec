// Package config loads and validates Vula's configuration.
//
// Sources, later ones winning: built-in defaults, a YAML file, VULA_* environment variables, flags.
// The environment name of a field is its YAML path upper-cased with dots as underscores
// (hsm.pkcs11.pool_size -> VULA_HSM_PKCS11_POOL_SIZE). Secrets are never inline: a PIN or a
// passphrase is named by a file path or an environment variable, and read only by Secret.
package config

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of a vula process.
type Config struct {
	// Listen is the address of the one HTTP listener.
	Listen string `yaml:"listen" json:"listen"`
	// DataDir holds the embedded default's state (SQLite file, software keystore).
	DataDir string `yaml:"data_dir" json:"data_dir"`
	// BaseURL is the public URL relying parties and certificates point at; default http://<listen>
	// (https:// with http.tls).
	BaseURL string `yaml:"base_url" json:"base_url"`
	// Dev relaxes what only makes sense behind TLS (Secure cookies); never in production.
	Dev bool `yaml:"dev" json:"dev"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	// DrainDelay is how long, on SIGTERM, /readyz answers 503 while requests are still served,
	// so that a load balancer takes the replica out before its listener closes. Default 5s,
	// 0 in dev mode.
	DrainDelay Duration   `yaml:"drain_delay" json:"drain_delay"`
	Log        Log        `yaml:"log" json:"log"`
	HTTP       HTTP       `yaml:"http" json:"http"`
	HSM        HSM        `yaml:"hsm" json:"hsm"`
	Store      Store      `yaml:"store" json:"store"`
	Audit      Audit      `yaml:"audit" json:"audit"`
	PKI        PKI        `yaml:"pki" json:"pki"`
	TSA        TSA        `yaml:"tsa" json:"tsa"`
	IdP        IdP        `yaml:"idp" json:"idp"`
	Seal       Seal       `yaml:"seal" json:"seal"`
	CSC        CSC        `yaml:"csc" json:"csc"`
	Validation Validation `yaml:"validation" json:"validation"`
	Wallet     Wallet     `yaml:"wallet" json:"wallet"`

	// baseURLDerived is set when BaseURL was not configured but derived from Listen (and
	// pdsDerived when PKI.PDSURL was derived from BaseURL).
	baseURLDerived, pdsDerived bool
}

// HTTP configures the listener's defences for anonymous clients.
type HTTP struct {
	// TrustedProxies (addresses or CIDR prefixes) are the peers whose X-Forwarded-For names the
	// client and whose X-Request-ID is kept; from anyone else both are ignored.
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// PerClient bounds the requests one client address has in flight on each anonymous
	// endpoint (validation, TSA, OCSP); beyond it the client gets 429.
	PerClient int `yaml:"per_client" json:"per_client"`
	// MinUploadRate (bytes/s) is the slowest an upload may arrive, on average after a few seconds'
	// grace; a slower one is cut off (408).
	MinUploadRate int64 `yaml:"min_upload_rate" json:"min_upload_rate"`
	// MaxUploads bounds the request bodies being received at once for validation.
	MaxUploads int `yaml:"max_uploads" json:"max_uploads"`
	// SpoolDir holds request bodies while they are handled; emptied at start. Default
	// <data_dir>/spool.
	SpoolDir string `yaml:"spool_dir" json:"spool_dir"`
	// TLS, when set, makes the listener terminate TLS itself; otherwise it speaks plain HTTP
	// (behind a reverse proxy, or in dev mode).
	TLS TLS `yaml:"tls" json:"tls"`
}

// TLS names the listener's certificate and key: PEM files, reloaded when they change on disk.
type TLS struct {
	// CertFile is the certificate chain, the server's certificate first.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	// KeyFile is its private key (PKCS#1, PKCS#8 or SEC 1 PEM); readable by the vula user only.
	KeyFile string `yaml:"key_file" json:"key_file"`
}

// Proxies parses TrustedProxies (Validate checked them).
func (h HTTP) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range h.TrustedProxies {
		p, _ := parsePrefix(strings.TrimSpace(s))
		out = append(out, p)
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// BaseURLDerived reports whether base_url was derived from listen rather than configured.
func (c Config) BaseURLDerived() bool { return c.baseURLDerived }

// WithServedBaseURL returns c with base_url u, and the PDS URL derived from it, when c's own
// base_url was derived from listen: a command run beside a server then writes the URLs that
// server publishes into certificates, not its own default listen address. A configured base_url
// is kept.
func (c Config) WithServedBaseURL(u string) Config {
	if !c.baseURLDerived || u == "" {
		return c
	}
	c.BaseURL = u
	if c.pdsDerived {
		c.PKI.PDSURL = strings.TrimRight(u, "/") + "/pki/pds/en"
	}
	return c
}

// CSC configures the officials' signing service.
type CSC struct {
	// LoginMaxAge is how old the session login the signing portal signs with may be; past it
	// the official logs in again. At most 1h (csc.MaxLoginMaxAge).
	LoginMaxAge Duration `yaml:"login_max_age" json:"login_max_age"`
}

// Validation configures the validation of signed documents (POST /api/v1/validate, vula verify).
type Validation struct {
	// RevocationFreshness is the most the revocation data on a certificate may predate the
	// best-signature-time of what it signed (EN 319 102-1 §5.2.5): older data is not fresh
	// and gives INDETERMINATE/TRY_LATER unless fresher data is fetched. 0 turns the check off.
	RevocationFreshness Duration `yaml:"revocation_freshness" json:"revocation_freshness"`
	// Trusted lists are read from files at start; nothing is downloaded.
	// TrustedLists are ETSI TS 119 612 trusted lists (XML files): the certificates of their
	// services in a positive status become trust anchors, and they decide whether a signature
	// is qualified. Each must verify with TrustedListSigners or, with LOTL, with the
	// certificates the LOTL's pointer for its territory names.
	TrustedLists []string `yaml:"trusted_lists" json:"trusted_lists"`
	// TrustedListSigners is a PEM file of the certificates the TrustedLists may be signed with.
	TrustedListSigners string `yaml:"trusted_list_signers" json:"trusted_list_signers"`
	// LOTL is the EU list of trusted lists (an XML file), LOTLSigners a PEM file of the
	// certificates it may be signed with (those the Official Journal of the EU publishes).
	LOTL        string `yaml:"lotl" json:"lotl"`
	LOTLSigners string `yaml:"lotl_signers" json:"lotl_signers"`
}

// Seal configures the sealing service for institutions.
type Seal struct {
	// Algorithm of new seal keys (EC-P256, EC-P384, RSA-3072, RSA-4096).
	Algorithm string `yaml:"algorithm" json:"algorithm"`
	// Years of validity of seal certificates.
	Years int `yaml:"years" json:"years"`
	// MaxSize bounds a document, in bytes; larger ones get 413.
	MaxSize int64 `yaml:"max_size" json:"max_size"`
	// Agency is the organization (an id given to vula orgs create) whose seal seals what the
	// platform issues itself: the eID activation letters, at PAdES B-LT. Its name is the
	// letters' sender. Empty: no letter can be printed.
	Agency string `yaml:"agency" json:"agency"`
}

// Wallet configures the digital-wallet services: the PID issuer (OpenID4VCI) and its status lists.
type Wallet struct {
	// Authority is the issuing authority named in every PID; pki.organization when empty.
	Authority string `yaml:"authority" json:"authority"`
	// Validity of a PID.
	Validity Duration `yaml:"validity" json:"validity"`
	// BatchSize is the most PIDs (one key each) a wallet may ask for in one request.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// LoA is the level of assurance a login needs to receive a PID (low, substantial or high).
	// The PID rulebook asks for high; substantial until identity proofing records high.
	LoA string `yaml:"loa" json:"loa"`
	// StatusTTL is how long verifiers may cache a status list.
	StatusTTL Duration `yaml:"status_ttl" json:"status_ttl"`
	// Verifier configures the OpenID4VP verifier for relying parties.
	Verifier Verifier `yaml:"verifier" json:"verifier"`
}

// Verifier configures the OpenID4VP verifier for relying parties.
type Verifier struct {
	// TrustAnchors are PEM files of the CA certificates whose credentials (and status lists)
	// the verifier trusts, besides Vula's own PID issuer, which is always trusted (under
	// seal-ca, its certificate only, not the organizations' seals). Read at start, never
	// fetched. Naming seal-ca here trusts every certificate under it again: do not.
	TrustAnchors []string `yaml:"trust_anchors" json:"trust_anchors"`
}

// IdP configures the OpenID Connect provider.
type IdP struct {
	// Algorithm signs ID and access tokens: ES256 (default) or PS256.
	Algorithm       string   `yaml:"algorithm" json:"algorithm"`
	AccessTokenTTL  Duration `yaml:"access_token_ttl" json:"access_token_ttl"`
	IDTokenTTL      Duration `yaml:"id_token_ttl" json:"id_token_ttl"`
	RefreshTokenTTL Duration `yaml:"refresh_token_ttl" json:"refresh_token_ttl"`
	// LoginFlowsPerMinute bounds the logins one client address (an IPv6 /64) may start at the
	// authorization endpoint in a minute: each is kept for 15 minutes before a login, so an
	// anonymous client would otherwise grow the ephemeral store without bound. Default 120;
	// past it 429 with Retry-After.
	LoginFlowsPerMinute int `yaml:"login_flows_per_minute" json:"login_flows_per_minute"`
	// SeedKeyFile holds the 32-byte key that seals TOTP seeds in the database; every replica
	// needs the same file. Default <data_dir>/totp-seal.key, made on first start.
	SeedKeyFile string `yaml:"seed_key_file" json:"seed_key_file"`
	// Demo makes a demo relying party and citizen on first start (default: in dev mode).
	Demo *bool `yaml:"demo" json:"demo"`
	// PasskeyTrustRoots are PEM files of attestation roots: a device-bound passkey whose
	// attestation chains to one of them counts as LoA high; any other passkey as substantial.
	// Read at start, never fetched.
	PasskeyTrustRoots []string `yaml:"passkey_trust_roots" json:"passkey_trust_roots"`
	// PasskeyMDS3File is a FIDO Metadata Service v3 BLOB (the JWS file as the FIDO Alliance
	// publishes it), read at start, never fetched: a device-bound passkey of a model it lists,
	// not compromised or revoked, whose attestation chains to the model's attestation roots
	// counts as high. Out of date (past its nextUpdate): a warning, and it vouches for nothing.
	PasskeyMDS3File string `yaml:"passkey_mds3_file" json:"passkey_mds3_file"`
	// PasskeyMDS3Root is a PEM file of the roots the BLOB's signing chain must reach (for the
	// FIDO Alliance's BLOB, GlobalSign Root CA - R3). Required with PasskeyMDS3File.
	PasskeyMDS3Root string `yaml:"passkey_mds3_root" json:"passkey_mds3_root"`
	// Card is the ID card login (a TLS client certificate); off unless Listen is set.
	Card Card `yaml:"card" json:"card"`
}

// Card configures the ID card login's own TLS listener, which asks browsers for a client
// certificate.
type Card struct {
	// Listen (host:port) is the card listener; empty: no card login.
	Listen string `yaml:"listen" json:"listen"`
	// URL is the listener's origin as browsers reach it. Default https://<listen>.
	URL string `yaml:"url" json:"url"`
	// CertFile and KeyFile (PEM) are the listener's TLS certificate and key.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// ClientCAs are PEM files of the card-issuer CAs a card's certificate must chain to.
	ClientCAs []string `yaml:"client_cas" json:"client_cas"`
	// CRLFiles are CRLs (PEM or DER) of card issuers; a card whose issuer has none here is
	// checked by OCSP at its certificate's AIA.
	CRLFiles []string `yaml:"crl_files" json:"crl_files"`
	// SerialPrefix is taken off the certificate's subject serialNumber to give the personal
	// number (such as "PNOXK-", ETSI EN 319 412-1); empty: the serialNumber is the number.
	SerialPrefix string `yaml:"serial_prefix" json:"serial_prefix"`
	// OCSPTimeout bounds an OCSP request (default 5s); a responder that does not answer in
	// time makes the login 503, never a pass.
	OCSPTimeout Duration `yaml:"ocsp_timeout" json:"ocsp_timeout"`
}

// TSA configures the timestamp authority (RFC 3161, EN 319 422).
type TSA struct {
	// PolicyOID is the one TSA policy tokens are issued under (dotted form).
	PolicyOID string `yaml:"policy_oid" json:"policy_oid"`
	// Accuracy is written into every token.
	Accuracy Duration `yaml:"accuracy" json:"accuracy"`
	// Qualified adds the ETSI qualified-timestamp statement.
	Qualified bool `yaml:"qualified" json:"qualified"`
	// RequireSync refuses tokens (timeNotAvailable) while the kernel clock is not synchronised.
	// Always on outside dev mode.
	RequireSync bool `yaml:"require_sync" json:"require_sync"`
	// NTPServers (host or host:port) the clock is compared with, every NTPInterval; while none
	// answers, or one differs by more than NTPMaxOffset, tokens are refused (timeNotAvailable)
	// and the service is not ready. Empty: no comparison, the kernel's word is taken.
	NTPServers   []string `yaml:"ntp_servers" json:"ntp_servers"`
	NTPMaxOffset Duration `yaml:"ntp_max_offset" json:"ntp_max_offset"`
	NTPInterval  Duration `yaml:"ntp_interval" json:"ntp_interval"`
}

// PKI configures the CA hierarchy made on first start.
type PKI struct {
	// Country is the ISO 3166 code in every subject and in PNO/NTR identifiers.
	Country string `yaml:"country" json:"country"`
	// Organization names the trust service provider in the CA subjects.
	Organization string `yaml:"organization" json:"organization"`
	// PolicyOIDs are written into certificatePolicies (dotted form).
	PolicyOIDs []string `yaml:"policy_oids" json:"policy_oids"`
	// PDSURL is the English PKI disclosure statement (QcPDS).
	PDSURL string `yaml:"pds_url" json:"pds_url"`
	// CAAlgorithm is the key type of the root and issuing CAs (EC-P256, EC-P384, RSA-3072, RSA-4096).
	CAAlgorithm string `yaml:"ca_algorithm" json:"ca_algorithm"`
	// ServiceAlgorithm is the key type of the OCSP responders and the timestamping unit.
	ServiceAlgorithm string `yaml:"service_algorithm" json:"service_algorithm"`
	// RootYears, CAYears and ServiceYears are the certificates' lifetimes.
	RootYears    int `yaml:"root_years" json:"root_years"`
	CAYears      int `yaml:"ca_years" json:"ca_years"`
	ServiceYears int `yaml:"service_years" json:"service_years"`
	// TrustedListPeriod is how long an issue of the platform's trusted list (ETSI TS 119 612,
	// served at /pki/tsl.xml) holds: its NextUpdate; a new issue is signed halfway.
	TrustedListPeriod Duration `yaml:"trusted_list_period" json:"trusted_list_period"`
}

// Audit configures the audit log's signed checkpoints and group commits.
type Audit struct {
	// CheckpointEvery signs a checkpoint after this many records.
	CheckpointEvery int64 `yaml:"checkpoint_every" json:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint this often when records were written.
	CheckpointInterval Duration `yaml:"checkpoint_interval" json:"checkpoint_interval"`
	// GroupCommitLinger is how long the writer of an audit group commit waits for more records
	// when others are already queued (0: never); an append with none queued never waits.
	GroupCommitLinger Duration `yaml:"group_commit_linger" json:"group_commit_linger"`
}

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" json:"level"`
	// Format is json or text.
	Format string `yaml:"format" json:"format"`
}

// HSM configures the key layer.
type HSM struct {
	// Backend is software (the embedded default) or pkcs11.
	Backend  string   `yaml:"backend" json:"backend"`
	Software Software `yaml:"software" json:"software"`
	PKCS11   PKCS11   `yaml:"pkcs11" json:"pkcs11"`
}

// Software configures the software key backend.
type Software struct {
	// Dir is the keystore directory; default <data_dir>/keys.
	Dir string `yaml:"dir" json:"dir"`
	// PassphraseEnv names an environment variable holding the keystore passphrase.
	PassphraseEnv string `yaml:"passphrase_env" json:"passphrase_env"`
	// PassphraseFile names a file holding the keystore passphrase.
	PassphraseFile string `yaml:"passphrase_file" json:"passphrase_file"`
	// KeyFile holds a 32-byte master key, used when no passphrase is configured; default
	// <data_dir>/keystore.key, created on first start.
	KeyFile string `yaml:"key_file" json:"key_file"`
}

// PKCS11 configures the PKCS#11 key backend.
type PKCS11 struct {
	// Module is the path of the PKCS#11 library.
	Module string `yaml:"module" json:"module"`
	// TokenLabel selects the token.
	TokenLabel string `yaml:"token_label" json:"token_label"`
	// PINFile names a file holding the user PIN.
	PINFile string `yaml:"pin_file" json:"pin_file"`
	// PINEnv names an environment variable holding the user PIN.
	PINEnv string `yaml:"pin_env" json:"pin_env"`
	// PoolSize is the number of working sessions; 0 picks a default from the CPU count.
	PoolSize int `yaml:"pool_size" json:"pool_size"`
}

// Store configures durable and ephemeral state.
type Store struct {
	// Durable is sqlite:<path> (default sqlite:<data_dir>/vula.db) or postgres://...
	Durable string `yaml:"durable" json:"durable"`
	// Ephemeral is sqlite:<path> (default sqlite:<data_dir>/ephemeral.db: sessions, codes and
	// tokens survive a restart of the one process), memory (lost on restart), or Redis for
	// replicas: redis://, rediss://, redis+sentinel://, redis+cluster:// (rediss+ for TLS).
	Ephemeral string `yaml:"ephemeral" json:"ephemeral"`
	// DurablePool is the number of PostgreSQL connections kept (open and idle alike); 0 is
	// sqlstore.DefaultPool. SQLite ignores it.
	DurablePool int `yaml:"durable_pool" json:"durable_pool"`
}

// Duration is a time.Duration written as "15s" in YAML and the environment.
type Duration time.Duration

// UnmarshalYAML parses "15s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes "15s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalText writes "15s" (JSON output).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default is the embedded default: one process, SQLite for both stores, software keys, under ./var.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		DataDir:         "./var",
		Dev:             true,
		ShutdownTimeout: Duration(15 * time.Second),
		DrainDelay:      -1, // chosen by fillDerived from dev
		Log:             Log{Level: "info", Format: "json"},
		HTTP:            HTTP{PerClient: 4, MinUploadRate: 32 << 10, MaxUploads: 64},
		HSM:             HSM{Backend: "software"},
		Audit:           Audit{CheckpointEvery: 1000, CheckpointInterval: Duration(time.Minute), GroupCommitLinger: Duration(time.Millisecond)},
		// A demo policy arc under the private-enterprise number reserved for documentation.
		PKI: PKI{Country: "XK", Organization: "Vula Demo", PolicyOIDs: []string{"1.3.6.1.4.1.32473.1.1"},
			CAAlgorithm: "EC-P384", ServiceAlgorithm: "EC-P256", RootYears: 20, CAYears: 10, ServiceYears: 2,
			TrustedListPeriod: Duration(7 * 24 * time.Hour)},
		TSA: TSA{PolicyOID: "1.3.6.1.4.1.32473.1.2", Accuracy: Duration(time.Second),
			NTPMaxOffset: Duration(500 * time.Millisecond), NTPInterval: Duration(time.Minute)},
		IdP: IdP{Algorithm: "ES256", AccessTokenTTL: Duration(10 * time.Minute), IDTokenTTL: Duration(10 * time.Minute),
			RefreshTokenTTL: Duration(8 * time.Hour), LoginFlowsPerMinute: 120},
		Seal: Seal{Algorithm: "EC-P256", Years: 3, MaxSize: 256 << 20},
		CSC:  CSC{LoginMaxAge: Duration(15 * time.Minute)},
		// A day: OCSP answers and CRLs fetched when a seal is made are minutes old.
		Validation: Validation{RevocationFreshness: Duration(24 * time.Hour)},
		Wallet: Wallet{Validity: Duration(365 * 24 * time.Hour), BatchSize: 10, LoA: "substantial",
			StatusTTL: Duration(5 * time.Minute)},
	}
}

// FieldError names the field that is wrong by its YAML path.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Overrides are the values given as flags; empty means not given.
type Overrides struct {
	DataDir string
	Listen  string
}

// Load builds the configuration: defaults, the YAML file at path (if path is not empty), the
// VULA_* variables of environ, then the overrides. Derived defaults (paths under data_dir) are
// filled last, so that a data_dir from any source moves them.
func Load(path string, environ []string, o Overrides) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	if o.DataDir != "" {
		cfg.DataDir = o.DataDir
	}
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	cfg.fillDerived()
	return cfg, nil
}

func decodeYAML(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // an unknown or misspelt field is an error, not silence
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (c *Config) fillDerived() {
	if c.BaseURL == "" {
		c.BaseURL = "http://" + c.Listen
		if c.HTTP.TLS.CertFile != "" {
			c.BaseURL = "https://" + c.Listen
		}
		c.baseURLDerived = true
	}
	if c.HSM.Software.Dir == "" {
		c.HSM.Software.Dir = filepath.Join(c.DataDir, "keys")
	}
	if c.HSM.Software.KeyFile == "" && c.HSM.Software.PassphraseEnv == "" && c.HSM.Software.PassphraseFile == "" {
		c.HSM.Software.KeyFile = filepath.Join(c.DataDir, "keystore.key")
	}
	if c.Store.Durable == "" {
		c.Store.Durable = "sqlite:" + filepath.Join(c.DataDir, "vula.db")
	}
	if c.Store.Ephemeral == "" {
		c.Store.Ephemeral = "sqlite:" + filepath.Join(c.DataDir, "ephemeral.db")
	}
	if c.PKI.PDSURL == "" {
		c.PKI.PDSURL = strings.TrimRight(c.BaseURL, "/") + "/pki/pds/en"
		c.pdsDerived = true
	}
	if c.HTTP.SpoolDir == "" {
		c.HTTP.SpoolDir = filepath.Join(c.DataDir, "spool")
	}
	if c.DrainDelay < 0 {
		c.DrainDelay = Duration(5 * time.Second)
		if c.Dev {
			c.DrainDelay = 0
		}
	}
	if c.IdP.SeedKeyFile == "" {
		c.IdP.SeedKeyFile = filepath.Join(c.DataDir, "totp-seal.key")
	}
	if c.IdP.Card.Listen != "" && c.IdP.Card.URL == "" {
		c.IdP.Card.URL = "https://" + c.IdP.Card.Listen
	}
	if c.IdP.Card.OCSPTimeout == 0 {
		c.IdP.Card.OCSPTimeout = Duration(5 * time.Second)
	}
	if c.IdP.Demo == nil {
		demo := c.Dev
		c.IdP.Demo = &demo
	}
}

// applyEnv walks the YAML tree of cfg and sets every leaf whose VULA_* variable is present.
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "VULA_") {
			env[k] = v
		}
	}
	var walk func(v reflect.Value, path string) error
	walk = func(v reflect.Value, path string) error {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			p := tag
			if path != "" {
				p = path + "." + tag
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				if err := walk(f, p); err != nil {
					return err
				}
				continue
			}
			name := "VULA_" + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
			s, ok := env[name]
			if !ok {
				continue
			}
			if err := setString(f, s); err != nil {
				return &FieldError{Field: p, Err: fmt.Errorf("from %s: %w", name, err)}
			}
		}
		return nil
	}
	return walk(reflect.ValueOf(cfg).Elem(), "")
}

func setString(f reflect.Value, s string) error {
	switch f.Interface().(type) {
	case Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(Duration(d)))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", s)
		}
		f.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not true or false: %q", s)
		}
		f.SetBool(b)
	case reflect.Pointer:
		if f.Type().Elem().Kind() != reflect.Bool {
			return fmt.Errorf("cannot be set from the environment")
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not true or false: %q", s)
		}
		f.Set(reflect.ValueOf(&b))
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot be set from the environment")
		}
		var items []string // comma-separated; empty means none
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// Validate checks every field and names the first bad one by its YAML path.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen", "want host:port: %v", err)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("base_url", "want an http or https URL, got %q", c.BaseURL)
	}
	if c.ShutdownTimeout <= 0 {
		return bad("shutdown_timeout", "must be positive")
	}
	// TS 119 612 §5.3.14: at most six months between a list's issue and its next update.
	if c.PKI.TrustedListPeriod < Duration(time.Hour) || c.PKI.TrustedListPeriod > Duration(183*24*time.Hour) {
		return bad("pki.trusted_list_period", "want between 1h and 183 days (TS 119 612 §5.3.14)")
	}
	if c.Validation.LOTL != "" && c.Validation.LOTLSigners == "" {
		return bad("validation.lotl_signers", "a LOTL needs the certificates it is signed with")
	}
	if len(c.Validation.TrustedLists) > 0 && c.Validation.TrustedListSigners == "" && c.Validation.LOTL == "" {
		return bad("validation.trusted_list_signers", "trusted lists need their signers' certificates, or a LOTL that points at them")
	}
	if c.DrainDelay < 0 || c.DrainDelay > Duration(5*time.Minute) {
		return bad("drain_delay", "want between 0s and 5m")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return bad("log.format", "want json or text, got %q", c.Log.Format)
	}
	for _, p := range c.HTTP.TrustedProxies {
		if _, err := parsePrefix(strings.TrimSpace(p)); err != nil {
			return bad("http.trusted_proxies", "want an IP address or CIDR prefix, got %q", p)
		}
	}
	if c.HTTP.PerClient < 1 {
		return bad("http.per_client", "must be >= 1")
	}
	if c.HTTP.MinUploadRate < 1 {
		return bad("http.min_upload_rate", "want a positive number of bytes per second")
	}
	if c.HTTP.MaxUploads < 1 {
		return bad("http.max_uploads", "must be >= 1")
	}
	if c.HTTP.SpoolDir == "" {
		return bad("http.spool_dir", "must not be empty")
	}
	if (c.HTTP.TLS.CertFile == "") != (c.HTTP.TLS.KeyFile == "") {
		return bad("http.tls", "set both cert_file and key_file, or neither")
	}
	switch c.HSM.Backend {
	case "software":
		s := c.HSM.Software
		if s.Dir == "" {
			return bad("hsm.software.dir", "must not be empty")
		}
		n := 0
		for _, v := range []string{s.PassphraseEnv, s.PassphraseFile, s.KeyFile} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return bad("hsm.software", "set exactly one of passphrase_env, passphrase_file, key_file")
		}
	case "pkcs11":
		p := c.HSM.PKCS11
		if p.Module == "" {
			return bad("hsm.pkcs11.module", "must name the PKCS#11 library")
		}
		if p.TokenLabel == "" {
			return bad("hsm.pkcs11.token_label", "must not be empty")
		}
		if (p.PINFile == "") == (p.PINEnv == "") {
			return bad("hsm.pkcs11", "set exactly one of pin_file, pin_env")
		}
		if p.PoolSize < 0 {
			return bad("hsm.pkcs11.pool_size", "must be >= 0")
		}
	default:
		return bad("hsm.backend", "want software or pkcs11, got %q", c.HSM.Backend)
	}
	if len(c.PKI.Country) != 2 || strings.ToUpper(c.PKI.Country) != c.PKI.Country {
		return bad("pki.country", "want a two-letter ISO 3166 code, got %q", c.PKI.Country)
	}
	if c.PKI.Organization == "" {
		return bad("pki.organization", "must not be empty")
	}
	for field, alg := range map[string]string{"pki.ca_algorithm": c.PKI.CAAlgorithm, "pki.service_algorithm": c.PKI.ServiceAlgorithm,
		"seal.algorithm": c.Seal.Algorithm} {
		switch alg {
		case "EC-P256", "EC-P384", "RSA-3072", "RSA-4096":
		default:
			return bad(field, "want EC-P256, EC-P384, RSA-3072 or RSA-4096, got %q", alg)
		}
	}
	if c.Seal.Years < 1 || c.Seal.Years > c.PKI.CAYears {
		return bad("seal.years", "want 1 to pki.ca_years (%d), got %d", c.PKI.CAYears, c.Seal.Years)
	}
	if c.Validation.RevocationFreshness < 0 {
		return bad("validation.revocation_freshness", "must not be negative")
	}
	if c.Seal.MaxSize < 1 {
		return bad("seal.max_size", "want a positive number of bytes, got %d", c.Seal.MaxSize)
	}
	if c.IdP.PasskeyMDS3File != "" && c.IdP.PasskeyMDS3Root == "" {
		return bad("idp.passkey_mds3_root", "must name the PEM file of the roots the MDS3 blob is signed under")
	}
	switch c.Wallet.LoA {
	case "low", "substantial", "high":
	default:
		return bad("wallet.loa", "want low, substantial or high, got %q", c.Wallet.LoA)
	}
	if c.Wallet.BatchSize < 1 || c.Wallet.BatchSize > 100 {
		return bad("wallet.batch_size", "want 1 to 100, got %d", c.Wallet.BatchSize)
	}
	if c.Wallet.Validity < Duration(time.Hour) || c.Wallet.StatusTTL < Duration(time.Second) {
		return bad("wallet", "validity must be at least 1h and status_ttl at least 1s")
	}
	// The login stands for the knowledge factor of sole control: an hour-old login no longer
	// shows the official is at the browser (the same bound as csc.MaxLoginMaxAge).
	if c.CSC.LoginMaxAge < Duration(time.Second) || c.CSC.LoginMaxAge > Duration(time.Hour) {
		return bad("csc.login_max_age", "want between 1s and 1h, got %v", time.Duration(c.CSC.LoginMaxAge))
	}
	if c.PKI.ServiceYears < 1 || c.PKI.CAYears < c.PKI.ServiceYears || c.PKI.RootYears < c.PKI.CAYears {
		return bad("pki", "lifetimes must satisfy 1 <= service_years <= ca_years <= root_years")
	}
	for _, o := range c.PKI.PolicyOIDs {
		if _, err := ParseOID(o); err != nil {
			return bad("pki.policy_oids", "%v", err)
		}
	}
	if _, err := ParseOID(c.TSA.PolicyOID); err != nil {
		return bad("tsa.policy_oid", "%v", err)
	}
	if c.TSA.Accuracy <= 0 || time.Duration(c.TSA.Accuracy) > time.Minute {
		return bad("tsa.accuracy", "want a positive duration of at most a minute")
	}
	// A token's time must be within its accuracy of UTC: the clock may stray less than that.
	if c.TSA.NTPMaxOffset <= 0 || c.TSA.NTPMaxOffset > c.TSA.Accuracy {
		return bad("tsa.ntp_max_offset", "want a positive duration no larger than tsa.accuracy (%v)", time.Duration(c.TSA.Accuracy))
	}
	if c.TSA.NTPInterval < Duration(time.Second) {
		return bad("tsa.ntp_interval", "want at least 1s")
	}
	for _, srv := range c.TSA.NTPServers {
		if strings.TrimSpace(srv) == "" || strings.ContainsAny(srv, " /") {
			return bad("tsa.ntp_servers", "want host or host:port, got %q", srv)
		}
	}
	if c.IdP.Algorithm != "ES256" && c.IdP.Algorithm != "PS256" {
		return bad("idp.algorithm", "want ES256 or PS256, got %q", c.IdP.Algorithm)
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{{"idp.access_token_ttl", c.IdP.AccessTokenTTL}, {"idp.id_token_ttl", c.IdP.IDTokenTTL}, {"idp.refresh_token_ttl", c.IdP.RefreshTokenTTL}} {
		if d.v < Duration(time.Minute) || d.v > Duration(90*24*time.Hour) {
			return bad(d.field, "want between 1m and 2160h")
		}
	}
	if c.IdP.LoginFlowsPerMinute < 1 || c.IdP.LoginFlowsPerMinute > 1_000_000 {
		return bad("idp.login_flows_per_minute", "want between 1 and 1000000, got %d", c.IdP.LoginFlowsPerMinute)
	}
	if card := c.IdP.Card; card.Listen != "" {
		if _, _, err := net.SplitHostPort(card.Listen); err != nil {
			return bad("idp.card.listen", "want host:port: %v", err)
		}
		if u, err := url.Parse(card.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			return bad("idp.card.url", "want an https URL, got %q", card.URL)
		}
		if card.CertFile == "" || card.KeyFile == "" {
			return bad("idp.card.cert_file", "the card listener needs a TLS certificate and key")
		}
		if len(card.ClientCAs) == 0 {
			return bad("idp.card.client_cas", "name at least one card-issuer CA file")
		}
		if card.OCSPTimeout <= 0 || card.OCSPTimeout > Duration(time.Minute) {
			return bad("idp.card.ocsp_timeout", "want between 0s and 1m")
		}
	}
	if c.Audit.CheckpointEvery < 1 {
		return bad("audit.checkpoint_every", "must be >= 1")
	}
	if c.Audit.CheckpointInterval <= 0 {
		return bad("audit.checkpoint_interval", "must be positive")
	}
	if c.Audit.GroupCommitLinger < 0 || c.Audit.GroupCommitLinger > Duration(10*time.Millisecond) {
		return bad("audit.group_commit_linger", "want between 0s and 10ms")
	}
	if !strings.HasPrefix(c.Store.Durable, "sqlite:") && !strings.HasPrefix(c.Store.Durable, "postgres://") &&
		!strings.HasPrefix(c.Store.Durable, "postgresql://") {
		return bad("store.durable", "want sqlite:<path> or postgres://...")
	}
	if c.Store.DurablePool < 0 || c.Store.DurablePool > 1000 {
		return bad("store.durable_pool", "want 0 (the default, 16) to 1000 connections")
	}
	if !validEphemeral(c.Store.Ephemeral) {
		return bad("store.ephemeral", "want sqlite:<path>, memory, or redis://, rediss://, redis+sentinel://, redis+cluster://...")
	}
	return nil
}

// validEphemeral reports whether s names an ephemeral store serve can open. The Redis schemes
// are those package rediskv parses.
func validEphemeral(s string) bool {
	if s == "memory" || (strings.HasPrefix(s, "sqlite:") && len(s) > len("sqlite:")) {
		return true
	}
	for _, p := range []string{"redis://", "rediss://", "redis+sentinel://", "rediss+sentinel://", "redis+cluster://", "rediss+cluster://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Secret reads a secret named by an environment variable or a file (one of them set); a trailing
// newline is dropped. The error names where it looked, never what it found.
func Secret(envName, file string, lookup func(string) (string, bool)) (string, error) {
	if envName != "" {
		v, ok := lookup(envName)
		if !ok || v == "" {
			return "", fmt.Errorf("config: environment variable %s is not set", envName)
		}
		return v, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("config: secret file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ParseOID parses a dotted object identifier such as 1.3.6.1.4.1.32473.1.1.
func ParseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("not an object identifier: %q", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("not an object identifier: %q", s)
		}
		oid[i] = n
	}
	return oid, nil
}
