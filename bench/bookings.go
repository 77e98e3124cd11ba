package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/store"
)

// benchBookings: POST /api/v1/bookings through the real `rentalportal api`
// process on PostgreSQL and Redis — JWT, the rate limiter (limits too high
// to refuse), binding and validation, the transaction that reads the
// listing, writes the booking (exclusion constraint), its history row, its
// domain event and outbox rows, and the publish of its booking:expire task
// to Redis — beside a bare Gin handler that writes one row to the same
// PostgreSQL, in its own process, under the same closed-loop load
// generator. Each request books its own listing and night; every 20th
// repeats an earlier one's and must get 409 booking_overlap (5 % of the
// load once the first L requests have booked each listing once). Two
// loads: a closed loop at the knee of a concurrency sweep (the most the
// API answers: the req/s figure), and an open loop of Poisson arrivals at
// the 1,500/s (the p99 figure: the tail at the rate the target
// names, where a closed loop at saturation would mostly measure its own
// clients queueing).
func benchBookings(ctx context.Context, env Env) ([]Row, error) {
	st, err := newStack(ctx, env, "bench_bookings", 11)
	if err != nil {
		return nil, err
	}
	defer st.close()
	const renters, listings = 64, 2000
	m, err := seedMarket(ctx, st.db, "bk", renters, listings)
	if err != nil {
		return nil, err
	}
	gen, err := newBookingRequests(m)
	if err != nil {
		return nil, err
	}
	apiProc, apiBase, err := st.startAPI(ctx, map[string]string{"RATE_LIMIT_USER": generousLimit, "RATE_LIMIT_BOOKING": generousLimit})
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bareAddr := freeAddr()
	bareProc, err := st.start(ctx, self, []string{"-serve", "bare-gin"}, map[string]string{"ADDR": bareAddr, "DATABASE_URL": st.dbURL},
		"http://"+bareAddr+"/ready")
	if err != nil {
		return nil, err
	}
	bareBase := "http://" + bareAddr

	const offered = 1500.0 // req/s: the target rate
	sweepDur, dur, rounds := 1500*time.Millisecond, 8*time.Second, 2
	candidates := []int{8, 16, 32, 64}
	if env.Quick {
		sweepDur, dur, rounds = 500*time.Millisecond, 2*time.Second, 1
		candidates = []int{16, 32}
	}
	maxClients := candidates[len(candidates)-1]
	apiT, bareT := newTarget(apiBase, maxClients), newTarget(bareBase, maxClients)
	defer apiT.close()
	defer bareT.close()

	// Sweep the API's concurrency (this also warms it up), then measure
	// both at the knee, alternating so that drift hits both.
	sweep, clients, err := sweepClients(ctx, candidates, sweepDur, gen.send(apiT), http.StatusCreated, http.StatusConflict)
	if err != nil {
		return nil, err
	}
	if r := closedLoad(ctx, clients, 300*time.Millisecond, 0, bareSend(bareT)); r.n() == 0 {
		return nil, fmt.Errorf("bare handler: no answer (%v)", r.firstErr)
	}
	mt := newMeter(ctx, st.db, st.rc).watch("api", apiProc)
	mb := newMeter(ctx, st.db, st.rc).watch("bare", bareProc)
	var apiRes, bareRes loadStats
	var apiUse, bareUse usage
	m0, _ := scrape(ctx, apiBase+"/metrics")
	var backends string // in the first round
	for i := 0; i < rounds; i++ {
		s := mt.sample(ctx)
		act := watchActivity(ctx, st.db)
		apiRes.add(closedLoad(ctx, clients, dur, 0, gen.send(apiT)))
		if b := act.finish(); i == 0 {
			backends = b
		}
		apiUse.add(mt.since(ctx, s))
		s = mb.sample(ctx)
		bareRes.add(closedLoad(ctx, clients, dur, 0, bareSend(bareT)))
		bareUse.add(mb.since(ctx, s))
	}
	m1, _ := scrape(ctx, apiBase+"/metrics")
	// The latency at the target rate: the closed loop above saturates
	// (its clients queue for the slowest resource, and its p99 is mostly
	// that queue); a service is judged on its tail at the load it is sized
	// for, with requests arriving as independent clients send them.
	var apiOpen, bareOpen loadStats
	var apiDisk, bareDisk []time.Duration
	var apiDiskErr, bareDiskErr error
	for i := 0; i < rounds && ctx.Err() == nil; i++ {
		p := startDiskProbe(env.Tmp)
		apiOpen.add(openLoad(ctx, offered, dur, gen.send(apiT)))
		p.finish(&apiDisk, &apiDiskErr)
		p = startDiskProbe(env.Tmp)
		bareOpen.add(openLoad(ctx, offered, dur, bareSend(bareT)))
		p.finish(&bareDisk, &bareDiskErr)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// What the limiter's Redis round trip costs this route: the same load
	// on an API with RATE_LIMIT_ENABLED=false.
	st.stopProc(apiProc)
	offProc, offBase, err := st.startAPI(ctx, map[string]string{"RATE_LIMIT_ENABLED": "false"})
	if err != nil {
		return nil, err
	}
	offT := newTarget(offBase, clients)
	defer offT.close()
	closedLoad(ctx, clients, 300*time.Millisecond, 0, gen.send(offT))
	offDur := dur / 2
	mo := newMeter(ctx, st.db, st.rc).watch("api", offProc)
	s := mo.sample(ctx)
	offRes := closedLoad(ctx, clients, offDur, 0, gen.send(offT))
	offUse := mo.since(ctx, s)

	rps, bareRPS := apiRes.rate(), bareRes.rate()
	p99, bareP99 := percentile(apiRes.lat, 0.99), percentile(bareRes.lat, 0.99)
	p50, bareP50 := percentile(apiRes.lat, 0.5), percentile(bareRes.lat, 0.5)
	openP99, bareOpenP99 := percentile(apiOpen.lat, 0.99), percentile(bareOpen.lat, 0.99)
	note := fmt.Sprintf("%d clients, %s × %d", clients, dur, rounds)
	conflicts := apiRes.status[http.StatusConflict]
	rows := []Row{
		{Metric: fmt.Sprintf("concurrency sweep, API (%s each); knee: %d", sweepDur, clients), Value: describeSweep(sweep)},
		{Metric: "POST /bookings req/s (" + note + ")", Value: fmt.Sprintf("%.0f/s", rps),
			Baseline: fmt.Sprintf("bare Gin + 1 INSERT %.0f/s", bareRPS), Ratio: ratio(rps, bareRPS),
			Target: "≥ 1500/s", Verdict: verdict(rps >= 1500)},
		{Metric: "  p99, p50 at that saturating load", Value: msPrecise(p99) + ", " + msPrecise(p50),
			Baseline: "bare " + msPrecise(bareP99) + ", " + msPrecise(bareP50), Ratio: ratio(float64(p99), float64(bareP99))},
		{Metric: "    server-side time at that load (API's histogram)", Value: histogramShares(m0, m1,
			"rentalportal_http_request_duration_seconds", `route="/api/v1/bookings"`, `method="POST"`)},
		{Metric: fmt.Sprintf("POST /bookings p99 at %.0f/s offered (open loop, Poisson arrivals, %s × %d)", offered, dur, rounds),
			Value: msPrecise(openP99) + fmt.Sprintf(" (answered %.0f/s)", apiOpen.rate()), Baseline: "bare " + msPrecise(bareOpenP99),
			Ratio: ratio(float64(openP99), float64(bareOpenP99)), Target: "< 30 ms", Verdict: verdict(openP99 < 30*time.Millisecond)},
		{Metric: "  p50, p99.9", Value: msPrecise(percentile(apiOpen.lat, 0.5)) + ", " + msPrecise(percentile(apiOpen.lat, 0.999)),
			Baseline: "bare " + msPrecise(percentile(bareOpen.lat, 0.5)) + ", " + msPrecise(percentile(bareOpen.lat, 0.999))},
		{Metric: "  most requests in flight; load generator's dispatch lag p99 (counted in the latency)",
			Value:    fmt.Sprintf("%d; %s", apiOpen.mostInFlight, msPrecise(percentile(apiOpen.lag, 0.99))),
			Baseline: fmt.Sprintf("bare %d; %s", bareOpen.mostInFlight, msPrecise(percentile(bareOpen.lag, 0.99)))},
		{Metric: "  the disk meanwhile: " + diskProbeLabel,
			Value: describeDisk(apiDisk, apiDiskErr), Baseline: "bare " + describeDisk(bareDisk, bareDiskErr)},
		{Metric: "answers (every 20th request overlaps an earlier booking)", Value: apiRes.answers() +
			fmt.Sprintf(" (409: %.1f%%)", 100*float64(conflicts)/float64(max(apiRes.n(), 1))), Baseline: "bare " + bareRes.answers()},
		{Metric: "CPU cores busy during the run", Value: apiUse.cores(), Baseline: bareUse.cores()},
		{Metric: "CPU per request", Value: apiUse.cpuPerOp(apiRes.n()), Baseline: bareUse.cpuPerOp(bareRes.n())},
		{Metric: "PostgreSQL per request", Value: apiUse.perOp(apiRes.n()), Baseline: "bare " + bareUse.perOp(bareRes.n())},
		{Metric: "PostgreSQL backends (average count by state)", Value: backends},
		{Metric: fmt.Sprintf("rate limiter off: req/s, p99 (%s)", offDur), Value: fmt.Sprintf("%.0f/s, %s", offRes.rate(),
			msPrecise(percentile(offRes.lat, 0.99))), Baseline: fmt.Sprintf("limiter on %.0f/s, %s", rps, msPrecise(p99)),
			Ratio: ratio(offRes.rate(), rps)},
		{Metric: "  CPU cores busy, limiter off", Value: offUse.cores()},
	}
	if env.Profiles != "" {
		r, err := profileBookings(ctx, st, gen, clients, dur, rps)
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
	// Everything answered 201 must be in the table, and nothing else.
	apiRes.add(apiOpen)
	bareRes.add(bareOpen)
	if bad := apiRes.unexpected(http.StatusCreated, http.StatusConflict) + bareRes.unexpected(http.StatusCreated); bad > 0 {
		return rows, fmt.Errorf("%d unexpected answers (API: %s; bare: %s)", bad, apiRes.answers(), bareRes.answers())
	}
	var stored int
	if err := store.Get(ctx, st.db, &stored, `SELECT count(*) FROM bookings`); err != nil {
		return rows, err
	}
	if created := int(gen.created.Load()); stored != created {
		return rows, fmt.Errorf("%d bookings stored, %d answered 201", stored, created)
	}
	return rows, nil
}

// profileBookings runs the same load on an in-process twin of the API
// under the CPU profiler.
func profileBookings(ctx context.Context, st *stack, gen *bookingRequests, clients int, dur time.Duration, realRate float64) (Row, error) {
	t, stop, err := twinAPI(ctx, st, clients)
	if err != nil {
		return Row{}, err
	}
	defer stop()
	closedLoad(ctx, clients, 300*time.Millisecond, 0, gen.send(t))
	var r loadStats
	cmd, err := profileCPU(st.env.Profiles, "bookings-api", func() { r = closedLoad(ctx, clients, dur, 0, gen.send(t)) })
	return profileRow("API, limiter on", r.rate(), realRate, cmd), err
}

// bookingRequests hands out booking requests: request k books listing
// k mod L for the night 1 + 2·(k div L) days ahead, except every 20th,
// which repeats the listing and night of request k − L − 1 (long
// answered) and must be refused as an overlap.
type bookingRequests struct {
	m      *market
	tokens []string
	today  booking.Date
	seq    atomic.Int64
	// created counts the 201 answers, to check against the table.
	created atomic.Int64
}

func newBookingRequests(m *market) (*bookingRequests, error) {
	g := &bookingRequests{m: m, today: booking.DateOf(time.Now(), time.UTC)}
	for _, r := range m.renters {
		t, err := token(r, api.RoleRenter)
		if err != nil {
			return nil, err
		}
		g.tokens = append(g.tokens, "Bearer "+t)
	}
	return g, nil
}

func (g *bookingRequests) send(t *target) func(ctx context.Context, i int) (int, error) {
	L := int64(len(g.m.listings))
	return func(ctx context.Context, _ int) (int, error) {
		k := g.seq.Add(1) - 1
		slot := k
		if k%20 == 19 && k > L {
			slot = k - L - 1 // booked by request k − L − 1, which was not an overlap
		}
		night := 1 + 2*int(slot/L)
		if night > 360 {
			return 0, errors.New("out of free nights: fewer requests or more listings")
		}
		start := g.today.AddDays(night)
		body, _ := json.Marshal(map[string]string{"listing_id": g.m.listings[slot%L],
			"start_date": start.String(), "end_date": start.AddDays(1).String()})
		code, err := t.post(ctx, "/api/v1/bookings", body, map[string]string{"Authorization": g.tokens[k%int64(len(g.tokens))]})
		if code == http.StatusCreated {
			g.created.Add(1)
		}
		return code, err
	}
}

// bareSend posts the same kind of body to the bare handler.
func bareSend(t *target) func(ctx context.Context, i int) (int, error) {
	body := []byte(`{"listing_id":"bk-l-0","start_date":"2030-01-01","end_date":"2030-01-02"}`)
	return func(ctx context.Context, _ int) (int, error) {
		return t.post(ctx, "/rows", body, map[string]string{"Authorization": "Bearer x"})
	}
}

// serveBareGin is the baseline server of the bookings scenario, run as its
// own process (`bench -serve bare-gin`, ADDR, DATABASE_URL): Gin in release
// mode, one route that binds the JSON body and writes one row, a pool as
// large as the API's.
func serveBareGin(ctx context.Context) error {
	db, err := store.Open(ctx, os.Getenv("DATABASE_URL"), "", store.Options{MaxOpenConns: 20})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_rows (id text PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL)`); err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/ready", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.POST("/rows", func(c *gin.Context) {
		var req struct {
			ListingID string `json:"listing_id" binding:"required"`
		}
		if err := c.ShouldBindJSON(&req); err != nil {
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		id := store.NewID()
		if _, err := store.Exec(c.Request.Context(), db, `INSERT INTO bench_rows (id, body, created_at) VALUES (?, ?, ?)`,
			id, req.ListingID, store.Now()); err != nil {
			c.AbortWithStatus(http.StatusInternalServerError)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"id": id})
	})
	ln, err := net.Listen("tcp", os.Getenv("ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
