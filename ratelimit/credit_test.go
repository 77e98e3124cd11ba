package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

// hourly is a limit that refills too slowly to matter within a test: the
// counts below are exact.
func hourly(burst int) Limit { return Limit{Count: burst, Period: time.Hour, Burst: burst} }

// remainingIn reads what the subject's user bucket holds in Redis.
func remainingIn(t *testing.T, l *Limiter, subject string) int {
	t.Helper()
	us, err := l.Usage(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Policy == PolicyUser {
			return u.Remaining
		}
	}
	t.Fatalf("no user bucket for %s", subject)
	return 0
}

// TestLocalCreditCountsEveryRequest: two limiters (two API processes) on
// one Redis, with credit, take turns with one subject of a 1,000-request
// bucket until both refuse: exactly 1,000 are allowed in total, the bucket
// in Redis says so (what was allowed on credit is counted), and far fewer
// round trips than requests went to Redis. On one process the remaining
// count of the answers, on credit or not, is the exact count or one below
// (GCRA's rounding), and never goes up.
func TestLocalCreditCountsEveryRequest(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	ctx := context.Background()
	cfg := Config{Policies: map[string]Limit{PolicyUser: hourly(1000)}, LocalCredit: 8}
	a, b := New(r.Client, cfg), New(r.Client, cfg)
	subject := UserSubject(testkit.RandomName("u"))

	last := 1000
	for i := 0; i < 100; i++ {
		d, err := a.Allow(ctx, PolicyUser, subject)
		if err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
		// The exact count, or one below: GCRA's floating point may make
		// Redis's own answer one lower, and the requests on credit count
		// down from it.
		if want := 1000 - (i + 1); d.Remaining > last || d.Remaining < want-1 || d.Remaining > want ||
			d.Limit != 1000 || d.ResetAfter <= 0 {
			t.Fatalf("request %d: remaining %d limit %d reset %s after remaining %d", i, d.Remaining, d.Limit, d.ResetAfter, last)
		}
		last = d.Remaining
	}
	if trips := a.BatchStats().Calls; trips > 100/8+2 {
		t.Fatalf("%d of 100 requests asked Redis; with a credit of 8 at most %d should", trips, 100/8+2)
	}

	allowed := 100
	for i := 0; i < 3000; i++ {
		l := a
		if i%2 == 1 {
			l = b
		}
		d, err := l.Allow(ctx, PolicyUser, subject)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 1000 {
		t.Fatalf("%d allowed across two processes with credit, want exactly 1000", allowed)
	}
	if rem := remainingIn(t, a, subject); rem != 0 {
		t.Fatalf("the bucket in Redis holds %d after 1000 allowed: requests allowed on credit went uncounted", rem)
	}
	trips := a.BatchStats().Calls + b.BatchStats().Calls
	t.Logf("%d round trips for 3100 requests", trips)
	if trips >= 3100 {
		t.Fatal("every request asked Redis")
	}
}

// TestLocalCreditOnlyFarFromTheLimit: a bucket that holds less than 32
// times the credit gets none (every request asks Redis, so two processes
// cannot both spend its last requests); login never gets credit, however
// large its limit.
func TestLocalCreditOnlyFarFromTheLimit(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	ctx := context.Background()
	l := New(r.Client, Config{Policies: map[string]Limit{PolicyUser: hourly(200), PolicyLogin: hourly(10_000)}, LocalCredit: 8})
	subject := UserSubject(testkit.RandomName("u"))
	// 200 remaining: a credit of 200/32 = 6. Spend down to 31: then none.
	asked := func(policy, subject string) bool {
		t.Helper()
		before := l.BatchStats().Calls
		if _, err := l.Allow(ctx, policy, subject); err != nil {
			t.Fatal(err)
		}
		return l.BatchStats().Calls > before
	}
	for i := 0; i < 200-31; i++ {
		asked(PolicyUser, subject)
	}
	for i := 0; i < 31; i++ {
		if !asked(PolicyUser, subject) {
			t.Fatalf("with %d remaining, a request was allowed without asking Redis", 31-i)
		}
	}
	ip := IPSubject("198.51.100.7")
	for i := 0; i < 20; i++ {
		if !asked(PolicyLogin, ip) {
			t.Fatal("a login attempt was allowed without asking Redis")
		}
	}
}

// TestLocalCreditEndsWithABlock: a subject with credit that is blocked
// meanwhile (by an operator, or by another replica) is refused once its
// credit is spent, at most LocalCredit requests later, and what it spent
// on credit is counted once the block is lifted.
func TestLocalCreditEndsWithABlock(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	ctx := context.Background()
	l := New(r.Client, Config{Policies: map[string]Limit{PolicyUser: hourly(1000)}, LocalCredit: 8})
	subject := UserSubject(testkit.RandomName("u"))
	if d, err := l.Allow(ctx, PolicyUser, subject); err != nil || !d.Allowed {
		t.Fatalf("first request: %+v %v", d, err)
	}
	if _, err := l.Block(ctx, subject, "test", time.Hour); err != nil {
		t.Fatal(err)
	}
	onCredit := 0
	for i := 0; i < 20; i++ {
		d, err := l.Allow(ctx, PolicyUser, subject)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			onCredit++
			continue
		}
		if d.Block == nil {
			t.Fatalf("refused without the block: %+v", d)
		}
	}
	if onCredit > 8 {
		t.Fatalf("%d requests allowed after the block; the credit was at most 8", onCredit)
	}
	if _, err := l.Unblock(ctx, subject); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Allow(ctx, PolicyUser, subject); err != nil || !d.Allowed {
		t.Fatalf("after the block: %+v %v", d, err)
	}
	if rem, want := remainingIn(t, l, subject), 1000-2-onCredit; rem > want {
		t.Fatalf("the bucket holds %d after %d allowed, want at most %d", rem, 2+onCredit, want)
	}
}

// TestLocalCreditUnderConcurrency: 16 concurrent callers on each of two
// limiters, one subject, until the bucket is spent: at least the limit is
// allowed and at most what the two processes' credit could have granted on
// top, and the bucket in Redis counts everything allowed.
func TestLocalCreditUnderConcurrency(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	ctx := context.Background()
	cfg := Config{Policies: map[string]Limit{PolicyUser: hourly(2000)}, LocalCredit: 8}
	limiters := []*Limiter{New(r.Client, cfg), New(r.Client, cfg)}
	subject := UserSubject(testkit.RandomName("u"))
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := limiters[g%2]
			for i := 0; i < 150; i++ {
				d, err := l.Allow(ctx, PolicyUser, subject)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	n := allowed.Load()
	t.Logf("%d of 4800 allowed; %d round trips", n, limiters[0].BatchStats().RoundTrips+limiters[1].BatchStats().RoundTrips)
	if n < 2000 || n > 2000+2*8 {
		t.Fatalf("%d allowed, want 2000 (at most %d more on credit)", n, 2*8)
	}
	// What was allowed on credit and not yet counted is counted with the
	// next request that asks.
	for _, l := range limiters {
		if _, err := l.Allow(ctx, PolicyUser, subject); err != nil {
			t.Fatal(err)
		}
	}
	if rem := remainingIn(t, limiters[0], subject); rem != 0 {
		t.Fatalf("the bucket holds %d after %d allowed", rem, n)
	}
}
