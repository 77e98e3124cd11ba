package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
)

// endToEnd measures webhook → booking confirmed through the API and
// worker processes: payment_intent.succeeded deliveries for pending
// bookings made beforehand, sent open-loop at a fixed rate. An event's
// latency is the confirmed history row's time (written in the transaction
// that confirms the booking) minus the moment its POST started; the
// event's received_at splits it into the API's part and the rest (commit,
// relay, pickup by the worker, the transition).
type endToEnd struct {
	st      *stack
	t       *target
	m       *market
	metrics string // the worker's
	seq     int
}

// floor is asynq's own enqueue → handler latency measured at the same
// rate: the baseline.
func (e *endToEnd) run(ctx context.Context, label string, rate float64, n int, worker *proc, floor []time.Duration) ([]Row, error) {
	e.seq++
	prefix := fmt.Sprintf("wh-e2e%d", e.seq)
	// Each run books nights of its own, after the previous runs'.
	ids, err := seedPendingBookings(ctx, e.st.db, e.m, prefix, e.seq*100_000, n, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	mt := newMeter(ctx, e.st.db, e.st.rc).watch("worker", worker)
	s := mt.sample(ctx)
	m0, _ := scrape(ctx, e.metrics)
	mails0 := e.st.mail.messages.Load()
	sent := make([]time.Time, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := map[string]int{}
	probe := startDiskProbe(e.st.env.Tmp)
	defer probe.finish(new([]time.Duration), new(error))
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		body := paymentSucceeded("evt_"+ids[i], "pi_"+ids[i], ids[i], time.Now())
		sig := payments.Sign(body, benchWebhookSecret, time.Now())
		sent[i] = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := e.t.post(ctx, "/webhooks/stripe", body, map[string]string{"Stripe-Signature": sig})
			if err != nil || code != 200 {
				mu.Lock()
				bad[fmt.Sprint(code, err)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s: deliveries refused: %v", label, bad)
	}
	type conf struct {
		ID       string    `db:"booking_id"`
		At       time.Time `db:"created_at"`
		Received time.Time `db:"received_at"`
	}
	var rows []conf
	for deadline := time.Now().Add(30 * time.Second); ; {
		rows = rows[:0]
		if err := store.Select(ctx, e.st.db, &rows, `SELECT h.booking_id, h.created_at, e.received_at FROM booking_history h
			JOIN stripe_events e ON e.id = 'evt_' || h.booking_id
			WHERE h.booking_id LIKE ? AND h.to_status = 'confirmed'`, prefix+"-%"); err != nil {
			return nil, err
		}
		if len(rows) == n || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var disk []time.Duration
	var diskErr error
	probe.finish(&disk, &diskErr)
	use := mt.since(ctx, s)
	m1, _ := scrape(ctx, e.metrics)
	mails := e.st.mail.messages.Load() - mails0
	if len(rows) < n {
		return nil, fmt.Errorf("%s: %d of %d bookings confirmed within 30 s", label, len(rows), n)
	}
	idx := make(map[string]int, n)
	for i, id := range ids {
		idx[id] = i
	}
	var total, apiPart, rest []time.Duration
	for _, r := range rows {
		t0 := sent[idx[r.ID]]
		total = append(total, r.At.Sub(t0))
		apiPart = append(apiPart, r.Received.Sub(t0))
		rest = append(rest, r.At.Sub(r.Received))
	}
	p50, p99 := percentile(total, 0.5), percentile(total, 0.99)
	f50, f99 := percentile(floor, 0.5), percentile(floor, 0.99)
	return []Row{
		{Metric: fmt.Sprintf("webhook → confirmed p50, %s (%d events)", label, n), Value: msPrecise(p50),
			Baseline: "asynq enqueue → no-op " + msPrecise(f50), Ratio: ratio(float64(p50), float64(f50)),
			Target: "≤ 15 ms", Verdict: verdict(p50 <= 15*time.Millisecond)},
		{Metric: fmt.Sprintf("webhook → confirmed p99, %s", label), Value: msPrecise(p99),
			Baseline: "asynq enqueue → no-op " + msPrecise(f99), Ratio: ratio(float64(p99), float64(f99)),
			Target: "≤ 50 ms", Verdict: verdict(p99 <= 50*time.Millisecond)},
		{Metric: "  POST → API handler, p50 / p99", Value: msPrecise(percentile(apiPart, 0.5)) + " / " + msPrecise(percentile(apiPart, 0.99))},
		{Metric: "  then commit, relay, pickup, transition: p50 / p99", Value: msPrecise(percentile(rest, 0.5)) + " / " + msPrecise(percentile(rest, 0.99))},
		{Metric: "  worker: stripe:event handler time", Value: histogramShares(m0, m1,
			"rentalportal_task_duration_seconds", `task_type="stripe:event"`)},
		{Metric: "  worker: attempts failed (of which retried), all types", Value: fmt.Sprintf("%.0f (%.0f) of %.0f",
			counterDelta(m0, m1, "rentalportal_tasks_failed_total"), counterDelta(m0, m1, "rentalportal_tasks_retried_total"),
			counterDelta(m0, m1, "rentalportal_tasks_processed_total"))},
		{Metric: "  emails the worker sent meanwhile (SMTP; two per confirmation)", Value: fmt.Sprint(mails)},
		{Metric: "  CPU cores busy", Value: use.cores()},
		{Metric: "  the disk meanwhile: " + diskProbeLabel, Value: describeDisk(disk, diskErr)},
	}, nil
}
