package ratelimit

import (
	"context"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/internal/testkit"
)

// burst sends n concurrent Allow calls, spread over the limiters (API
// replicas) and the subjects, and returns their decisions.
func burst(t *testing.T, n int, subjects []string, ls ...*Limiter) []Decision {
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
			out[i], errs[i] = ls[i%len(ls)].Allow(context.Background(), PolicyAnon, subjects[i%len(subjects)])
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

// TestConcurrentCallsShareRoundTripsExactly: concurrent requests of a few
// subjects on two replicas share round trips (and script runs, per
// subject), yet each is counted on its own: exactly the burst of each
// subject passes, each allowed request sees its own Remaining (burst-1
// down to 0, once each), and every refusal says when to retry.
func TestConcurrentCallsShareRoundTripsExactly(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	other := r.Opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { other.Close() })
	cfg := Config{Policies: map[string]Limit{PolicyAnon: {Count: 50, Period: time.Minute, Burst: 50}}}
	a, b := New(r.Client, cfg), New(other, cfg)
	subjects := []string{"ip:192.0.2.7", "ip:192.0.2.17", "ip:192.0.2.27"}
	const calls = 600
	ds := burst(t, calls, subjects, a, b)
	remaining := map[string][]int{}
	for i, d := range ds {
		if d.Limit != 50 || d.Block != nil {
			t.Fatalf("call %d: %+v", i, d)
		}
		if d.Allowed {
			subject := subjects[i%len(subjects)]
			remaining[subject] = append(remaining[subject], d.Remaining)
			if d.ResetAfter <= 0 || d.ResetAfter > time.Minute {
				t.Fatalf("call %d: %+v", i, d)
			}
			continue
		}
		if d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > 1200*time.Millisecond || d.ResetAfter < 59*time.Second {
			t.Fatalf("refusal %d: %+v", i, d)
		}
	}
	for _, subject := range subjects {
		rem := remaining[subject]
		if len(rem) != 50 {
			t.Fatalf("%s: allowed %d of %d, want exactly 50", subject, len(rem), calls/len(subjects))
		}
		sort.Ints(rem)
		for i, v := range rem {
			if v != i {
				t.Fatalf("%s: remaining values %v: want 0..49 once each", subject, rem)
			}
		}
	}
	sa, sb := a.BatchStats(), b.BatchStats()
	t.Logf("round trips: %d for %d calls, %d for %d", sa.RoundTrips, sa.Calls, sb.RoundTrips, sb.Calls)
	if sa.Calls+sb.Calls != calls || sa.RoundTrips+sb.RoundTrips >= calls {
		t.Fatalf("stats %+v %+v: want %d calls in fewer round trips", sa, sb, calls)
	}
}

// TestConcurrentCallsOfABlockedSubject: a blocked subject is refused in
// every batched call, without spending its bucket, while the calls of
// another subject in the same round trips are counted as usual.
func TestConcurrentCallsOfABlockedSubject(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{})
	ctx := context.Background()
	if _, err := l.Block(ctx, "ip:192.0.2.8", "manual", time.Hour); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for i, d := range burst(t, 60, []string{"ip:192.0.2.8", "ip:192.0.2.18"}, l) {
		if i%2 == 1 {
			if d.Allowed {
				allowed++
			} else if d.Block != nil || d.Violations < 1 {
				t.Fatalf("call %d of the free subject: %+v", i, d)
			}
			continue
		}
		if d.Allowed || d.Block == nil || d.Block.Reason != "manual" || d.RetryAfter < 59*time.Minute || d.Limit != 5 {
			t.Fatalf("call %d: %+v", i, d)
		}
	}
	if allowed != 5 {
		t.Fatalf("free subject: %d allowed, want 5", allowed)
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
	silent := fakeServer(t, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
	rdb := redis.NewClient(&redis.Options{Addr: silent, Protocol: 2, ReadTimeout: 300 * time.Millisecond,
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
	for _, d := range burst(t, 40, []string{"ip:192.0.2.10"}, l) {
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d, want 5", allowed)
	}
}

// TestConcurrentRefusalsCountOnce: refusals of concurrent requests are
// counted in their script run, each with its own number; one refusal at
// or past BlockAfter (the first to get there in Go) blocks the subject,
// once, and later requests meet the block.
func TestConcurrentRefusalsCountOnce(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	l := newLimiter(t, r.Client, Config{Policies: map[string]Limit{PolicyAnon: {Count: 2, Period: time.Minute, Burst: 2}},
		BlockAfter: Threshold{Count: 10, Window: time.Minute}, BlockFor: time.Hour})
	allowed, newBlocks, blocked := 0, 0, 0
	seen := map[int]bool{}
	for i, d := range burst(t, 60, []string{"ip:192.0.2.11"}, l) {
		switch {
		case d.Allowed:
			allowed++
		case d.Block != nil:
			blocked++
		default:
			if d.Violations < 1 || seen[d.Violations] {
				t.Fatalf("refusal %d: violation %d (seen: %v)", i, d.Violations, seen)
			}
			seen[d.Violations] = true
			if d.NewBlock != nil {
				newBlocks++
				if d.Violations < 10 {
					t.Fatalf("refusal %d blocked at violation %d", i, d.Violations)
				}
			}
		}
	}
	for v := 1; v <= 10; v++ {
		if !seen[v] {
			t.Fatalf("violations %v: want 1..10 each once", seen)
		}
	}
	if allowed != 2 || newBlocks != 1 {
		t.Fatalf("allowed %d, new blocks %d: want 2 and 1", allowed, newBlocks)
	}
	d, err := l.Allow(context.Background(), PolicyAnon, "ip:192.0.2.11")
	if err != nil || d.Block == nil || d.Block.Reason != "rate_limit_violations" {
		t.Fatalf("after the block: %+v, %v", d, err)
	}
	t.Logf("%d refusals counted, %d met the block", len(seen), blocked)
}

// fakeServer accepts connections on a loopback port until the test ends
// and hands each to serve; it returns the address.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
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
			serve(c)
		}
	}()
	return ln.Addr().String()
}

// slowRedis is a TCP proxy to addr that holds every reply from Redis for
// delay before passing it on: a slow Redis, not a dead one.
func slowRedis(t *testing.T, addr string, delay time.Duration) string {
	t.Helper()
	return fakeServer(t, func(c net.Conn) {
		s, err := net.Dial("tcp", addr)
		if err != nil {
			c.Close()
			return
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		go func() { _, _ = io.Copy(s, c) }()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					time.Sleep(delay)
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	})
}

// TestBatchedCallOutlivesItsContext: a call already in a batch on its way
// when its context ends still gets its answer — its script run counted it
// in Redis, so dropping the answer would lose the count (and with it,
// perhaps, the block its refusal should make). A call whose context ends
// while it is still queued is dropped, uncounted.
func TestBatchedCallOutlivesItsContext(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	const delay = 300 * time.Millisecond
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	opt.Addr = slowRedis(t, opt.Addr, delay)
	opt.Protocol, opt.DisableIdentity, opt.MaxRetries, opt.ReadTimeout, opt.PoolSize = 2, true, -1, 5*time.Second, 4
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	l := newLimiter(t, rdb, Config{Policies: map[string]Limit{PolicyAnon: {Count: 100, Period: time.Hour, Burst: 100}}})
	ctx := context.Background()
	if _, err := l.Allow(ctx, PolicyAnon, "ip:192.0.2.30"); err != nil { // loads the script, opens a connection
		t.Fatal(err)
	}
	waitState, call := batchProbe(t, l, "ip:192.0.2.30")
	a := call(ctx) // sends at once
	waitState(1, 0)
	c := call(ctx) // queued: the next sender
	waitState(1, 1)
	// Queued behind c with a deadline that ends during c's round trip:
	// a's trip ends within delay, c's takes delay more.
	bctx, cancel := context.WithTimeout(ctx, delay+delay/3)
	defer cancel()
	b := call(bctx)
	waitState(1, 2)
	// Queued behind b with a deadline that ends before a's trip does.
	dctx, cancelD := context.WithTimeout(ctx, delay/6)
	defer cancelD()
	dropped := call(dctx)
	for name, ch := range map[string]chan allowResult{"first": a, "second": c, "batched": b} {
		res := <-ch
		if res.err != nil || !res.d.Allowed {
			t.Fatalf("%s call: %+v, %v", name, res.d, res.err)
		}
	}
	if res := <-dropped; res.err == nil {
		t.Fatalf("a call dropped while queued was answered: %+v", res.d)
	}
	// Counted: the warm-up, a, c and b; not the dropped one.
	u, err := l.Usage(ctx, "ip:192.0.2.30")
	if err != nil || len(u) != 1 || u[0].Remaining != 96 {
		t.Fatalf("usage = %+v, %v; want 96 remaining", u, err)
	}
}

// allowResult is what an Allow call returned.
type allowResult struct {
	d   Decision
	err error
}

// batchProbe returns waitState, which waits until l's batcher has
// inflight round trips in flight and queued calls queued, and call, which
// starts an Allow of subject with ctx and returns where its result comes.
func batchProbe(t *testing.T, l *Limiter, subject string) (waitState func(inflight, queued int), call func(ctx context.Context) chan allowResult) {
	state := func() (inflight, queued int) {
		l.batch.mu.Lock()
		defer l.batch.mu.Unlock()
		return l.batch.inflight, len(l.batch.queue)
	}
	waitState = func(inflight, queued int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if i, q := state(); i == inflight && q == queued {
				return
			}
			if time.Now().After(deadline) {
				i, q := state()
				t.Fatalf("batcher: %d in flight, %d queued; want %d, %d", i, q, inflight, queued)
			}
			time.Sleep(time.Millisecond)
		}
	}
	call = func(ctx context.Context) chan allowResult {
		ch := make(chan allowResult, 1)
		go func() {
			d, err := l.Allow(ctx, PolicyAnon, subject)
			ch <- allowResult{d, err}
		}()
		return ch
	}
	return waitState, call
}

// TestFailedBatchAnswersEveryCaller: when the round trip of a batch fails
// (here Redis answers after the client's read timeout), every call it
// carried gets the error — none passes for an answer.
func TestFailedBatchAnswersEveryCaller(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	opt.Addr = slowRedis(t, opt.Addr, 400*time.Millisecond)
	opt.Protocol, opt.DisableIdentity, opt.MaxRetries, opt.ReadTimeout = 2, true, -1, 150*time.Millisecond
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	l := newLimiter(t, rdb, Config{})
	waitState, call := batchProbe(t, l, "ip:192.0.2.31")
	ctx := context.Background()
	first := call(ctx)
	waitState(1, 0)
	var queued []chan allowResult
	for i := 1; i <= 3; i++ {
		queued = append(queued, call(ctx))
		waitState(1, i)
	}
	for i, ch := range append([]chan allowResult{first}, queued...) {
		if res := <-ch; res.err == nil {
			t.Fatalf("call %d answered %+v by a round trip that failed", i, res.d)
		}
	}
}
