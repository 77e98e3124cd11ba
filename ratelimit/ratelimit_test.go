package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/internal/testkit"
)

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Limit
		str  string
		bad  bool
	}{
		{in: "60/m", want: Limit{60, time.Minute, 60}, str: "60/m"},
		{in: "300/m:50", want: Limit{300, time.Minute, 50}, str: "300/m:50"},
		{in: " 5/10s ", want: Limit{5, 10 * time.Second, 5}, str: "5/10s"},
		{in: "1/h", want: Limit{1, time.Hour, 1}, str: "1/h"},
		{in: "100/d:10", want: Limit{100, 24 * time.Hour, 10}, str: "100/d:10"},
		{in: "off", str: "off"},
		{in: "", str: "off"},
		{in: "60", bad: true},
		{in: "0/m", bad: true},
		{in: "-1/m", bad: true},
		{in: "60/x", bad: true},
		{in: "60/m:0", bad: true},
		{in: "60/m:x", bad: true},
		{in: "60/0s", bad: true},
		{in: "60/9000h", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLimit(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseLimit(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want || got.String() != tc.str {
				t.Fatalf("ParseLimit(%q) = %+v (%s), %v; want %+v (%s)", tc.in, got, got, err, tc.want, tc.str)
			}
		})
	}
	if _, err := ParseThreshold("10/15m:3"); err == nil {
		t.Error("a threshold takes no burst")
	}
	if th, err := ParseThreshold("10/15m"); err != nil || th != (Threshold{10, 15 * time.Minute}) || th.String() != "10/15m0s" {
		t.Errorf("ParseThreshold(10/15m) = %+v %s, %v", th, th, err)
	}
}

// FuzzParseLimit: whatever parses prints back to the same limit.
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"60/m", "300/m:50", "5/10s", "off", "1/1ms:1", "9/1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimit(s)
		if err != nil {
			return
		}
		again, err := ParseLimit(l.String())
		if err != nil || again != l {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, l, l.String(), again, err)
		}
		if !l.Off() && (l.Burst < 1 || l.Period <= 0) {
			t.Fatalf("%q → %+v", s, l)
		}
	})
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.7":                 "ip:203.0.113.7",
		"::ffff:203.0.113.7":          "ip:203.0.113.7",
		"2001:db8:1:2:3:4:5:6":        "ip:2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff::1":   "ip:2001:db8:1:2::/64",
		"not an ip":                   "ip:not an ip",
		"2001:0db8:0001:0002:0:0:0:1": "ip:2001:db8:1:2::/64",
	} {
		if got := IPSubject(in); got != want {
			t.Errorf("IPSubject(%q) = %q, want %q", in, got, want)
		}
	}
	if AccountSubject(" Ann@Example.com") != AccountSubject("ann@example.com") {
		t.Error("account subjects must ignore case and spaces")
	}
}

func newLimiter(t *testing.T, rdb redis.UniversalClient, cfg Config) *Limiter {
	t.Helper()
	if cfg.Policies == nil {
		cfg.Policies = map[string]Limit{PolicyAnon: {Count: 5, Period: 10 * time.Second, Burst: 5}}
	}
	return New(rdb, cfg)
}

// TestAllowCountsDownAcrossReplicas: two limiters with their own
// connections (two API replicas) share one bucket.
func TestAllowCountsDownAcrossReplicas(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	other := r.Opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { other.Close() })
	a, b := newLimiter(t, r.Client, Config{}), newLimiter(t, other, Config{})
	ctx := context.Background()
	allowed := 0
	for i := 0; i < 8; i++ {
		l := a
		if i%2 == 1 {
			l = b
		}
		d, err := l.Allow(ctx, PolicyAnon, "ip:192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		if d.Limit != 5 {
			t.Fatalf("limit = %d", d.Limit)
		}
		if d.Allowed {
			allowed++
			if want := 5 - allowed; d.Remaining != want {
				t.Errorf("request %d: remaining %d, want %d", i, d.Remaining, want)
			}
			continue
		}
		// 5 per 10s: one request is earned back every 2s.
		if d.RetryAfter <= time.Second || d.RetryAfter > 2*time.Second || d.Remaining != 0 {
			t.Errorf("refusal %d: retry after %s, remaining %d", i, d.RetryAfter, d.Remaining)
		}
		if d.ResetAfter < 9*time.Second || d.ResetAfter > 10*time.Second {
			t.Errorf("refusal %d: reset after %s", i, d.ResetAfter)
		}
		// Counted (the first is the one to log), never blocking: BlockAfter is off.
		if d.Violations != i+1-allowed || d.NewBlock != nil {
			t.Errorf("refusal %d: violations %d, new block %v", i, d.Violations, d.NewBlock)
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d of 8, want 5", allowed)
	}
	// Another subject has its own bucket.
	if d, err := a.Allow(ctx, PolicyAnon, "ip:192.0.2.2"); err != nil || !d.Allowed || d.Remaining != 4 {
		t.Fatalf("other subject: %+v, %v", d, err)
	}
	// An unknown (off) policy limits nothing.
	if d, err := a.Allow(ctx, "nope", "ip:192.0.2.1"); err != nil || !d.Allowed || d.Limit != 0 {
		t.Fatalf("off policy: %+v, %v", d, err)
	}
}

// TestViolationsBlockUntilCleared: refusals within the window block the
// subject; the block is listed, refuses even off policies, and goes when
// lifted; Reset empties the bucket.
func TestViolationsBlockUntilCleared(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{
		Policies:   map[string]Limit{PolicyAnon: {Count: 2, Period: time.Minute, Burst: 2}},
		BlockAfter: Threshold{Count: 3, Window: time.Minute}, BlockFor: time.Hour,
	})
	ctx := context.Background()
	subject := "ip:198.51.100.9"
	var blocked *Block
	for i := 1; i <= 5; i++ {
		d, err := l.Allow(ctx, PolicyAnon, subject)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i <= 2:
			if !d.Allowed {
				t.Fatalf("request %d refused", i)
			}
		case i <= 4:
			if d.Allowed || d.Violations != i-2 || d.NewBlock != nil || d.Block != nil {
				t.Fatalf("request %d: %+v", i, d)
			}
		default:
			if d.Allowed || d.NewBlock == nil || d.NewBlock.Reason != "rate_limit_violations" {
				t.Fatalf("request %d should block: %+v", i, d)
			}
			blocked = d.NewBlock
		}
	}
	if time.Until(blocked.Until) < 59*time.Minute {
		t.Fatalf("blocked until %s", blocked.Until)
	}
	d, err := l.Allow(ctx, "nope", subject)
	if err != nil || d.Allowed || d.Block == nil || d.RetryAfter < 59*time.Minute {
		t.Fatalf("blocked subject on an off policy: %+v, %v", d, err)
	}
	list, err := l.Blocks(ctx)
	if err != nil || len(list) != 1 || list[0].Key != subject || !list[0].Until.Equal(blocked.Until) {
		t.Fatalf("blocks = %+v, %v", list, err)
	}
	if ok, err := l.Unblock(ctx, subject); err != nil || !ok {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	if ok, _ := l.Unblock(ctx, subject); ok {
		t.Fatal("second unblock found a block")
	}
	if list, _ := l.Blocks(ctx); len(list) != 0 {
		t.Fatalf("blocks after unblock = %+v", list)
	}
	// Unblocked, but the bucket is still empty until Reset.
	if d, _ := l.Allow(ctx, PolicyAnon, subject); d.Allowed || d.Block != nil {
		t.Fatalf("after unblock: %+v", d)
	}
	u, err := l.Usage(ctx, subject)
	if err != nil || len(u) != 1 || u[0].Policy != PolicyAnon || u[0].Remaining != 0 || u[0].ResetAfter < 50*time.Second {
		t.Fatalf("usage = %+v, %v", u, err)
	}
	if err := l.Reset(ctx, subject); err != nil {
		t.Fatal(err)
	}
	if u, _ := l.Usage(ctx, subject); len(u) != 1 || u[0].Remaining != 2 || u[0].ResetAfter != 0 {
		t.Fatalf("usage after reset = %+v (a look must not count)", u)
	}
	if d, _ := l.Allow(ctx, PolicyAnon, subject); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after reset: %+v", d)
	}
}

// TestBlockExpires: a block ends by itself.
func TestBlockExpires(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{})
	ctx := context.Background()
	if _, err := l.Block(ctx, "user:u1", "manual", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if b, err := l.Blocked(ctx, "user:u1"); err != nil || b == nil {
		t.Fatalf("blocked = %v, %v", b, err)
	}
	time.Sleep(400 * time.Millisecond)
	if b, err := l.Blocked(ctx, "user:u1"); err != nil || b != nil {
		t.Fatalf("after expiry: %v, %v", b, err)
	}
	if list, err := l.Blocks(ctx); err != nil || len(list) != 0 {
		t.Fatalf("listed after expiry: %+v %v", list, err)
	}
}

// TestLoginGuard: failures from one address block it (for every account);
// failures on one account slow it down from everywhere, never block it,
// and a success lifts the slow-down.
func TestLoginGuard(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{BlockFor: time.Hour})
	g := NewLoginGuard(l, LoginConfig{Failures: Threshold{Count: 3, Window: time.Minute},
		AccountThrottle: Limit{Count: 1, Period: time.Minute, Burst: 1}})
	ctx := context.Background()
	const attacker, owner = "203.0.113.66", "198.51.100.20"
	for i := 1; i <= 3; i++ {
		if err := g.Check(ctx, attacker, "victim@example.com"); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
		f, err := g.Failed(ctx, attacker, "victim@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if f.IPFailures != i || f.AccountFailures != i || (f.Blocked != nil) != (i == 3) || f.AccountThrottled != (i == 3) {
			t.Fatalf("failure %d: %+v", i, f)
		}
	}
	err := g.Check(ctx, attacker, "someone-else@example.com")
	if d, ok := IsDenied(err); !ok || d.Reason != "login_failures" || d.RetryAfter < 59*time.Minute {
		t.Fatalf("blocked address: %v", err)
	}
	// The owner, from elsewhere: one attempt now, then wait.
	if err := g.Check(ctx, owner, "Victim@example.com"); err != nil {
		t.Fatalf("owner's first attempt: %v", err)
	}
	err = g.Check(ctx, owner, "victim@example.com")
	if d, ok := IsDenied(err); !ok || d.Reason != "account_throttled" || d.RetryAfter <= 0 {
		t.Fatalf("throttled account: %v", err)
	}
	if b, _ := l.Blocked(ctx, AccountSubject("victim@example.com")); b != nil {
		t.Fatal("an account must never be blocked")
	}
	if err := g.Succeeded(ctx, owner, "victim@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := g.Check(ctx, owner, "victim@example.com"); err != nil {
		t.Fatalf("after a success: %v", err)
	}
}

// TestEmbeddedRedis: the limiter works on the embedded Redis of `make run`
// (miniredis), where the GCRA script is not cached yet (NOSCRIPT, then
// EVAL, both behind the block check).
func TestEmbeddedRedis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	l := newLimiter(t, rdb, Config{})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if d, err := l.Allow(ctx, PolicyAnon, "ip:192.0.2.1"); err != nil || !d.Allowed || d.Remaining != 4-i {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	if d, err := l.Allow(ctx, PolicyAnon, "ip:192.0.2.1"); err != nil || d.Allowed {
		t.Fatalf("over the limit: %+v, %v", d, err)
	}
	if _, err := l.Block(ctx, "ip:192.0.2.2", "manual", time.Minute); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Allow(ctx, PolicyAnon, "ip:192.0.2.2"); err != nil || d.Block == nil || d.Block.Reason != "manual" {
		t.Fatalf("blocked: %+v, %v", d, err)
	}
}

// TestLostThresholdRefusalStillBlocks: the refusal whose count reached
// BlockAfter never came back to its caller (it gave up, or the round trip
// failed after the script ran in Redis) — the count moved past the
// threshold without a block. The next refusal blocks the subject, and
// only one block is made even when several refusals find the count past.
func TestLostThresholdRefusalStillBlocks(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{
		Policies:   map[string]Limit{PolicyAnon: {Count: 1, Period: time.Minute, Burst: 1}},
		BlockAfter: Threshold{Count: 3, Window: time.Minute}, BlockFor: time.Hour,
	})
	ctx := context.Background()
	subject := "ip:198.51.100.10"
	for i := 1; i <= 3; i++ {
		if _, err := l.Allow(ctx, PolicyAnon, subject); err != nil {
			t.Fatal(err)
		}
	}
	// Refusals 1 and 2 came back; refusal 3 was counted by the script in
	// Redis and lost on its way: the count says 3, nothing is blocked.
	if err := r.Client.Incr(ctx, l.key("viol", subject)).Err(); err != nil {
		t.Fatal(err)
	}
	if b, err := l.Blocked(ctx, subject); err != nil || b != nil {
		t.Fatalf("blocked before the next refusal: %+v, %v", b, err)
	}
	d, err := l.Allow(ctx, PolicyAnon, subject)
	if err != nil || d.Allowed || d.Violations != 4 || d.NewBlock == nil {
		t.Fatalf("the refusal past the threshold: %+v, %v", d, err)
	}
	// Another refusal already counted past the threshold (a concurrent
	// one) finds the block made: it makes none of its own.
	nb, created, err := l.block(ctx, subject, "rate_limit_violations", time.Hour, true)
	if err != nil || created || nb != (Block{}) {
		t.Fatalf("second block: %+v, created %v, %v", nb, created, err)
	}
	if d, err := l.Allow(ctx, PolicyAnon, subject); err != nil || d.Block == nil || d.NewBlock != nil {
		t.Fatalf("after the block: %+v, %v", d, err)
	}
	if list, err := l.Blocks(ctx); err != nil || len(list) != 1 {
		t.Fatalf("blocks = %+v, %v", list, err)
	}
}
