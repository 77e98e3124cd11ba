package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func operatorEnv(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestOperatorSettings(t *testing.T) {
	t.Parallel()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	prod := map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("j", 32),
		"DATABASE_URL": "postgres://u@db/x", "REDIS_URL": "redis://r:6379/0"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"development accepts a plain password", with(nil, "OPERATOR_USERS", "alice:operator:secret"), ""},
		{"production wants bcrypt", with(prod, "OPERATOR_USERS", "alice:operator:secret"), "OPERATOR_USERS: entry 1 (alice): the password must be a bcrypt hash"},
		{"production with a hash", with(prod, "OPERATOR_USERS", "alice:operator:"+string(h)+",bob:viewer:"+string(h)), ""},
		{"unknown role", with(nil, "OPERATOR_USERS", "alice:root:x"), `OPERATOR_USERS: entry 1 (alice): role "root"`},
		{"short session key", with(nil, "OPERATOR_SESSION_KEY", "short"), "OPERATOR_SESSION_KEY: must be at least 32"},
		{"servers", with(nil, "OPENAPI_SERVERS", "local=http://localhost:8080,production=https://api.example.com"), ""},
		{"bad servers", with(nil, "OPENAPI_SERVERS", "local=ftp://x"), "OPENAPI_SERVERS: local"},
		{"any free port", with(nil, "HTTP_ADDR", "127.0.0.1:0", "METRICS_ADDR", ":0", "DASHBOARD_ADDR", "localhost:0"), ""},
		{"bad metrics address", with(nil, "METRICS_ADDR", "nowhere"), "METRICS_ADDR: must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(operatorEnv(c.env))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if strings.Contains(cfg.LogValue().String(), "operator:") {
					t.Fatalf("a password reached the loggable configuration: %s", cfg.LogValue())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
}

func TestOperatorDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u1, err := devOperator(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, devOperatorFile))
	if _, err := devOperator(dir); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, devOperatorFile))
	st, _ := os.Stat(filepath.Join(dir, devOperatorFile))
	if u1.Name != "operator" || !u1.Plain() || string(b) != string(again) || len(strings.TrimSpace(string(b))) < 16 ||
		st.Mode().Perm() != 0o600 {
		t.Fatalf("development operator: %+v %q %q %v", u1, b, again, st.Mode())
	}
	// Without OPERATOR_SESSION_KEY the key derives from JWT_SECRET: the
	// same on every replica, never the JWT secret itself.
	a := sessionKey(&Config{JWTSecret: strings.Repeat("j", 32)})
	b2 := sessionKey(&Config{JWTSecret: strings.Repeat("j", 32)})
	c := sessionKey(&Config{JWTSecret: strings.Repeat("k", 32)})
	if string(a) != string(b2) || string(a) == string(c) || string(a) == strings.Repeat("j", 32) || len(a) < 32 {
		t.Fatal("derived session keys")
	}
	if k := sessionKey(&Config{OperatorSessionKey: strings.Repeat("s", 40), JWTSecret: "x"}); string(k) != strings.Repeat("s", 40) {
		t.Fatal("OPERATOR_SESSION_KEY ignored")
	}
}
