package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vula.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:9000\ndata_dir: /from/file\nhsm:\n  pkcs11:\n    pool_size: 3\nshutdown_timeout: 5s\n")
	for _, tc := range []struct {
		name       string
		env        []string
		o          Overrides
		listen     string
		dataDir    string
		pool       int
		shutdown   time.Duration
		durableSfx string
	}{
		{"file only", nil, Overrides{}, "127.0.0.1:9000", "/from/file", 3, 5 * time.Second, "/from/file/vula.db"},
		{"env beats file", []string{"VULA_LISTEN=127.0.0.1:9100", "VULA_HSM_PKCS11_POOL_SIZE=7", "VULA_SHUTDOWN_TIMEOUT=1m", "OTHER=x"},
			Overrides{}, "127.0.0.1:9100", "/from/file", 7, time.Minute, "/from/file/vula.db"},
		{"flag beats env", []string{"VULA_LISTEN=127.0.0.1:9100", "VULA_DATA_DIR=/from/env"},
			Overrides{Listen: "127.0.0.1:9200", DataDir: "/from/flag"}, "127.0.0.1:9200", "/from/flag", 3, 5 * time.Second, "/from/flag/vula.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(file, tc.env, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tc.listen || c.DataDir != tc.dataDir || c.HSM.PKCS11.PoolSize != tc.pool ||
				time.Duration(c.ShutdownTimeout) != tc.shutdown || !strings.HasSuffix(c.Store.Durable, tc.durableSfx) {
				t.Fatalf("got listen=%s data_dir=%s pool=%d shutdown=%v durable=%s", c.Listen, c.DataDir,
					c.HSM.PKCS11.PoolSize, time.Duration(c.ShutdownTimeout), c.Store.Durable)
			}
			if c.HSM.Software.KeyFile != filepath.Join(tc.dataDir, "keystore.key") {
				t.Errorf("key file %s not under data dir", c.HSM.Software.KeyFile)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestDefaultIsValid(t *testing.T) {
	c, err := Load("", nil, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./var" || c.Store.Ephemeral != "sqlite:var/ephemeral.db" ||
		c.Store.Durable != "sqlite:var/vula.db" || c.HSM.Backend != "software" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestStrictYAML(t *testing.T) {
	for name, body := range map[string]string{
		"unknown top field": "listen: 127.0.0.1:1\nlisten_addr: x\n",
		"inline pin":        "hsm:\n  pkcs11:\n    pin: \"1234\"\n",
		"bad duration":      "shutdown_timeout: soon\n",
		"wrong type":        "hsm:\n  pkcs11:\n    pool_size: many\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeFile(t, body), nil, Overrides{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "line") {
				t.Errorf("error does not say the line: %v", err)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, Overrides{}); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		yaml  string
		env   []string
		field string
	}{
		{"listen: nonsense\n", nil, "listen"},
		{"base_url: ftp://x\n", nil, "base_url"},
		{"log:\n  level: loud\n", nil, "log.level"},
		{"log:\n  format: xml\n", nil, "log.format"},
		{"hsm:\n  backend: tpm\n", nil, "hsm.backend"},
		{"hsm:\n  backend: pkcs11\n", nil, "hsm.pkcs11.module"},
		{"hsm:\n  backend: pkcs11\n  pkcs11:\n    module: /x.so\n", nil, "hsm.pkcs11.token_label"},
		{"hsm:\n  backend: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: t\n", nil, "hsm.pkcs11"},
		{"hsm:\n  backend: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: t\n    pin_env: P\n    pool_size: -1\n", nil, "hsm.pkcs11.pool_size"},
		{"hsm:\n  software:\n    passphrase_env: P\n    key_file: /k\n", nil, "hsm.software"},
		{"store:\n  durable: mysql://x\n", nil, "store.durable"},
		{"store:\n  ephemeral: memcached://x\n", nil, "store.ephemeral"},
		{"store:\n  ephemeral: \"sqlite:\"\n", nil, "store.ephemeral"},
		{"", []string{"VULA_SHUTDOWN_TIMEOUT=-1s"}, "shutdown_timeout"},
		{"pki:\n  country: Kosovo\n", nil, "pki.country"},
		{"pki:\n  ca_algorithm: DSA\n", nil, "pki.ca_algorithm"},
		{"pki:\n  policy_oids: [\"1.x.3\"]\n", nil, "pki.policy_oids"},
		{"pki:\n  ca_years: 30\n", nil, "pki"},
		{"tsa:\n  ntp_max_offset: 2s\n", nil, "tsa.ntp_max_offset"}, // more than the accuracy
		{"tsa:\n  ntp_interval: 10ms\n", nil, "tsa.ntp_interval"},
		{"", []string{"VULA_TSA_NTP_SERVERS=ntp.example, bad host"}, "tsa.ntp_servers"},
		{"audit:\n  group_commit_linger: 20ms\n", nil, "audit.group_commit_linger"},
		{"", []string{"VULA_AUDIT_GROUP_COMMIT_LINGER=-1ms"}, "audit.group_commit_linger"},
		{"csc:\n  login_max_age: 2h\n", nil, "csc.login_max_age"},
		{"", []string{"VULA_CSC_LOGIN_MAX_AGE=0s"}, "csc.login_max_age"},
		{"", []string{"VULA_HTTP_TRUSTED_PROXIES=10.0.0.0/8, lb.example"}, "http.trusted_proxies"},
		{"http:\n  per_client: 0\n", nil, "http.per_client"},
		{"drain_delay: 10m\n", nil, "drain_delay"},
		{"http:\n  min_upload_rate: 0\n", nil, "http.min_upload_rate"},
		{"http:\n  max_uploads: 0\n", nil, "http.max_uploads"},
		{"http:\n  tls:\n    cert_file: /etc/vula/tls.crt\n", nil, "http.tls"},
		{"", []string{"VULA_HTTP_TLS_KEY_FILE=/etc/vula/tls.key"}, "http.tls"},
	} {
		c, err := Load(writeFile(t, tc.yaml), tc.env, Overrides{})
		if err == nil {
			err = c.Validate()
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%q %v: err = %v, want a FieldError on %s", tc.yaml, tc.env, err, tc.field)
		}
	}
	// Every ephemeral store serve can open passes, Redis Sentinel and Cluster included (the
	// README's example was refused before).
	for _, e := range []string{"memory", "sqlite:/var/lib/vula/eph.db", "redis://cache:6379/0", "rediss://cache:6380",
		"redis+sentinel://h1:26379,h2:26379/mymaster", "redis+cluster://h1:7000,h2:7001", "rediss+cluster://h1:7000"} {
		c, err := Load("", []string{"VULA_STORE_EPHEMERAL=" + e}, Overrides{})
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("store.ephemeral %s: %v", e, err)
		}
	}
	// The default store moves with data_dir.
	if c, _ := Load("", nil, Overrides{DataDir: "/srv/vula"}); c.Store.Ephemeral != "sqlite:/srv/vula/ephemeral.db" {
		t.Errorf("ephemeral store under another data_dir: %s", c.Store.Ephemeral)
	}
	// A list from the environment is comma-separated.
	c, err := Load("", []string{"VULA_TSA_NTP_SERVERS=ntp1.example, 10.0.0.1:123,"}, Overrides{})
	if err != nil || fmt.Sprint(c.TSA.NTPServers) != "[ntp1.example 10.0.0.1:123]" || c.Validate() != nil {
		t.Errorf("NTP servers from the environment: %v %v", c.TSA.NTPServers, err)
	}
	// The signing portal's login age: 15 minutes by default, from the file or the environment.
	if c := Default(); time.Duration(c.CSC.LoginMaxAge) != 15*time.Minute {
		t.Errorf("default csc.login_max_age %v", time.Duration(c.CSC.LoginMaxAge))
	}
	c, err = Load(writeFile(t, "csc:\n  login_max_age: 5s\n"), nil, Overrides{})
	if err != nil || time.Duration(c.CSC.LoginMaxAge) != 5*time.Second || c.Validate() != nil {
		t.Errorf("csc.login_max_age from the file: %v %v", time.Duration(c.CSC.LoginMaxAge), err)
	}
	c, err = Load("", []string{"VULA_CSC_LOGIN_MAX_AGE=10m"}, Overrides{})
	if err != nil || time.Duration(c.CSC.LoginMaxAge) != 10*time.Minute || c.Validate() != nil {
		t.Errorf("csc.login_max_age from the environment: %v %v", time.Duration(c.CSC.LoginMaxAge), err)
	}
	// Trusted proxies: addresses and prefixes; the spool under the data dir.
	c, err = Load("", []string{"VULA_HTTP_TRUSTED_PROXIES=10.1.2.3/8, ::1"}, Overrides{DataDir: "/srv/vula"})
	if err != nil || c.Validate() != nil || fmt.Sprint(c.HTTP.Proxies()) != "[10.0.0.0/8 ::1/128]" || c.HTTP.SpoolDir != "/srv/vula/spool" {
		t.Errorf("http from the environment: %v %s %v", c.HTTP.Proxies(), c.HTTP.SpoolDir, err)
	}
	// The drain delay: none in dev mode, 5 s outside it, or as given.
	for _, tc := range []struct {
		env  []string
		want time.Duration
	}{{nil, 0}, {[]string{"VULA_DEV=false"}, 5 * time.Second}, {[]string{"VULA_DEV=false", "VULA_DRAIN_DELAY=0s"}, 0},
		{[]string{"VULA_DRAIN_DELAY=2s"}, 2 * time.Second}} {
		if c, err := Load("", tc.env, Overrides{}); err != nil || time.Duration(c.DrainDelay) != tc.want || c.Validate() != nil {
			t.Errorf("drain_delay with %v: %v %v", tc.env, time.Duration(c.DrainDelay), err)
		}
	}
	// A bad environment value is named by field and variable.
	_, err = Load("", []string{"VULA_HSM_PKCS11_POOL_SIZE=lots"}, Overrides{})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "hsm.pkcs11.pool_size" || !strings.Contains(err.Error(), "VULA_HSM_PKCS11_POOL_SIZE") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestSecret(t *testing.T) {
	env := map[string]string{"PIN": "4711"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if v, err := Secret("PIN", "", lookup); err != nil || v != "4711" {
		t.Fatalf("env: %q %v", v, err)
	}
	p := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(p, []byte("s3cret\n"), 0o600)
	if v, err := Secret("", p, lookup); err != nil || v != "s3cret" {
		t.Fatalf("file: %q %v", v, err)
	}
	if _, err := Secret("NOPE", "", lookup); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("missing env: %v", err)
	}
	if _, err := Secret("", p+".missing", lookup); err == nil {
		t.Fatal("missing file accepted")
	}
}
