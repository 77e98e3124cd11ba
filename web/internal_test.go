package web

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestParseAction(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, path string
		want         auditTarget
	}{
		{"POST", "/queues/critical/archived_tasks/abc:run", auditTarget{"run", "critical", "abc"}},
		{"POST", "/queues/low/retry_tasks/t1:archive", auditTarget{"archive", "low", "t1"}},
		{"DELETE", "/queues/low/pending_tasks/t2", auditTarget{"delete", "low", "t2"}},
		{"POST", "/queues/default/active_tasks/t3:cancel", auditTarget{"cancel", "default", "t3"}},
		{"POST", "/queues/default:pause", auditTarget{"pause", "default", ""}},
		{"POST", "/queues/default:resume", auditTarget{"resume", "default", ""}},
		{"DELETE", "/queues/default", auditTarget{"delete_queue", "default", ""}},
		{"DELETE", "/queues/low/archived_tasks:delete_all", auditTarget{"delete_all", "low", ""}},
		{"POST", "/queues/low/archived_tasks:run_all", auditTarget{"run_all", "low", ""}},
		{"POST", "/queues/low/archived_tasks:batch_run", auditTarget{"batch_run", "low", ""}},
		{"POST", "/queues/q/groups/g/aggregating_tasks/t4:run", auditTarget{"run", "q", "t4"}},
		{"POST", "/something/else", auditTarget{"post", "", ""}},
	}
	for _, c := range cases {
		if got := parseAction(c.method, c.path); got != c.want {
			t.Errorf("%s %s = %+v, want %+v", c.method, c.path, got, c.want)
		}
	}
}

func TestParseUsers(t *testing.T) {
	t.Parallel()
	hb, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	h := string(hb)
	ok, err := ParseUsers(" alice:operator:"+h+" , bob:viewer:pa:ss ,", true)
	if err != nil || len(ok) != 2 || ok[0].Name != "alice" || ok[0].Plain() || ok[1].Role != RoleViewer ||
		!ok[1].Plain() || string(ok[1].secret) != "pa:ss" {
		t.Fatalf("parse: %+v %v", ok, err)
	}
	for _, bad := range []struct{ spec, msg string }{
		{"alice:operator", "name:role:bcrypt-hash"},
		{"alice:admin:" + h, `role "admin"`},
		{"al ice:operator:" + h, "user name"},
		{"alice:operator:" + h + ",alice:viewer:" + h, "twice"},
		{"alice:operator:$2a$04$short", "malformed bcrypt"},
		{"alice:operator:plain", "bcrypt hash"},
	} {
		_, err := ParseUsers(bad.spec, false)
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: err = %v, want %q", bad.spec, err, bad.msg)
		}
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                      "/monitoring/",
		"/monitoring/queues":    "/monitoring/queues",
		"/ops/audit?limit=5":    "/ops/audit?limit=5",
		"//evil.example":        "/monitoring/",
		"https://evil.example/": "/monitoring/",
		`/\evil.example`:        "/monitoring/",
		"javascript:alert(1)":   "/monitoring/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionsRefuseTamperingAndExpiry(t *testing.T) {
	t.Parallel()
	s := &sessions{key: []byte(strings.Repeat("k", 32)), ttl: 3600e9}
	now := int64(1_700_000_000)
	s.now = func() time.Time { return time.Unix(now, 0) }
	u := NewUser("alice", RoleOperator, "pw")
	v, _ := s.issue(u)
	if p, ok := s.verify(v); !ok || p.User != "alice" || p.Gen != s.generation(u) {
		t.Fatalf("verify fresh: %+v %v", p, ok)
	}
	payload, sig, _ := strings.Cut(v, ".")
	for _, bad := range []string{payload + "." + sig[:len(sig)-2] + "AA", payload + "x." + sig, "", "abc", payload} {
		if _, ok := s.verify(bad); ok {
			t.Fatalf("tampered cookie %q verified", bad)
		}
	}
	other := &sessions{key: []byte(strings.Repeat("o", 32)), ttl: s.ttl, now: s.now}
	if _, ok := other.verify(v); ok {
		t.Fatal("a cookie signed with another key verified")
	}
	now += 3600
	if _, ok := s.verify(v); ok {
		t.Fatal("an expired session verified")
	}
}
