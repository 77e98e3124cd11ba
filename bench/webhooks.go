package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// benchWebhooks: Stripe webhook ingestion through the real `rentalportal
// api` process — signature check, the group-committed insert of the event
// and its stripe:event outbox row, the relay to Redis — with signed
// payment_intent.succeeded deliveries from concurrent senders, beside raw
// asynq Enqueue of as many tasks from as many goroutines in the same run;
// then webhook → booking confirmed with a worker process too, at 200
// events/s and at a trickle (webhooks_e2e.go).
func benchWebhooks(ctx context.Context, env Env) ([]Row, error) {
	n, sweepDur, candidates := 20000, 1500*time.Millisecond, []int{16, 32, 64}
	e2eRate, e2eN, trickleN := 200.0, 2000, 30
	if env.Quick {
		n, sweepDur, candidates = 2000, 500*time.Millisecond, []int{32}
		e2eN, trickleN = 200, 6
	}
	st, err := newStack(ctx, env, "bench_webhooks", 13)
	if err != nil {
		return nil, err
	}
	defer st.close()
	apiProc, base, err := st.startAPI(ctx, nil)
	if err != nil {
		return nil, err
	}
	insp, client := st.insp, st.client
	t := newTarget(base, candidates[len(candidates)-1])
	defer t.close()

	// Sweep the senders (this also warms the API up), on events of their own.
	var seq atomic.Int64
	fresh := func(ctx context.Context, _ int) (int, error) {
		i, now := seq.Add(1), time.Now()
		b := paymentSucceeded(fmt.Sprintf("evt_sweep_%d", i), fmt.Sprintf("pi_sweep_%d", i), "b_sweep", now)
		return t.post(ctx, "/webhooks/stripe", b, map[string]string{"Stripe-Signature": payments.Sign(b, benchWebhookSecret, now)})
	}
	sweep, senders, err := sweepClients(ctx, candidates, sweepDur, fresh, http.StatusOK)
	if err != nil {
		return nil, err
	}
	warm := int(seq.Load())
	if err := waitQueued(ctx, insp, tasks.QueueCritical, warm); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}

	// Stripe signs, not us: deliveries are built and signed before the clock starts.
	bodies, sigs := make([][]byte, n), make([]string, n)
	now := time.Now()
	for i := range bodies {
		bodies[i] = paymentSucceeded(fmt.Sprintf("evt_bench_%d", i), fmt.Sprintf("pi_bench_%d", i), fmt.Sprintf("b_unknown_%d", i%200), now)
		sigs[i] = payments.Sign(bodies[i], benchWebhookSecret, now)
	}
	deliver := func(ctx context.Context, i int) (int, error) {
		return t.post(ctx, "/webhooks/stripe", bodies[i], map[string]string{"Stripe-Signature": sigs[i]})
	}
	mt := newMeter(ctx, st.db, st.rc).watch("api", apiProc)
	s := mt.sample(ctx)
	m0, _ := scrape(ctx, base+"/metrics")
	act := watchActivity(ctx, st.db)
	res := closedLoad(ctx, senders, 0, n, deliver)
	backends := act.finish()
	m1, _ := scrape(ctx, base+"/metrics")
	use := mt.since(ctx, s)
	if bad := res.unexpected(http.StatusOK); bad > 0 {
		return nil, fmt.Errorf("%d deliveries not answered 200: %s", bad, res.answers())
	}
	var stored int
	if err := store.Get(ctx, st.db, &stored, `SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_bench_%'`); err != nil {
		return nil, err
	}
	if stored != n {
		return nil, fmt.Errorf("%d of %d events stored", stored, n)
	}
	// Each stored event's task must reach Redis (the relay runs after commit).
	if err := waitQueued(ctx, insp, tasks.QueueCritical, warm+n); err != nil {
		return nil, err
	}

	var profRow *Row
	if env.Profiles != "" {
		r, err := profileIngestion(ctx, st, n, senders, res.rate())
		if err != nil {
			return nil, err
		}
		profRow = &r
	}

	// Baseline: raw asynq Enqueue of as many tasks, as many goroutines.
	if err := st.rc.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	baseRate, err := rawEnqueue(ctx, client, n, senders)
	if err != nil {
		return nil, err
	}
	if err := st.rc.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}

	rate, p99, p50 := res.rate(), percentile(res.lat, 0.99), percentile(res.lat, 0.5)
	rows := []Row{
		{Metric: fmt.Sprintf("concurrency sweep (%s each); knee: %d", sweepDur, senders), Value: describeSweep(sweep)},
		{Metric: fmt.Sprintf("ingestion events/s (%d signed events, %d senders)", n, senders), Value: fmt.Sprintf("%.0f/s", rate),
			Baseline: fmt.Sprintf("raw asynq Enqueue %.0f/s", baseRate), Ratio: ratio(rate, baseRate),
			Target: "≥ 5000/s", Verdict: verdict(rate >= 5000)},
		{Metric: "ingestion p99", Value: msPrecise(p99), Baseline: "-", Target: "< 25 ms", Verdict: verdict(p99 < 25*time.Millisecond)},
		{Metric: "ingestion p50", Value: msPrecise(p50)},
		{Metric: "  server-side time (API's histogram)", Value: histogramShares(m0, m1,
			"rentalportal_http_request_duration_seconds", `route="/webhooks/stripe"`)},
		{Metric: "  events per transaction (group commit)", Value: fmt.Sprintf("%.1f", float64(n)/float64(max(use.xacts, 1))),
			Baseline: "PostgreSQL " + use.perOp(n)},
		{Metric: "  CPU cores busy", Value: use.cores()},
		{Metric: "  PostgreSQL backends (average count by state)", Value: backends},
	}
	if profRow != nil {
		rows = append(rows, *profRow)
	}
	if ctx.Err() != nil {
		return rows, ctx.Err()
	}

	// Webhook → booking confirmed, with a worker; first asynq's own
	// latency at the same rates (before the worker takes the queues).
	floorLoaded, err := queueLatency(ctx, st.rc, 10*time.Millisecond, time.Duration(float64(time.Second)/e2eRate), min(e2eN, 400))
	if err != nil {
		return rows, err
	}
	floorIdle, err := queueLatency(ctx, st.rc, 10*time.Millisecond, 100*time.Millisecond, min(trickleN, 20))
	if err != nil {
		return rows, err
	}
	if err := st.rc.FlushDB(ctx).Err(); err != nil {
		return rows, err
	}
	w, wBase, err := st.startWorker(ctx, nil)
	if err != nil {
		return rows, err
	}
	m, err := seedMarket(ctx, st.db, "wh", 16, 500)
	if err != nil {
		return rows, err
	}
	e2e := &endToEnd{st: st, t: t, m: m, metrics: wBase + "/metrics"}
	for _, run := range []struct {
		label string
		rate  float64
		n     int
		floor []time.Duration
	}{{fmt.Sprintf("%.0f events/s", e2eRate), e2eRate, e2eN, floorLoaded}, {"trickle, one per 500 ms", 2, trickleN, floorIdle}} {
		r, err := e2e.run(ctx, run.label, run.rate, run.n, w, run.floor)
		if err != nil {
			return rows, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// profileIngestion delivers as many events again to an in-process twin of
// the API under the CPU profiler.
func profileIngestion(ctx context.Context, st *stack, n, senders int, realRate float64) (Row, error) {
	t, stop, err := twinAPI(ctx, st, senders)
	if err != nil {
		return Row{}, err
	}
	defer stop()
	now := time.Now()
	bodies, sigs := make([][]byte, n), make([]string, n)
	for i := range bodies {
		bodies[i] = paymentSucceeded(fmt.Sprintf("evt_twin_%d", i), fmt.Sprintf("pi_twin_%d", i), "b_twin", now)
		sigs[i] = payments.Sign(bodies[i], benchWebhookSecret, now)
	}
	var r loadStats
	cmd, err := profileCPU(st.env.Profiles, "webhooks-api", func() {
		r = closedLoad(ctx, senders, 0, n, func(ctx context.Context, i int) (int, error) {
			return t.post(ctx, "/webhooks/stripe", bodies[i], map[string]string{"Stripe-Signature": sigs[i]})
		})
	})
	if err == nil && r.unexpected(http.StatusOK) > 0 {
		err = fmt.Errorf("twin: %s", r.answers())
	}
	return profileRow("API", r.rate(), realRate, cmd), err
}

// paymentSucceeded is a payment_intent.succeeded event as Stripe sends it
// (the fields the platform reads), for a booking by metadata.
func paymentSucceeded(eventID, intentID, bookingID string, created time.Time) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","type":"payment_intent.succeeded","api_version":%q,"created":%d,`+
		`"livemode":false,"pending_webhooks":1,"data":{"object":{"id":%q,"object":"payment_intent","status":"succeeded",`+
		`"amount":1000,"amount_received":1000,"currency":"eur","metadata":{"booking_id":%q}}}}`,
		eventID, payments.APIVersion, created.Unix(), intentID, bookingID))
}

// waitQueued waits until queue holds at least n tasks (pending or done).
func waitQueued(ctx context.Context, insp *asynq.Inspector, queue string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetQueueInfo(queue)
		if err == nil && info.Size+info.Completed >= n {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			got := 0
			if info != nil {
				got = info.Size + info.Completed
			}
			return fmt.Errorf("%d of %d tasks reached queue %s", got, n, queue)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawEnqueue enqueues n stripe:event tasks (the contract's options) from
// the given number of goroutines and returns tasks/s.
func rawEnqueue(ctx context.Context, client *asynq.Client, n, goroutines int) (float64, error) {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				m, _ := tasks.Encode(tasks.StripeEvent{EventID: fmt.Sprintf("evt_raw_%d", i)})
				t, err := m.Task()
				if err == nil {
					_, err = client.EnqueueContext(ctx, t)
				}
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					failed.Add(1)
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("raw enqueue: %d failed: %w", failed.Load(), firstErr)
	}
	return float64(n) / time.Since(start).Seconds(), ctx.Err()
}
