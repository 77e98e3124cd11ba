package security

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

func TestSuspicious(t *testing.T) {
	t.Parallel()
	for target, want := range map[string]string{
		"/api/v1/listings":                                "",
		"/api/v1/listings?limit=20&cursor=abc.def":        "",
		"/api/v1/listings?q=rock+and+roll":                "",
		"/api/v1/listings?q=o%27reilly":                   "",
		"/api/openapi.json":                               "",
		"/api/v1/upload/0190f1a2-7b3c/signed-url":         "",
		"/api/v1/listings?q=bed+%26+breakfast":            "",
		"/api/v1/listings?q=the+select+union":             "",
		"/../../etc/passwd":                               PatternPathTraversal,
		"/static/..%2f..%2fetc%2fhosts":                   PatternPathTraversal,
		"/static/%252e%252e%252fconfig":                   PatternPathTraversal,
		"/download?file=..\\..\\win.ini":                  PatternPathTraversal,
		"/a?file=report.pdf%00.png":                       PatternPathTraversal,
		"/api/v1/listings?q=<script>alert(1)</script>":    PatternScriptInjection,
		"/api/v1/listings?q=%3CScRiPt%3Ealert(1)":         PatternScriptInjection,
		"/x?next=javascript:alert(1)":                     PatternScriptInjection,
		"/x?q=%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E": PatternScriptInjection,
		"/api/v1/listings?q=%27+OR+1%3D1--":               PatternSQLInjection,
		"/api/v1/listings?q=x'%20or%20'a'='a":             PatternSQLInjection,
		"/api/v1/listings/1%20UNION%20SELECT%20password":  PatternSQLInjection,
		"/api/v1/listings?id=1/**/union/**/select/**/1":   PatternSQLInjection,
		"/api/v1/listings?q=1;SELECT+pg_sleep(5)":         PatternSQLInjection,
		"/api/v1/listings?q=1)%20AND%20SLEEP(5)":          PatternSQLInjection,
		"/x?id=1;%20DROP%20TABLE%20users":                 PatternSQLInjection,
	} {
		got, ok := Suspicious(target)
		if got != want || ok != (want != "") {
			t.Errorf("Suspicious(%q) = %q, %v; want %q", target, got, ok, want)
		}
	}
}

// FuzzSuspicious: any input is handled without panicking, and decoding
// never grows a string.
func FuzzSuspicious(f *testing.F) {
	for _, s := range []string{"/api/v1/listings", "/%2e%2e/", "%", "%%41", "+%zz", "/a?b=%3Cscript"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Suspicious(s)
		if u := unescape(s); len(u) > len(s) {
			t.Fatalf("unescape(%q) = %q grew", s, u)
		}
	})
}

type logLine map[string]any

func captureLog() (*slog.Logger, func() []logLine) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return log, func() []logLine {
		var out []logLine
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m logLine
			if err := json.Unmarshal([]byte(l), &m); err == nil {
				out = append(out, m)
			}
		}
		return out
	}
}

// TestAuthFailureBurst: the Nth refusal for one address in a window logs
// one auth_failure_burst line marked security=true and counts it; more
// refusals in the same window log nothing more; other addresses count apart.
func TestAuthFailureBurst(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	log, lines := captureLog()
	var c Counter
	m := New(log, &c, r.Client, Config{BurstCount: 3, BurstWindow: time.Minute})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		m.AuthFailure(ctx, "192.0.2.7", 401)
	}
	m.AuthFailure(ctx, "192.0.2.8", 403)
	ls := lines()
	if len(ls) != 1 || c.Count(EventAuthFailureBurst) != 1 {
		t.Fatalf("lines = %v, count = %d", ls, c.Count(EventAuthFailureBurst))
	}
	if l := ls[0]; l["security"] != true || l["event"] != EventAuthFailureBurst || l["client_ip"] != "192.0.2.7" || l["level"] != "WARN" {
		t.Fatalf("line = %v", l)
	}
	m.SignatureFailure(ctx, "192.0.2.9")
	if ls := lines(); len(ls) != 2 || ls[1]["event"] != EventSignatureFailure || c.Count(EventSignatureFailure) != 1 {
		t.Fatalf("signature failure: %v", ls)
	}
	var nilMonitor *Monitor
	nilMonitor.SignatureFailure(ctx, "x") // a nil monitor does nothing
}

// FuzzPrefilterIsSound: the cheap test in front of the patterns never hides
// a match — whatever the patterns find, mayMatch lets through.
func FuzzPrefilterIsSound(f *testing.F) {
	for _, s := range []string{"/api/v1/bookings", "/x?q=' or 1=1--", "/%2e%2e/etc/passwd", "/a/<script>", "/union%20select",
		"/information_schema", "/etc/passwd", "/proc/self/environ", "/x?a=javascript:1", "/a/..%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		lower := strings.ToLower(target)
		if kind, ok := match(lower); ok && !mayMatch(lower) {
			t.Fatalf("%q matches %s but the prefilter skips it", target, kind)
		}
	})
}
