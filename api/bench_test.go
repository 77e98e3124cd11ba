package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// BenchmarkBookingCreate measures POST /api/v1/bookings through the real
// stack (HTTP, JWT, binding and validation, the transaction with the
// exclusion check and the outbox row, the publish to Redis) beside a bare
// Gin handler that writes one row to the same PostgreSQL, in the same run:
//
//	go test -run '^$' -bench BookingCreate -benchtime 3000x ./api/
//
// It reports requests/s and p50/p99 latency; it is a quick local figure,
// not the `make bench` harness.
func BenchmarkBookingCreate(b *testing.B) {
	db := testkit.Postgres(b)
	ctx := context.Background()
	b.Run("bare", func(b *testing.B) {
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_rows (id text PRIMARY KEY, created_at timestamptz NOT NULL)`); err != nil {
			b.Fatal(err)
		}
		gin.SetMode(gin.ReleaseMode)
		r := gin.New()
		r.POST("/rows", func(c *gin.Context) {
			if _, err := store.Exec(c.Request.Context(), db, `INSERT INTO bench_rows (id, created_at) VALUES (?, ?)`, store.NewID(), store.Now()); err != nil {
				c.AbortWithStatus(http.StatusInternalServerError)
				return
			}
			c.Status(http.StatusCreated)
		})
		srv := httptest.NewServer(r)
		defer srv.Close()
		a := &testAPI{t: b, db: db, url: srv.URL, client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 128}}}
		measure(b, func(int64) int {
			return a.do("POST", "/rows", "", map[string]string{"x": "y"}).Status
		})
	})
	b.Run("api", func(b *testing.B) {
		a := newTestAPI(b, db)
		owner := a.signup("owner")
		renters := make([]account, 8)
		for i := range renters {
			renters[i] = a.signup("renter")
		}
		const listings = 500
		ids := make([]string, listings)
		for i := range ids {
			l := &store.Listing{OwnerID: owner.ID, Title: "Bench", PricePerDay: 1000, Currency: "EUR", Active: true}
			if err := store.CreateListing(ctx, db, l); err != nil {
				b.Fatal(err)
			}
			ids[i] = l.ID
		}
		today := booking.DateOf(time.Now(), time.UTC)
		measure(b, func(i int64) int {
			slot := int(i / listings) // a free night of a listing for every request
			start := today.AddDays(1 + 2*slot)
			return a.do("POST", "/api/v1/bookings", renters[i%8].Token,
				bookingBody(ids[i%listings], start, start.AddDays(1))).Status
		})
	})
}

// measure runs one request per iteration from 32 goroutines and reports
// throughput and latency percentiles; any status but 201 fails.
func measure(b *testing.B, req func(i int64) int) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	began := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if st := req(next.Add(1) - 1); st != http.StatusCreated {
				b.Errorf("status %d", st)
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(began)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}
