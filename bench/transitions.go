package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// benchTransitions: booking:expire tasks for pending bookings whose
// deadline has passed, processed by the real `rentalportal worker` process
// (the real handler: read the booking, compare-and-set it to expired with
// its history row, domain event and its notify:event outbox row in one transaction,
// publish the notify task), beside a bare asynq server with a no-op
// handler over the same Redis and queues, in this process (the issue's
// baseline), and beside as many no-op servers as the worker has fetchers.
// Each side's tasks wait in a paused queue until the clock starts, so the
// figure is processing alone, not enqueueing.
func benchTransitions(ctx context.Context, env Env) ([]Row, error) {
	n := 20000
	if env.Quick {
		n = 2000
	}
	st, err := newStack(ctx, env, "bench_transitions", 12)
	if err != nil {
		return nil, err
	}
	defer st.close()
	insp := st.insp

	// Baselines first: asynq and a handler that does nothing, on one
	// server (the issue's), then on as many as the worker's fetchers.
	baseRate, baseUse, err := noopThroughput(ctx, st, n, 1)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := st.rc.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	fetchers := 2
	if v := env.Set["WORKER_FETCHERS"]; v != "" {
		if fetchers, err = strconv.Atoi(v); err != nil {
			return nil, err
		}
	}
	fetchRate, _, err := noopThroughput(ctx, st, n, fetchers)
	if err != nil {
		return nil, fmt.Errorf("baseline with %d fetchers: %w", fetchers, err)
	}
	if err := st.rc.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}

	m, err := seedMarket(ctx, st.db, "tr", 64, 2000)
	if err != nil {
		return nil, err
	}
	ids, err := seedPendingBookings(ctx, st.db, m, "tr-b", 0, n, time.Now().Add(-time.Minute))
	if err != nil {
		return nil, err
	}
	w, wBase, err := st.startWorker(ctx, nil)
	if err != nil {
		return nil, err
	}
	msgs := make([]tasks.Message, len(ids))
	for i, id := range ids {
		if msgs[i], err = tasks.Encode(tasks.BookingExpire{BookingID: id}); err != nil {
			return nil, err
		}
	}
	if err := enqueuePaused(ctx, st, tasks.QueueDefault, len(msgs), func(i int) (*asynq.Task, error) { return msgs[i].Task() }); err != nil {
		return nil, err
	}
	mt := newMeter(ctx, st.db, st.rc).watch("worker", w)
	done0 := processedTotal(ctx, st)
	s := mt.sample(ctx)
	m0, _ := scrape(ctx, wBase+"/metrics")
	act := watchActivity(ctx, st.db)
	ran0, err := ranTotal(ctx, st.rc, tasks.QueueDefault)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := insp.UnpauseQueue(tasks.QueueDefault); err != nil {
		return nil, err
	}
	var expired int
	took, err := waitDone(ctx, st.rc, tasks.QueueDefault, ran0, n, start, 2*time.Minute, func() (bool, error) {
		err := store.Get(ctx, st.db, &expired, `SELECT count(*) FROM bookings WHERE status = 'expired'`)
		return expired == n, err
	})
	if err != nil {
		return nil, err
	}
	backends := act.finish()
	use := mt.since(ctx, s)
	m1, _ := scrape(ctx, wBase+"/metrics")
	all := processedTotal(ctx, st) - done0
	backlog := 0
	if info, err := insp.GetQueueInfo(tasks.QueueDefault); err == nil {
		backlog = info.Pending
	}
	rate := float64(n) / took.Seconds()
	// The notifications the expiries asked for are work too: wait for
	// them (at most 2 minutes) for the rate the worker can sustain.
	drained, drainErr := waitDrained(ctx, insp, tasks.QueueDefault, start, 2*time.Minute)
	m2, _ := scrape(ctx, wBase+"/metrics")
	conc := "40"
	if v := env.Set["WORKER_CONCURRENCY"]; v != "" {
		conc = v
	}
	rows := []Row{
		{Metric: fmt.Sprintf("booking:expire tasks/s, real worker (%d tasks, concurrency %s, %d fetchers)", n, conc, fetchers), Value: fmt.Sprintf("%.0f/s", rate),
			Baseline: fmt.Sprintf("asynq no-op handler %.0f/s", baseRate), Ratio: ratio(rate, baseRate),
			Target: "≥ 3000/s", Verdict: verdict(rate >= 3000)},
		// The 3000/s was set beside a no-op it expected at about
		// 9000/s; on this machine the no-op is slower, so the same run's
		// ratio is the figure the machine's noise does not move.
		{Metric: "  the same as a ratio to the no-op (issue: 3000 of ≈ 9000/s)", Value: ratio(rate, baseRate),
			Target: "≥ 0.33×", Verdict: verdict(baseRate > 0 && rate/baseRate >= 1.0/3)},
		{Metric: fmt.Sprintf("  the same beside the no-op on %d servers, as the worker's fetchers", fetchers), Value: fmt.Sprintf("%.0f/s", rate),
			Baseline: fmt.Sprintf("asynq no-op handler, %d servers %.0f/s", fetchers, fetchRate), Ratio: ratio(rate, fetchRate)},
		{Metric: "  tasks of any type processed meanwhile", Value: fmt.Sprintf("%d (%.0f/s)", all, float64(all)/took.Seconds())},
		{Metric: "  notify tasks the expiries queued behind them, left pending", Value: fmt.Sprint(backlog)},
		{Metric: "  expiries/s with their notify tasks done too", Value: drainedRate(n, drained, drainErr)},
		{Metric: "  worker: attempts failed (of which retried), all types", Value: fmt.Sprintf("%.0f (%.0f) of %.0f",
			counterDelta(m0, m2, "rentalportal_tasks_failed_total"), counterDelta(m0, m2, "rentalportal_tasks_retried_total"),
			counterDelta(m0, m2, "rentalportal_tasks_processed_total"))},
		{Metric: "  handler time of notify:event (in-app and email of one event)", Value: histogramShares(m1, m2,
			"rentalportal_task_duration_seconds", `task_type="notify:event"`)},
		{Metric: "  handler time of booking:expire (worker's histogram)", Value: histogramShares(m0, m1,
			"rentalportal_task_duration_seconds", `task_type="booking:expire"`)},
		{Metric: "  CPU cores busy", Value: use.cores(), Baseline: "no-op " + baseUse.cores()},
		{Metric: "  CPU per task", Value: use.cpuPerOp(n), Baseline: "no-op (asynq alone) " + baseUse.cpuPerOp(n)},
		{Metric: "  PostgreSQL per expiry", Value: use.perOp(n)},
		{Metric: "  PostgreSQL backends (average count by state)", Value: backends},
	}
	if env.Profiles != "" {
		st.stopProc(w)
		if err := st.rc.FlushDB(ctx).Err(); err != nil { // the notify backlog
			return rows, err
		}
		r, err := profileTransitions(ctx, st, m, n, rate)
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// profileTransitions expires as many bookings again with an in-process
// twin of the worker under the CPU profiler.
func profileTransitions(ctx context.Context, st *stack, m *market, n int, realRate float64) (Row, error) {
	ids, err := seedPendingBookings(ctx, st.db, m, "tr-twin", n, n, time.Now().Add(-time.Minute))
	if err != nil {
		return Row{}, err
	}
	if err := enqueuePaused(ctx, st, tasks.QueueDefault, n, func(i int) (*asynq.Task, error) {
		msg, err := tasks.Encode(tasks.BookingExpire{BookingID: ids[i]})
		if err != nil {
			return nil, err
		}
		return msg.Task()
	}); err != nil {
		return Row{}, err
	}
	tw, err := newTwin(ctx, st)
	if err != nil {
		return Row{}, err
	}
	defer tw.close()
	if err := tw.worker(ctx); err != nil {
		return Row{}, err
	}
	time.Sleep(200 * time.Millisecond)
	var took time.Duration
	var waitErr error
	cmd, err := profileCPU(st.env.Profiles, "transitions-worker", func() {
		ran0, err := ranTotal(ctx, st.rc, tasks.QueueDefault)
		if err != nil {
			waitErr = err
			return
		}
		start := time.Now()
		if waitErr = st.insp.UnpauseQueue(tasks.QueueDefault); waitErr != nil {
			return
		}
		took, waitErr = waitDone(ctx, st.rc, tasks.QueueDefault, ran0, n, start, 2*time.Minute, func() (bool, error) {
			var left int
			err := store.Get(ctx, st.db, &left, `SELECT count(*) FROM bookings WHERE status = 'pending_payment' AND id LIKE 'tr-twin-%'`)
			return left == 0, err
		})
	})
	if err == nil {
		err = waitErr
	}
	return profileRow("worker", float64(n)/took.Seconds(), realRate, cmd), err
}

// noopThroughput measures asynq alone: n tasks that do nothing, waiting in
// a paused queue, taken by the given number of asynq servers of
// concurrency 20 on the platform's queue weights, the first polling every
// 10 ms and the others every 100 ms, as the worker's fetchers do.
func noopThroughput(ctx context.Context, st *stack, n, servers int) (float64, usage, error) {
	var count atomic.Int64
	all := make(chan struct{})
	var once sync.Once
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:noop", func(context.Context, *asynq.Task) error {
		if count.Add(1) == int64(n) {
			once.Do(func() { close(all) })
		}
		return nil
	})
	if err := enqueuePaused(ctx, st, tasks.QueueDefault, n, func(int) (*asynq.Task, error) {
		return asynq.NewTask("bench:noop", nil, asynq.Queue(tasks.QueueDefault)), nil
	}); err != nil {
		return 0, usage{}, err
	}
	for i := range servers {
		check := 10 * time.Millisecond
		if i > 0 {
			check = 100 * time.Millisecond
		}
		srv := asynq.NewServerFromRedisClient(st.rc, asynq.Config{Concurrency: 20, Queues: tasks.QueueWeights,
			TaskCheckInterval: check, LogLevel: asynq.ErrorLevel})
		if err := srv.Start(mux); err != nil {
			return 0, usage{}, err
		}
		defer srv.Shutdown()
	}
	time.Sleep(200 * time.Millisecond) // its processors are waiting
	m := newMeter(ctx, st.db, st.rc)
	s := m.sample(ctx)
	start := time.Now()
	if err := st.insp.UnpauseQueue(tasks.QueueDefault); err != nil {
		return 0, usage{}, err
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		return 0, usage{}, fmt.Errorf("%d of %d no-op tasks ran", count.Load(), n)
	case <-ctx.Done():
		return 0, usage{}, ctx.Err()
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, m.since(ctx, s), nil
}

// waitDrained waits until queue has nothing pending, scheduled, retrying
// or running, and returns the time since start.
func waitDrained(ctx context.Context, insp *asynq.Inspector, queue string, start time.Time, limit time.Duration) (time.Duration, error) {
	for {
		info, err := insp.GetQueueInfo(queue)
		if err != nil {
			return 0, err
		}
		if info.Pending+info.Active+info.Scheduled+info.Retry == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			return 0, fmt.Errorf("%d tasks left after %s", info.Pending+info.Active+info.Scheduled+info.Retry, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func drainedRate(n int, took time.Duration, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%.0f/s (all done in %.1f s)", float64(n)/took.Seconds(), took.Seconds())
}

// enqueuePaused pauses queue and enqueues n tasks into it from 32
// goroutines; the caller unpauses it to start the clock.
func enqueuePaused(ctx context.Context, st *stack, queue string, n int, task func(i int) (*asynq.Task, error)) error {
	if err := st.insp.PauseQueue(queue); err != nil {
		return err
	}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				t, err := task(i)
				if err == nil {
					_, err = st.client.EnqueueContext(ctx, t)
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// ranTotal reads asynq's count of the task runs (done or failed) of a
// queue: one GET, which the system under test does not notice.
func ranTotal(ctx context.Context, rc redis.UniversalClient, queue string) (int64, error) {
	n, err := rc.Get(ctx, "asynq:{"+queue+"}:processed").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// waitDone waits until done (the truth, from the database) says the n
// tasks of queue started at start have done their work, and returns how
// long they took. Asking the database is not free: a count over the
// bookings every 10 ms took a third of a core from the system being
// measured. So it watches asynq's run count of the queue (one GET every
// 2 ms) and asks done only once n more runs were counted since ran0, and
// every 100 ms after that (runs that failed and wait for a retry).
func waitDone(ctx context.Context, rc redis.UniversalClient, queue string, ran0 int64, n int, start time.Time, limit time.Duration, done func() (bool, error)) (time.Duration, error) {
	var asked time.Time
	for {
		ran, err := ranTotal(ctx, rc, queue)
		if err != nil {
			return 0, err
		}
		if ran-ran0 >= int64(n) && time.Since(asked) >= 100*time.Millisecond {
			took := time.Since(start)
			ok, err := done()
			if err != nil || ok {
				return took, err
			}
			asked = time.Now()
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			return 0, fmt.Errorf("the %d tasks were not done after %s (%d runs counted)", n, limit, ran-ran0)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// processedTotal is how many tasks the queues have processed, all time:
// the sum of their ranTotal.
func processedTotal(ctx context.Context, st *stack) int {
	qs, err := st.insp.Queues()
	if err != nil {
		return 0
	}
	total := 0
	for _, q := range qs {
		if n, err := ranTotal(ctx, st.rc, q); err == nil {
			total += int(n)
		}
	}
	return total
}
