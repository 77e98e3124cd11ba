package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type stormEvent struct {
	id      string
	payload []byte
}

// stormBooking is one booking's scenario and what it must end as.
type stormBooking struct {
	id      string
	events  []stormEvent
	want    booking.Status
	payment string
}

func stormScenario(bookingID string, kind int, base int64, seq *int) stormBooking {
	b := stormBooking{id: bookingID}
	pi := func(status string) map[string]any {
		recv := 0
		if status == "succeeded" {
			recv = 1000
		}
		return map[string]any{"id": "pi_" + bookingID, "object": "payment_intent", "status": status, "amount": 1000,
			"amount_received": recv, "currency": "eur", "metadata": map[string]string{"booking_id": bookingID}}
	}
	ch := func(status string, refunded int64) map[string]any {
		return map[string]any{"id": "ch_" + bookingID, "object": "charge", "status": status, "amount": 1000, "paid": status == "succeeded",
			"amount_refunded": refunded, "refunded": refunded >= 1000, "currency": "eur", "payment_intent": "pi_" + bookingID,
			"metadata": map[string]string{"booking_id": bookingID}}
	}
	dp := func(status string) map[string]any {
		return map[string]any{"id": "dp_" + bookingID, "object": "dispute", "status": status, "amount": 1000, "currency": "eur",
			"charge": "ch_" + bookingID, "payment_intent": "pi_" + bookingID, "reason": "fraudulent"}
	}
	add := func(typ string, dt int64, obj map[string]any) {
		*seq++
		id := fmt.Sprintf("evt_storm_%06d", *seq)
		p, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": payments.APIVersion,
			"created": base + dt, "livemode": false, "data": map[string]any{"object": obj}})
		b.events = append(b.events, stormEvent{id, p})
	}
	switch kind {
	case 0, 1, 2, 3: // paid
		add("payment_intent.processing", 0, pi("processing"))
		add("payment_intent.succeeded", 2, pi("succeeded"))
		add("charge.succeeded", 2, ch("succeeded", 0))
		add("payment_intent.processing", 1, pi("processing"))
		b.want, b.payment = booking.Confirmed, store.PaymentSucceeded
	case 4, 5: // a failed attempt, then success
		add("payment_intent.payment_failed", 0, pi("requires_payment_method"))
		add("charge.failed", 0, ch("failed", 0))
		add("payment_intent.processing", 1, pi("processing"))
		add("payment_intent.succeeded", 3, pi("succeeded"))
		b.want, b.payment = booking.Confirmed, store.PaymentSucceeded
	case 6: // failed only
		add("payment_intent.payment_failed", 0, pi("requires_payment_method"))
		add("charge.failed", 0, ch("failed", 0))
		b.want, b.payment = booking.PendingPayment, store.PaymentFailed
	case 7: // paid, then refunded in two parts
		add("payment_intent.succeeded", 0, pi("succeeded"))
		add("charge.succeeded", 0, ch("succeeded", 0))
		add("charge.refunded", 5, ch("succeeded", 300))
		add("charge.refunded", 8, ch("succeeded", 1000))
		b.want, b.payment = booking.Refunded, store.PaymentRefunded
	case 8: // dispute won
		add("payment_intent.succeeded", 0, pi("succeeded"))
		add("charge.dispute.created", 10, dp("needs_response"))
		add("charge.dispute.funds_withdrawn", 11, dp("needs_response"))
		add("charge.dispute.updated", 12, dp("under_review"))
		add("charge.dispute.closed", 20, dp("won"))
		add("charge.dispute.funds_reinstated", 21, dp("won"))
		b.want, b.payment = booking.Confirmed, store.PaymentSucceeded
	case 9: // dispute lost
		add("payment_intent.succeeded", 0, pi("succeeded"))
		add("charge.dispute.created", 10, dp("needs_response"))
		add("charge.dispute.funds_withdrawn", 11, dp("needs_response"))
		add("charge.dispute.closed", 20, dp("lost"))
		b.want, b.payment = booking.Refunded, store.PaymentSucceeded
	}
	// Events of types we do not act on fill every booking to ten.
	for len(b.events) < 10 {
		add("customer.created", 0, map[string]any{"id": "cus_" + bookingID, "object": "customer"})
	}
	return b
}

// proc is a child rentalportal process.
type proc struct {
	mu  sync.Mutex
	cmd *exec.Cmd
}

func start(t *testing.T, bin, role string, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, role)
	// Each process its own probe/metrics port: the default :9090 would let
	// only one worker (of this or any other test) start.
	cmd.Env = append(append([]string(nil), env...), "METRICS_ADDR=127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	return cmd
}

// TestStorm: 2,000 events for 200 bookings (success, failure, refund and
// dispute mixes), 20% delivered twice, shuffled, posted concurrently to the
// real API process while worker processes are SIGKILLed and restarted.
// Every booking must end in its expected state with a consistent history,
// every event processed exactly once, and no task archived. Orphaned tasks
// of killed workers come back after asynq's lease (30 s) and recoverer
// tick (≤ 1 min), so this test takes a minute or two.
func TestStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm: starts processes and waits for asynq's recovery")
	}
	t.Parallel()
	bin := testkit.Binary(t)
	dbURL := testkit.PostgresSchemaURL(t)
	rd := testkit.RedisDB(t)
	addr := freeAddr(t)
	const secret = "whsec_storm"
	env := append(os.Environ(), "APP_ENV=development", "DATABASE_URL="+dbURL, "REDIS_URL="+rd.URL, "HTTP_ADDR="+addr,
		"DATA_DIR="+t.TempDir(), "STRIPE_WEBHOOK_SECRET="+secret, "LOG_LEVEL=error", "WORKER_CONCURRENCY=8",
		"STRIPE_SECRET_KEY=", "SHUTDOWN_TIMEOUT=2s")
	apiCmd := start(t, bin, "api", env)
	t.Cleanup(func() { _ = apiCmd.Process.Kill(); _ = apiCmd.Wait() })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/health/liveness")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("api did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL, "", store.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := store.Now()
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := store.Exec(ctx, db, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(`INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at) VALUES ('u1', 'u1@example.com', 'x', 'U', 'owner', ?, ?)`, now, now)
	mustExec(`INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at) VALUES ('l1', 'u1', 'Bike', 500, 'EUR', ?, ?)`, now, now)
	var bookings []stormBooking
	var deliveries []stormEvent
	seq := 0
	baseCreated := time.Now().Add(-time.Minute).Unix()
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("b%03d", i)
		start := time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*i)
		mustExec(`INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status, total_amount, currency,
			expires_at, created_at, updated_at) VALUES (?, 'l1', 'u1', 'u1', ?, ?, 'pending_payment', 1000, 'EUR', ?, ?, ?)`,
			id, start.Format("2006-01-02"), start.AddDate(0, 0, 2).Format("2006-01-02"), now.Add(time.Hour), now, now)
		b := stormScenario(id, i%10, baseCreated, &seq)
		bookings = append(bookings, b)
		deliveries = append(deliveries, b.events...)
	}
	if len(deliveries) != 2000 {
		t.Fatalf("%d events, want 2000", len(deliveries))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range rng.Perm(len(deliveries))[:400] {
		deliveries = append(deliveries, deliveries[i])
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })

	// Two workers, one of them SIGKILLed and restarted every 300 ms while
	// the events arrive.
	workers := []*proc{{cmd: start(t, bin, "worker", env)}, {cmd: start(t, bin, "worker", env)}}
	t.Cleanup(func() {
		for _, w := range workers {
			w.mu.Lock()
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
			w.mu.Unlock()
		}
	})
	stopKilling := make(chan struct{})
	var killer sync.WaitGroup
	kills := 0
	killer.Add(1)
	go func() {
		defer killer.Done()
		for i := 0; ; i++ {
			select {
			case <-stopKilling:
				return
			case <-time.After(300 * time.Millisecond):
			}
			w := workers[i%2]
			w.mu.Lock()
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			_ = w.cmd.Wait()
			kills++
			w.cmd = start(t, bin, "worker", env)
			w.mu.Unlock()
		}
	}()

	var wg sync.WaitGroup
	next := make(chan stormEvent)
	errs := make(chan error, len(deliveries))
	hc := &http.Client{Timeout: 10 * time.Second}
	for s := 0; s < 16; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range next {
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/stripe", bytes.NewReader(ev.payload))
					req.Header.Set("Stripe-Signature", payments.Sign(ev.payload, secret, time.Now()))
					resp, err := hc.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					if attempt == 5 { // Stripe would retry too
						errs <- fmt.Errorf("%s: %v", ev.id, err)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	for _, d := range deliveries {
		next <- d
	}
	close(next)
	wg.Wait()
	time.Sleep(time.Second)
	close(stopKilling)
	killer.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d deliveries posted, %d worker kills", len(deliveries), kills)

	// Wait for every event to be processed.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var left int
		if err := store.Get(ctx, db, &left, `SELECT count(*) FROM stripe_events WHERE processed_at IS NULL`); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still unprocessed", left)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var stored int
	if err := store.Get(ctx, db, &stored, `SELECT count(*) FROM stripe_events`); err != nil || stored != 2000 {
		t.Fatalf("stored events = %d (%v), want 2000", stored, err)
	}
	for _, b := range bookings {
		got, err := store.GetBooking(ctx, db, b.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != b.want {
			t.Errorf("booking %s: %s, want %s", b.id, got.Status, b.want)
		}
		pay, err := store.GetPaymentByBooking(ctx, db, b.id)
		if err != nil || pay.Status != b.payment {
			t.Errorf("booking %s: payment %v (%v), want %s", b.id, pay, err, b.payment)
		}
		hs, err := store.BookingHistory(ctx, db, b.id)
		if err != nil {
			t.Fatal(err)
		}
		// Exactly once: a transition per (event, from, to), a chain from
		// pending_payment to the final state.
		seen := map[string]bool{}
		from := string(booking.PendingPayment)
		for _, h := range hs {
			k := h.SourceRef + h.FromStatus + h.ToStatus
			if seen[k] || h.FromStatus != from || h.Source != store.SourceStripe {
				t.Errorf("booking %s: history is not a chain of distinct events: %+v", b.id, hs)
				break
			}
			seen[k], from = true, h.ToStatus
		}
		if from != string(b.want) {
			t.Errorf("booking %s: history ends at %s, want %s", b.id, from, b.want)
		}
	}
	var outcomes []struct {
		Outcome string `db:"outcome"`
		N       int    `db:"n"`
	}
	_ = store.Select(ctx, db, &outcomes, `SELECT outcome, count(*) AS n FROM stripe_events GROUP BY outcome ORDER BY outcome`)
	t.Logf("outcomes: %+v", outcomes)
	insp := asynq.NewInspectorFromRedisClient(rd.Client)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow} {
		archived, err := insp.ListArchivedTasks(q)
		if err != nil && err.Error() != "" && len(archived) > 0 {
			t.Fatal(err)
		}
		if len(archived) > 0 {
			t.Fatalf("%d tasks archived in %s, e.g. %s: %s", len(archived), q, archived[0].ID, archived[0].LastErr)
		}
	}
}
