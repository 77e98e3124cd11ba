package ratelimit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/internal/testkit"
)

// Allow's script is redis_rate's GCRA run in a batch (script.go). These
// tests hold it to the library: the same calls on two buckets of one
// limit, one counted by the script (Limiter.Allow) and one by the library
// itself (redis_rate.Limiter.Allow), must get the same answers; and the
// bucket the script writes must read the same through the library (the
// block-ended path, Usage and Reset use the library on it).

// sameAnswer compares the script's decision with the library's result.
func sameAnswer(t *testing.T, step string, d Decision, r *redis_rate.Result, slack time.Duration) {
	t.Helper()
	near := func(a, b time.Duration) bool { return a-b <= slack && b-a <= slack }
	retry := r.RetryAfter
	if r.Allowed > 0 {
		retry = 0
	}
	got := d.RetryAfter
	if d.Allowed {
		got = 0
	}
	if d.Allowed != (r.Allowed > 0) || d.Remaining != r.Remaining || !near(got, retry) || !near(d.ResetAfter, r.ResetAfter) {
		t.Fatalf("%s: script allowed=%v remaining=%d retry=%s reset=%s; redis_rate allowed=%d remaining=%d retry=%s reset=%s",
			step, d.Allowed, d.Remaining, got, d.ResetAfter, r.Allowed, r.Remaining, retry, r.ResetAfter)
	}
}

// TestScriptAnswersAsRedisRate: on the embedded Redis with its clock
// frozen and moved by the test, a pseudo-random schedule of calls and
// clock steps (bursts, partial refills, full refills) for several limits —
// a burst above the rate, a fractional emission interval — gets exactly
// the library's answers, and the library reads the script's bucket as the
// script left it.
func TestScriptAnswersAsRedisRate(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	lib := redis_rate.NewLimiter(rdb)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	rng := rand.New(rand.NewPCG(7, 11))
	for _, lim := range []Limit{
		{Count: 5, Period: 10 * time.Second, Burst: 5},
		{Count: 3, Period: time.Minute, Burst: 7},
		{Count: 10, Period: 1500 * time.Millisecond, Burst: 2},
		{Count: 7, Period: 3 * time.Second, Burst: 1},
	} {
		l := New(rdb, Config{Policies: map[string]Limit{PolicyAnon: lim}})
		subject := "ip:198.51.100.1/" + lim.String()
		scriptKey, libKey := l.bucket(PolicyAnon, subject), "lib:"+lim.String()
		interval := lim.Period / time.Duration(lim.Count)
		refused := 0
		for i := 0; i < 200; i++ {
			step := lim.String() + " step " + strconv.Itoa(i)
			d, err := l.Allow(ctx, PolicyAnon, subject)
			if err != nil {
				t.Fatal(err)
			}
			r, err := lib.Allow(ctx, libKey, toRate(lim))
			if err != nil {
				t.Fatal(err)
			}
			sameAnswer(t, step, d, r, time.Millisecond)
			if !d.Allowed {
				refused++
			}
			// The library reads the script's bucket as the script left it
			// (AllowN with n = 0 spends nothing).
			peek, err := lib.AllowN(ctx, scriptKey, toRate(lim), 0)
			if err != nil {
				t.Fatal(err)
			}
			if peek.Remaining != d.Remaining || (d.Allowed && peek.ResetAfter-d.ResetAfter > time.Millisecond) {
				t.Fatalf("%s: the library reads the script's bucket as remaining %d reset %s; the script said %d, %s",
					step, peek.Remaining, peek.ResetAfter, d.Remaining, d.ResetAfter)
			}
			// Mostly back-to-back calls (bursts), sometimes a fraction of
			// an emission interval, sometimes long enough to refill.
			switch x := rng.IntN(10); {
			case x < 6:
			case x < 9:
				now = now.Add(time.Duration(rng.Int64N(int64(interval))))
			default:
				now = now.Add(lim.Period)
			}
			m.SetTime(now)
		}
		if refused == 0 || refused == 200 {
			t.Fatalf("%s: %d of 200 refused: the schedule must exercise both answers", lim, refused)
		}
	}
}

// TestScriptAnswersAsRedisRateOnRedis: the same comparison on the real
// Redis (its own Lua, its own TIME), for a burst well inside one emission
// interval, where the two buckets cannot drift apart by the microseconds
// between their calls.
func TestScriptAnswersAsRedisRateOnRedis(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	ctx := context.Background()
	lib := redis_rate.NewLimiter(r.Client)
	lim := Limit{Count: 3, Period: time.Minute, Burst: 6}
	l := New(r.Client, Config{Policies: map[string]Limit{PolicyAnon: lim}})
	for i := 0; i < 10; i++ {
		d, err := l.Allow(ctx, PolicyAnon, "ip:198.51.100.2")
		if err != nil {
			t.Fatal(err)
		}
		res, err := lib.Allow(ctx, "lib:redis", toRate(lim))
		if err != nil {
			t.Fatal(err)
		}
		sameAnswer(t, "call "+strconv.Itoa(i), d, res, 100*time.Millisecond)
	}
}
