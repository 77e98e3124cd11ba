package ratelimit

import (
	"context"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/internal/testkit"
)

// burst sends n concurrent Allow calls of one subject, spread over the
// limiters (API replicas), and returns their decisions.
func burst(t *testing.T, n int, subject string, ls ...*Limiter) []Decision {
	t.Helper()
	out := make([]Decision, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i], errs[i] = ls[i%len(ls)].Allow(context.Background(), PolicyAnon, subject)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	return out
}

// TestConcurrentCallsShareRoundTripsExactly: concurrent requests on two
// replicas share round trips, yet each is counted on its own: exactly the
// burst passes, each allowed request sees its own Remaining (burst-1 down
// to 0, once each), and every refusal says when to retry.
func TestConcurrentCallsShareRoundTripsExactly(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	other := r.Opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { other.Close() })
	cfg := Config{Policies: map[string]Limit{PolicyAnon: {Count: 50, Period: time.Minute, Burst: 50}}}
	a, b := New(r.Client, cfg), New(other, cfg)
	const calls = 400
	ds := burst(t, calls, "ip:192.0.2.7", a, b)
	var remaining []int
	for i, d := range ds {
		if d.Limit != 50 || d.Block != nil {
			t.Fatalf("call %d: %+v", i, d)
		}
		if d.Allowed {
			remaining = append(remaining, d.Remaining)
			continue
		}
		if d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > 1200*time.Millisecond || d.ResetAfter < 59*time.Second {
			t.Fatalf("refusal %d: %+v", i, d)
		}
	}
	if len(remaining) != 50 {
		t.Fatalf("allowed %d of %d, want exactly 50", len(remaining), calls)
	}
	sort.Ints(remaining)
	for i, rem := range remaining {
		if rem != i {
			t.Fatalf("remaining values %v: want 0..49 once each", remaining)
		}
	}
	sa, sb := a.BatchStats(), b.BatchStats()
	t.Logf("round trips: %d for %d calls, %d for %d", sa.RoundTrips, sa.Calls, sb.RoundTrips, sb.Calls)
	if sa.Calls+sb.Calls != calls || sa.RoundTrips+sb.RoundTrips >= calls {
		t.Fatalf("stats %+v %+v: want %d calls in fewer round trips", sa, sb, calls)
	}
}

// TestConcurrentCallsOfABlockedSubject: a blocked subject is refused in
// every batched call, without spending its bucket.
func TestConcurrentCallsOfABlockedSubject(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{})
	ctx := context.Background()
	if _, err := l.Block(ctx, "ip:192.0.2.8", "manual", time.Hour); err != nil {
		t.Fatal(err)
	}
	for i, d := range burst(t, 50, "ip:192.0.2.8", l) {
		if d.Allowed || d.Block == nil || d.Block.Reason != "manual" || d.RetryAfter < 59*time.Minute || d.Limit != 5 {
			t.Fatalf("call %d: %+v", i, d)
		}
	}
	if u, err := l.Usage(ctx, "ip:192.0.2.8"); err != nil || len(u) != 1 || u[0].Remaining != 5 {
		t.Fatalf("usage = %+v, %v: a blocked subject's bucket must stay full", u, err)
	}
}

// TestHungRedisReleasesCallers: when Redis accepts but never answers,
// every caller gets an error in time (the API then fails open or
// closed): those queued behind a round trip when their context ends, the
// one sending it when the client's read timeout does (the API's client has
// RATE_LIMIT_REDIS_TIMEOUT as its timeouts).
func TestHungRedisReleasesCallers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), Protocol: 2, ReadTimeout: 300 * time.Millisecond,
		MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	l := newLimiter(t, rdb, Config{})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	took := make([]time.Duration, len(errs))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, errs[i] = l.Allow(ctx, PolicyAnon, "ip:192.0.2.9")
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	slow := 0
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d succeeded against a silent server", i)
		}
		if took[i] > 250*time.Millisecond {
			slow++
		}
		if took[i] > time.Second {
			t.Fatalf("call %d released after %s", i, took[i])
		}
	}
	if slow > 1 {
		t.Fatalf("%d callers waited past their context (%v): only the sender may", slow, took)
	}
}

// TestEmbeddedRedisBatches: on a fresh embedded Redis, a batch whose
// scripts are not cached yet (NOSCRIPT) is sent again in full.
func TestEmbeddedRedisBatches(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	l := newLimiter(t, rdb, Config{})
	allowed := 0
	for _, d := range burst(t, 40, "ip:192.0.2.10", l) {
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d, want 5", allowed)
	}
}
