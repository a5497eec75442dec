package sdjwt

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// disclose is one disclosure of [salt, name, value] (or [salt, value] with name "").
func disclose(salt, name string, v any) string {
	arr := []any{salt, name, v}
	if name == "" {
		arr = []any{salt, v}
	}
	b, _ := json.Marshal(arr)
	return b64.EncodeToString(b)
}

// jwt is an unsigned compact JWT of payload (the reader never checks signatures).
func jwt(payload map[string]any) string {
	p, _ := json.Marshal(payload)
	return b64.EncodeToString([]byte(`{"alg":"ES256","typ":"dc+sd-jwt"}`)) + "." + b64.EncodeToString(p) + ".c2ln"
}

func TestClaims(t *testing.T) {
	name := disclose("s1", "family_name", "Berisha")
	age18 := disclose("s2", "18", true)
	age := disclose("s3", "age_equal_or_over", map[string]any{"_sd": []string{Digest(age18)}})
	nat := disclose("s4", "", "XK")
	payload := map[string]any{"iss": "https://issuer.example", "_sd_alg": "sha-256",
		"_sd":           []string{Digest(name), Digest(age), "decoy-digest"},
		"nationalities": []any{map[string]any{"...": Digest(nat)}, map[string]any{"...": "undisclosed"}}}
	sd := jwt(payload) + "~" + name + "~" + age18 + "~" + age + "~" + nat + "~"
	p, err := Parse(sd + "kb.jwt.x")
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Claims()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(c)
	if string(got) != `{"age_equal_or_over":{"18":true},"family_name":"Berisha","iss":"https://issuer.example","nationalities":["XK"]}` {
		t.Fatalf("claims %s", got)
	}
	if p.KB != "kb.jwt.x" || p.SDHash() != Digest(sd) {
		t.Fatalf("KB %q, sd_hash %s", p.KB, p.SDHash())
	}

	for _, tc := range []struct{ name, sd string }{
		{"a disclosure twice", jwt(payload) + "~" + name + "~" + name + "~"},
		{"a disclosure of no digest", jwt(payload) + "~" + disclose("s9", "email", "x@y") + "~"},
		{"a changed disclosure", jwt(payload) + "~" + disclose("s1", "family_name", "Someone Else") + "~"},
		{"a name in the clear and disclosed", jwt(map[string]any{"family_name": "A", "_sd": []string{Digest(name)}}) + "~" + name + "~"},
		{"a repeated digest", jwt(map[string]any{"_sd": []string{Digest(name), Digest(name)}}) + "~" + name + "~"},
		{"an element disclosure in an object", jwt(map[string]any{"_sd": []string{Digest(nat)}}) + "~" + nat + "~"},
		{"the reserved name _sd", jwt(map[string]any{"_sd": []string{Digest(disclose("s", "_sd", 1))}}) + "~" + disclose("s", "_sd", 1) + "~"},
		{"another hash", jwt(map[string]any{"_sd_alg": "sha-512"}) + "~"},
		{"no tilde", jwt(payload)},
		{"not a JWT", "a.b~"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.sd)
			if err == nil {
				_, err = p.Claims()
			}
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("%v, want ErrFormat", err)
			}
		})
	}
	if _, err := Parse(strings.Repeat("a", MaxSize+1)); !errors.Is(err, ErrFormat) {
		t.Fatalf("an oversized SD-JWT: %v", err)
	}
}

// FuzzParse: any input is refused or resolved without a panic.
func FuzzParse(f *testing.F) {
	name := disclose("s1", "family_name", "Berisha")
	f.Add(jwt(map[string]any{"_sd": []string{Digest(name)}}) + "~" + name + "~")
	f.Add(jwt(map[string]any{"a": []any{map[string]any{"...": "x"}}}) + "~~")
	f.Add("a.b.c~~x.y.z")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		_, _ = p.Claims()
		_ = p.SDHash()
	})
}
