package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/mail"
	"github.com/rentalportal/portal/metrics"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/security"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// twin is an in-process equivalent of the API or worker process, for CPU
// profiles (the binary serves no pprof): the constructors that
// cmd/rentalportal/serve.go wires, with the settings the scenarios give
// the processes. The load generator runs in this process too; its frames
// (net/http.(*Client), closedLoad) are easy to tell apart. Wiring that
// drifts from serve.go makes the profile, not the figures, less faithful.
type twin struct {
	st    *stack
	log   *slog.Logger
	db    *store.DB
	rc    redis.UniversalClient
	relay *relay.Relay
	stops []func()
}

func newTwin(ctx context.Context, st *stack) (*twin, error) {
	db, err := store.Open(ctx, st.dbURL, "", store.Options{MaxOpenConns: 20}) // DB_MAX_OPEN_CONNS' default
	if err != nil {
		return nil, err
	}
	opt, err := asynq.ParseRedisURI(st.redisURL)
	if err != nil {
		db.Close()
		return nil, err
	}
	rc := opt.MakeRedisClient().(redis.UniversalClient)
	t := &twin{st: st, log: slog.New(slog.DiscardHandler), db: db, rc: rc}
	t.relay = relay.New(db, asynq.NewClientFromRedisClient(rc), t.log)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); t.relay.Run(rctx) }()
	t.stops = append(t.stops, func() { cancel(); <-done }, func() { rc.Close() }, func() { db.Close() })
	return t, nil
}

func (t *twin) close() {
	for i := len(t.stops) - 1; i >= 0; i-- {
		t.stops[i]()
	}
}

// api serves the API as the api role does, limiter on with the scenarios'
// generous limits, and returns its base URL.
func (t *twin) api() (string, error) {
	pol := ratelimit.Limit{Count: 1_000_000, Period: time.Second, Burst: 1_000_000}
	lim := ratelimit.New(t.rc, ratelimit.Config{Policies: map[string]ratelimit.Limit{
		ratelimit.PolicyAnon: pol, ratelimit.PolicyUser: pol, ratelimit.PolicyLogin: pol,
		ratelimit.PolicyRegister: pol, ratelimit.PolicyUpload: pol, ratelimit.PolicyBooking: pol}})
	inbox := store.NewInbox(t.db, store.InboxOptions{MaxRows: 256, Flushers: 4,
		AfterCommit: func(ctx context.Context, msgs []store.OutboxMessage) {
			tm := make([]tasks.Message, len(msgs))
			for i, m := range msgs {
				tm[i] = tasks.Message(m)
			}
			t.relay.Publish(ctx, tm...)
		}})
	t.stops = append(t.stops, inbox.Close)
	reg := metrics.New(metrics.Options{Role: "api"})
	srv, err := api.NewServer(api.Config{Env: "production", Role: "api", MaxBodyBytes: 1 << 20, DataDir: t.st.dataDir,
		JWTSecret: benchJWTSecret, JWTIssuer: benchJWTIssuer, JWTAudience: benchJWTIssuer, JWTTTL: 15 * time.Minute,
		WebhookMaxBytes: 256 << 10, StripeTimeout: 3 * time.Second, RateLimitTimeout: 200 * time.Millisecond,
		BookingPaymentTTL: 30 * time.Minute, BookingMaxNights: 90, BookingMaxAdvanceDays: 365},
		api.Deps{Log: t.log, DB: t.db, DBStats: t.db.Stats, Relay: t.relay, Limiter: lim,
			Security: security.New(t.log, nil, t.rc, security.Config{}),
			Webhooks: payments.NewVerifier([]string{benchWebhookSecret}, 300*time.Second, false), Inbox: inbox,
			Metrics: reg.Handler(""), HTTPMetrics: reg})
	if err != nil {
		return "", err
	}
	base, stop, err := serveLoopback(srv)
	if err != nil {
		return "", err
	}
	t.stops = append(t.stops, stop)
	return base, nil
}

// worker runs the worker as the worker role does (concurrency 20, 10 ms
// check interval, mail as .eml files, the outbox poll).
func (t *twin) worker(ctx context.Context) error {
	mailer, err := mail.NewFiles(filepath.Join(t.st.dataDir, "mail-twin"), "Rental Portal <no-reply@localhost>", t.log)
	if err != nil {
		return err
	}
	w := worker.New(worker.Config{Concurrency: 20, TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		OutboxGrace: 30 * time.Second}, worker.Deps{Log: t.log, DB: t.db, Relay: t.relay, Mailer: mailer})
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 2)
	go func() { _ = w.Run(wctx, t.rc); done <- struct{}{} }()
	go func() { t.relay.Poll(wctx, time.Second, time.Second); done <- struct{}{} }()
	t.stops = append(t.stops, func() { cancel(); <-done; <-done })
	return nil
}

// profileCPU writes a CPU profile of this process while f runs to
// dir/name.pprof and returns how to read it.
func profileCPU(dir, name string, f func()) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".pprof")
	out, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return "", err
	}
	f()
	pprof.StopCPUProfile()
	return "go tool pprof -top " + path, nil
}

// profileRow is the row that points at a twin's profile.
func profileRow(what string, rate float64, realRate float64, cmd string) Row {
	return Row{Metric: "  CPU profile of an in-process twin (" + what + ")", Value: fmt.Sprintf("%.0f/s", rate),
		Baseline: fmt.Sprintf("real process %.0f/s", realRate), Ratio: ratio(rate, realRate), Target: strings.TrimSpace(cmd)}
}

// twinAPI starts an in-process twin of the API and a load target with
// conns connections to it; stop closes both.
func twinAPI(ctx context.Context, st *stack, conns int) (t *target, stop func(), err error) {
	tw, err := newTwin(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	base, err := tw.api()
	if err != nil {
		tw.close()
		return nil, nil, err
	}
	t = newTarget(base, conns)
	return t, func() { t.close(); tw.close() }, nil
}

// serveLoopback serves h on a fresh loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
