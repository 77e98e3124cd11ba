// Command webhooks measures webhook ingestion through the real HTTP stack:
// signed Stripe events POSTed concurrently to /webhooks/stripe (verify,
// group-committed store of event + outbox row, relay to Redis), and prints
// beside it raw asynq Enqueue of the same count in the same run.
//
//	go run ./bench/webhooks -database-url postgres://... -redis-url redis://... -n 20000 -c 64
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webhooks bench:", err)
		os.Exit(1)
	}
}

func run() error {
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (empty: SQLite in a temp dir)")
	redisURL := flag.String("redis-url", os.Getenv("REDIS_URL"), "Redis URL (a scratch DB: it is flushed)")
	n := flag.Int("n", 20000, "events")
	c := flag.Int("c", 64, "concurrent senders")
	rows := flag.Int("rows", 256, "max rows per batch")
	flushers := flag.Int("flushers", 4, "batches committing at once")
	window := flag.Duration("window", 0, "batch window")
	rate := flag.Int("rate", 0, "open-loop rate in events/s (0: closed loop, as fast as possible)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ingestion run")
	noRelay := flag.Bool("no-relay", false, "store only, relay nothing (to see what the relay costs)")
	e2eRate := flag.Float64("e2e-rate", 200, "end-to-end: events/s of the loaded run (0 skips)")
	e2eN := flag.Int("e2e-n", 2000, "end-to-end: events of the loaded run")
	trickleN := flag.Int("trickle-n", 30, "end-to-end: events of the trickle run, one every 500 ms (0 skips)")
	flag.Parse()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, _ := os.MkdirTemp("", "whbench")
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, *dbURL, dir+"/bench.db", store.Options{MaxOpenConns: *flushers + 4})
	if err != nil {
		return err
	}
	defer db.Close()
	schema := fmt.Sprintf("whbench_%d", time.Now().UnixNano())
	if db.Engine == store.Postgres {
		// A scratch schema, dropped afterwards.
		if _, err := db.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public`); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			return err
		}
		db.Close()
		db, err = store.Open(ctx, *dbURL, "", store.Options{MaxOpenConns: *flushers + 4, SearchPath: schema + ",public"})
		if err != nil {
			return err
		}
		defer func() {
			_, _ = db.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
		}()
		var sc string
		_ = db.GetContext(ctx, &sc, `SHOW synchronous_commit`)
		var fs string
		_ = db.GetContext(ctx, &fs, `SHOW fsync`)
		fmt.Printf("postgres: synchronous_commit=%s fsync=%s\n", sc, fs)
	}
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	opt, err := asynq.ParseRedisURI(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	rc := opt.MakeRedisClient().(redis.UniversalClient)
	defer rc.Close()
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return err
	}
	client := asynq.NewClientFromRedisClient(rc)
	rl := relay.New(db, client, log)
	rctx, stopRelay := context.WithCancel(ctx)
	go rl.Run(rctx)
	defer stopRelay()

	var relayed atomic.Int64
	inbox := store.NewInbox(db, store.InboxOptions{MaxRows: *rows, Flushers: *flushers, Window: *window,
		AfterCommit: func(ctx context.Context, msgs []store.OutboxMessage) {
			if *noRelay {
				relayed.Add(int64(len(msgs)))
				return
			}
			tm := make([]tasks.Message, len(msgs))
			for i, m := range msgs {
				tm[i] = tasks.Message(m)
			}
			rl.Publish(ctx, tm...)
			relayed.Add(int64(len(msgs)))
		}})
	defer inbox.Close()
	const secret = "whsec_bench"
	srv, err := api.NewServer(api.Config{Env: "production", WebhookMaxBytes: 256 << 10, JWTSecret: "bench-secret-bench-secret-bench-secret"},
		api.Deps{Log: log, DB: db, Webhooks: payments.NewVerifier([]string{secret}, 300*time.Second, false), Inbox: inbox})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/webhooks/stripe"

	// Stripe signs, not us: payloads are built and signed before the clock starts.
	type delivery struct{ body []byte }
	now := time.Now()
	ds := make([]delivery, *n)
	for i := range ds {
		ds[i].body = []byte(fmt.Sprintf(`{"id":"evt_bench_%d","object":"event","type":"payment_intent.succeeded","api_version":%q,`+
			`"created":%d,"livemode":false,"pending_webhooks":1,"data":{"object":{"id":"pi_bench_%d","object":"payment_intent",`+
			`"amount":5000,"currency":"eur","status":"succeeded","metadata":{"booking_id":"b_%d"}}}}`,
			i, payments.APIVersion, now.Unix(), i, i%200))
	}
	sig := func(b []byte) string { return payments.Sign(b, secret, time.Now()) }
	tr := &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	lat := make([]time.Duration, *n)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	start := time.Now()
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				if *rate > 0 {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(*rate))
					time.Sleep(time.Until(due))
				}
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(ds[i].body))
				req.Header.Set("Stripe-Signature", sig(ds[i].body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	pprof.StopCPUProfile()
	var stored int
	if err := store.Get(ctx, db, &stored, `SELECT count(*) FROM stripe_events`); err != nil {
		return err
	}
	st := inbox.Stats()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("webhook ingestion (HTTP, verify, group-committed event+outbox, relay): %d events, %d senders, %s\n", *n, *c, db.Engine)
	fmt.Printf("  %.0f events/s  p50 %.2f ms  p99 %.2f ms  max %.2f ms  failed %d  stored %d  batches %d (%.1f rows/batch)\n",
		float64(*n)/took.Seconds(), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]), failed.Load(), stored,
		st.Batches, float64(st.Entries)/float64(max(st.Batches, 1)))
	// Wait for the relay to finish, then report how many reached Redis.
	for deadline := time.Now().Add(30 * time.Second); relayed.Load() < int64(stored) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	insp := asynq.NewInspectorFromRedisClient(rc)
	if qi, err := insp.GetQueueInfo(tasks.QueueCritical); err == nil {
		fmt.Printf("  relayed to Redis: %d tasks in queue %s\n", qi.Size, tasks.QueueCritical)
	}

	// Baseline: raw asynq Enqueue of the same count, same concurrency.
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return err
	}
	next.Store(0)
	start = time.Now()
	var enqErr atomic.Int64
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				m, _ := tasks.Encode(tasks.StripeEvent{EventID: fmt.Sprintf("evt_raw_%d", i)})
				t, _ := m.Task()
				if _, err := client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					enqErr.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	raw := time.Since(start)
	fmt.Printf("baseline raw asynq Enqueue: %d tasks: %.0f tasks/s (errors %d)\n", *n, float64(*n)/raw.Seconds(), enqErr.Load())
	fmt.Printf("ratio ingestion/baseline: %.2f\n", raw.Seconds()/took.Seconds())
	if *e2eRate > 0 {
		if err := endToEnd(ctx, db, rc, url, secret, *e2eRate, *e2eN, "loaded"); err != nil {
			return err
		}
	}
	if *trickleN > 0 {
		if err := endToEnd(ctx, db, rc, url, secret, 2, *trickleN, "trickle"); err != nil {
			return err
		}
	}
	return rc.FlushDB(ctx).Err()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
