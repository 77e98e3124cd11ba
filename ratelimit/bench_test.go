package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

// BenchmarkAllow is one request's limiter call against the test Redis,
// alone (one round trip each) and from concurrent callers (batched), of
// one subject or many:
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
	for _, subjects := range []int{1, 16} {
		b.Run(fmt.Sprintf("parallel-%d-subjects", subjects), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			var next atomic.Int64
			s0 := l.BatchStats()
			b.RunParallel(func(pb *testing.PB) {
				subject := fmt.Sprintf("user:bench-%d", next.Add(1)%int64(subjects))
				for pb.Next() {
					if _, err := l.Allow(ctx, PolicyUser, subject); err != nil {
						b.Error(err)
						return
					}
				}
			})
			s1 := l.BatchStats()
			b.ReportMetric(float64(s1.Calls-s0.Calls)/float64(max(s1.RoundTrips-s0.RoundTrips, 1)), "calls/trip")
		})
	}
}
