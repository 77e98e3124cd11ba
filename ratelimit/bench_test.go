package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

// BenchmarkAllow is one request's limiter call against the test Redis,
// alone (one round trip each) and from concurrent callers (batched):
//
//	go test -run '^$' -bench Allow -benchmem ./ratelimit/
func BenchmarkAllow(b *testing.B) {
	r := testkit.RedisDB(b)
	l := New(r.Client, Config{Policies: map[string]Limit{PolicyUser: {Count: 1_000_000, Period: time.Second, Burst: 1_000_000}}})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Allow(ctx, PolicyUser, "user:bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		s0 := l.BatchStats()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Allow(ctx, PolicyUser, "user:bench"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		s1 := l.BatchStats()
		b.ReportMetric(float64(s1.Calls-s0.Calls)/float64(max(s1.RoundTrips-s0.RoundTrips, 1)), "calls/trip")
	})
}
