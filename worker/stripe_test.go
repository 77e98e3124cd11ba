package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// harness is a worker on a real database and a real Redis.
type harness struct {
	t     *testing.T
	db    *store.DB
	w     *Worker
	insp  *asynq.Inspector
	owner string
	list  string
	seq   int
}

func newHarness(t *testing.T, db *store.DB, stripe StripeAPI) *harness {
	t.Helper()
	r := testkit.RedisDB(t)
	client := asynq.NewClientFromRedisClient(r.Client)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := New(Config{Concurrency: 1}, Deps{Log: log, DB: db, Relay: relay.New(db, client, log), Stripe: stripe})
	h := &harness{t: t, db: db, w: w, insp: asynq.NewInspectorFromRedisClient(r.Client)}
	ctx := context.Background()
	now := store.Now()
	h.owner, h.list = testkit.RandomName("u"), testkit.RandomName("l")
	mustExec(t, db, `INSERT INTO users (id, email, password_hash, name, role, stripe_account_id, stripe_customer_id, created_at, updated_at)
		VALUES (?, ?, 'x', 'Owner', 'owner', ?, ?, ?, ?)`, h.owner, h.owner+"@example.com", "acct_"+h.owner, "cus_"+h.owner, now, now)
	mustExec(t, db, `INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at)
		VALUES (?, ?, 'Bike', 1000, 'EUR', ?, ?)`, h.list, h.owner, now, now)
	_ = ctx
	return h
}

func mustExec(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := store.Exec(context.Background(), db, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// booking inserts a booking in status on its own dates (offset in days).
func (h *harness) booking(status booking.Status, day int) string {
	h.t.Helper()
	id := testkit.RandomName("b")
	now := store.Now()
	start := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*day)
	mustExec(h.t, h.db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1000, 'EUR', ?, ?, ?)`,
		id, h.list, h.owner, h.owner, start.Format("2006-01-02"), start.AddDate(0, 0, 2).Format("2006-01-02"), status,
		now.Add(time.Hour), now, now)
	return id
}

// event builds a signed-shape event of the pinned version.
func event(id, typ string, created int64, obj map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": payments.APIVersion,
		"created": created, "livemode": false, "data": map[string]any{"object": obj}})
	return b
}

func intent(bookingID, status string) map[string]any {
	return map[string]any{"id": "pi_" + bookingID, "object": "payment_intent", "status": status, "amount": 1000,
		"amount_received": map[bool]int{true: 1000}[status == "succeeded"], "currency": "eur",
		"metadata": map[string]string{"booking_id": bookingID}}
}

func charge(bookingID string, refunded int64) map[string]any {
	return map[string]any{"id": "ch_" + bookingID, "object": "charge", "status": "succeeded", "amount": 1000, "paid": true,
		"amount_refunded": refunded, "refunded": refunded >= 1000, "currency": "eur", "payment_intent": "pi_" + bookingID,
		"metadata": map[string]string{"booking_id": bookingID},
		"refunds": map[string]any{"data": []map[string]any{{"id": fmt.Sprintf("re_%s_%d", bookingID, refunded),
			"amount": refunded, "currency": "eur", "status": "succeeded"}}}}
}

func dispute(bookingID, status string) map[string]any {
	return map[string]any{"id": "dp_" + bookingID, "object": "dispute", "status": status, "amount": 1000, "currency": "eur",
		"charge": "ch_" + bookingID, "payment_intent": "pi_" + bookingID, "reason": "fraudulent"}
}

// deliver stores an event as the webhook inbox would and processes it; it
// returns the outcome recorded.
func (h *harness) deliver(payload []byte) string {
	h.t.Helper()
	ctx := context.Background()
	ev, err := payments.ParseEvent(payload)
	if err != nil {
		h.t.Fatal(err)
	}
	en, err := eventEntry(ev, store.EventSourceWebhook, store.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := store.InsertStripeEvent(ctx, h.db, en.Event, en.Task); err != nil {
		h.t.Fatal(err)
	}
	if err := h.w.ProcessStripeEvent(ctx, ev.ID); err != nil {
		h.t.Fatalf("process %s: %v", ev.ID, err)
	}
	row, err := store.GetStripeEvent(ctx, h.db, ev.ID)
	if err != nil || row.ProcessedAt == nil {
		h.t.Fatalf("event %s not processed: %+v %v", ev.ID, row, err)
	}
	return row.Outcome
}

// send builds, delivers and returns the outcome of one event.
func (h *harness) send(typ string, created int64, obj map[string]any) string {
	h.seq++
	return h.deliver(event(fmt.Sprintf("evt_%s_%d", testkit.RandomName(""), h.seq), typ, created, obj))
}

func (h *harness) status(id string) booking.Status {
	h.t.Helper()
	b, err := store.GetBooking(context.Background(), h.db, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return b.Status
}

func (h *harness) payment(id string) *store.Payment {
	h.t.Helper()
	p, err := store.GetPaymentByBooking(context.Background(), h.db, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) history(id string) []string {
	h.t.Helper()
	hs, err := store.BookingHistory(context.Background(), h.db, id)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range hs {
		out = append(out, e.FromStatus+">"+e.ToStatus+"@"+e.Source)
	}
	return out
}

type step struct {
	typ     string
	created int64
	obj     func(b string) map[string]any
	outcome string
}

const t0 = 1_700_000_000

func TestStripeEventSequences(t *testing.T) {
	t.Parallel()
	succeeded := func(b string) map[string]any { return intent(b, "succeeded") }
	cases := []struct {
		name    string
		start   booking.Status
		steps   []step
		want    booking.Status
		payment string
		history int
	}{
		{"success confirms", booking.PendingPayment, []step{
			{"payment_intent.processing", t0, func(b string) map[string]any { return intent(b, "processing") }, store.OutcomeApplied},
			{"payment_intent.succeeded", t0 + 1, succeeded, store.OutcomeApplied},
			{"charge.succeeded", t0 + 1, func(b string) map[string]any { return charge(b, 0) }, store.OutcomeApplied}, // records the charge
		}, booking.Confirmed, store.PaymentSucceeded, 1},
		{"failed after succeeded does not move back", booking.PendingPayment, []step{
			{"payment_intent.succeeded", t0 + 5, succeeded, store.OutcomeApplied},
			{"payment_intent.payment_failed", t0, func(b string) map[string]any { return intent(b, "requires_payment_method") }, store.OutcomeStale},
			{"payment_intent.processing", t0 + 9, func(b string) map[string]any { return intent(b, "processing") }, store.OutcomeStale},
		}, booking.Confirmed, store.PaymentSucceeded, 1},
		{"failure then retry succeeds", booking.PendingPayment, []step{
			{"payment_intent.payment_failed", t0, func(b string) map[string]any { return intent(b, "requires_payment_method") }, store.OutcomeApplied},
			{"payment_intent.succeeded", t0 + 5, succeeded, store.OutcomeApplied},
		}, booking.Confirmed, store.PaymentSucceeded, 1},
		{"refunded before succeeded", booking.PendingPayment, []step{
			{"charge.refunded", t0 + 10, func(b string) map[string]any { return charge(b, 1000) }, store.OutcomeApplied},
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeStale},
		}, booking.Refunded, store.PaymentRefunded, 1},
		{"partial then full refund", booking.PendingPayment, []step{
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeApplied},
			{"charge.refunded", t0 + 5, func(b string) map[string]any { return charge(b, 300) }, store.OutcomeApplied},
			{"charge.refunded", t0 + 9, func(b string) map[string]any { return charge(b, 1000) }, store.OutcomeApplied},
			{"charge.refunded", t0 + 7, func(b string) map[string]any { return charge(b, 300) }, store.OutcomeDuplicateEffect},
		}, booking.Refunded, store.PaymentRefunded, 2},
		{"dispute opened then won", booking.PendingPayment, []step{
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeApplied},
			{"charge.dispute.created", t0 + 10, func(b string) map[string]any { return dispute(b, "needs_response") }, store.OutcomeApplied},
			{"charge.dispute.funds_withdrawn", t0 + 11, func(b string) map[string]any { return dispute(b, "needs_response") }, store.OutcomeApplied},
			{"charge.dispute.closed", t0 + 20, func(b string) map[string]any { return dispute(b, "won") }, store.OutcomeApplied},
			{"charge.dispute.funds_reinstated", t0 + 21, func(b string) map[string]any { return dispute(b, "won") }, store.OutcomeApplied},
		}, booking.Confirmed, store.PaymentSucceeded, 3},
		{"dispute closed lost before created", booking.PendingPayment, []step{
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeApplied},
			{"charge.dispute.closed", t0 + 20, func(b string) map[string]any { return dispute(b, "lost") }, store.OutcomeApplied},
			{"charge.dispute.created", t0 + 10, func(b string) map[string]any { return dispute(b, "needs_response") }, store.OutcomeStale},
			{"charge.dispute.updated", t0 + 12, func(b string) map[string]any { return dispute(b, "under_review") }, store.OutcomeStale},
		}, booking.Refunded, store.PaymentSucceeded, 3},
		{"canceled intent cancels a pending booking", booking.PendingPayment, []step{
			{"payment_intent.canceled", t0, func(b string) map[string]any { return intent(b, "canceled") }, store.OutcomeApplied},
			{"payment_intent.processing", t0 - 5, func(b string) map[string]any { return intent(b, "processing") }, store.OutcomeStale},
		}, booking.Cancelled, store.PaymentCanceled, 1},
		{"paid after expiry, dates free: re-confirmed", booking.Expired, []step{
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeApplied},
		}, booking.Confirmed, store.PaymentSucceeded, 1},
		{"paid after cancellation: refund requested", booking.Cancelled, []step{
			{"payment_intent.succeeded", t0, succeeded, store.OutcomeRefundRequested},
			{"charge.refunded", t0 + 30, func(b string) map[string]any { return charge(b, 1000) }, store.OutcomeApplied},
		}, booking.Refunded, store.PaymentRefunded, 1},
	}
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, nil)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				h.t = t
				b := h.booking(c.start, i)
				for j, s := range c.steps {
					if got := h.send(s.typ, s.created, s.obj(b)); got != s.outcome {
						t.Fatalf("step %d %s: outcome %q, want %q", j, s.typ, got, s.outcome)
					}
				}
				if got := h.status(b); got != c.want {
					t.Fatalf("booking %s, want %s (history %v)", got, c.want, h.history(b))
				}
				if got := h.payment(b).Status; got != c.payment {
					t.Fatalf("payment %s, want %s", got, c.payment)
				}
				if got := h.history(b); len(got) != c.history {
					t.Fatalf("history %v, want %d rows", got, c.history)
				}
			})
		}
	})
}

func TestStripeEventEdges(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, nil)
		ctx := context.Background()

		// A re-run of a processed event is a no-op.
		b := h.booking(booking.PendingPayment, 0)
		p := event("evt_twice_"+b, "payment_intent.succeeded", t0, intent(b, "succeeded"))
		if got := h.deliver(p); got != store.OutcomeApplied {
			t.Fatalf("first: %s", got)
		}
		if err := h.w.ProcessStripeEvent(ctx, "evt_twice_"+b); err != nil {
			t.Fatal(err)
		}
		if hs := h.history(b); len(hs) != 1 || hs[0] != "pending_payment>confirmed@stripe" {
			t.Fatalf("history after a re-run: %v", hs)
		}
		if hs, _ := store.BookingHistory(ctx, db, b); hs[0].SourceRef != "evt_twice_"+b {
			t.Fatalf("history source_ref %q", hs[0].SourceRef)
		}

		// Unknown booking: recorded, not retried.
		if got := h.send("payment_intent.succeeded", t0, intent("nobody", "succeeded")); got != store.OutcomeUnknownBooking {
			t.Fatalf("unknown booking: %s", got)
		}
		if got := h.send("charge.dispute.created", t0, dispute("nobody", "needs_response")); got != store.OutcomeUnknownBooking {
			t.Fatalf("unknown booking dispute: %s", got)
		}
		// A dispute and a refund delivered before their payment is known are
		// parked, then applied in the transaction that links the payment.
		early := h.booking(booking.PendingPayment, 12)
		dp := dispute(early, "needs_response")
		if got := h.send("charge.dispute.created", t0+10, dp); got != store.OutcomeUnknownBooking {
			t.Fatalf("early dispute: %s", got)
		}
		if got := h.send("charge.dispute.funds_withdrawn", t0+11, dp); got != store.OutcomeUnknownBooking {
			t.Fatalf("early funds_withdrawn: %s", got)
		}
		if got := h.send("payment_intent.succeeded", t0, intent(early, "succeeded")); got != store.OutcomeApplied {
			t.Fatalf("payment: %s", got)
		}
		if s := h.status(early); s != booking.Disputed {
			t.Fatalf("booking with a parked dispute: %s (history %v)", s, h.history(early))
		}
		var parked int
		if err := store.Get(ctx, db, &parked, `SELECT count(*) FROM stripe_events WHERE outcome = ?`, store.OutcomeUnknownBooking); err != nil || parked != 2 {
			t.Fatalf("still parked: %d %v (want the two strangers' events)", parked, err)
		}
		if d, err := store.GetDispute(ctx, db, "dp_"+early); err != nil || !d.FundsWithdrawn || d.BookingID == nil {
			t.Fatalf("dispute %+v %v", d, err)
		}

		// Unknown type: stored and ignored.
		if got := h.send("invoice.paid", t0, map[string]any{"id": "in_1", "object": "invoice"}); got != store.OutcomeIgnored {
			t.Fatalf("unknown type: %s", got)
		}

		// Paid after expiry with the dates taken meanwhile: stays expired,
		// refund requested through the outbox and Redis.
		exp := h.booking(booking.Expired, 7)
		h.booking(booking.Confirmed, 7) // same dates, same listing
		if got := h.send("payment_intent.succeeded", t0, intent(exp, "succeeded")); got != store.OutcomeRefundRequested {
			t.Fatalf("expired, dates taken: %s", got)
		}
		if s := h.status(exp); s != booking.Expired {
			t.Fatalf("expired booking became %s", s)
		}
		info, err := h.insp.GetTaskInfo(tasks.QueueCritical, tasks.BookingRefund{BookingID: exp}.TaskID())
		if err != nil || info.Type != tasks.TypeBookingRefund {
			t.Fatalf("refund task: %+v %v", info, err)
		}
		var n int
		if err := store.Get(ctx, db, &n, `SELECT count(*) FROM outbox WHERE id = ?`, tasks.BookingRefund{BookingID: exp}.TaskID()); err != nil || n != 1 {
			t.Fatalf("refund outbox row: %d %v", n, err)
		}
	})
}

func TestStripeOwnerFamilies(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, nil)
		ctx := context.Background()
		acct := "acct_" + h.owner
		account := func(charges, payouts bool) map[string]any {
			return map[string]any{"id": acct, "object": "account", "charges_enabled": charges, "payouts_enabled": payouts}
		}
		if got := h.send("account.updated", t0+10, account(true, true)); got != store.OutcomeApplied {
			t.Fatalf("account.updated: %s", got)
		}
		if got := h.send("account.updated", t0, account(false, false)); got != store.OutcomeStale {
			t.Fatalf("older account.updated: %s", got)
		}
		var u struct {
			C  bool    `db:"charges_enabled"`
			P  bool    `db:"payouts_enabled"`
			S  *string `db:"subscription_status"`
			Pl *string `db:"subscription_plan"`
		}
		get := func() {
			if err := store.Get(ctx, db, &u, `SELECT charges_enabled, payouts_enabled, subscription_status, subscription_plan FROM users WHERE id = ?`, h.owner); err != nil {
				t.Fatal(err)
			}
		}
		get()
		if !u.C || !u.P {
			t.Fatalf("connect status %+v", u)
		}
		if got := h.send("account.updated", t0, map[string]any{"id": "acct_nobody", "object": "account"}); got != store.OutcomeUnknownObject {
			t.Fatalf("unknown account: %s", got)
		}

		sub := func(id, status string) map[string]any {
			return map[string]any{"id": id, "object": "subscription", "status": status, "customer": "cus_" + h.owner,
				"items": map[string]any{"data": []any{map[string]any{"price": map[string]any{"id": "price_pro"}}}}}
		}
		h.send("customer.subscription.created", t0, sub("sub_1", "active"))
		if got := h.send("customer.subscription.updated", t0-5, sub("sub_1", "incomplete")); got != store.OutcomeStale {
			t.Fatalf("older subscription update: %s", got)
		}
		get()
		if *u.S != "active" || *u.Pl != "price_pro" {
			t.Fatalf("subscription %v %v", *u.S, *u.Pl)
		}
		h.send("customer.subscription.created", t0+20, sub("sub_2", "active"))
		if got := h.send("customer.subscription.deleted", t0+30, sub("sub_1", "canceled")); got != store.OutcomeStale {
			t.Fatalf("late deletion of the old plan: %s", got)
		}
		h.send("customer.subscription.deleted", t0+40, sub("sub_2", "canceled"))
		get()
		if *u.S != "canceled" {
			t.Fatalf("subscription after deletion: %s", *u.S)
		}

		payout := func(status string) map[string]any {
			return map[string]any{"id": "po_1" + h.owner, "object": "payout", "status": status, "amount": 5000, "currency": "eur",
				"arrival_date": t0 + 86400}
		}
		withAccount := func(p []byte) []byte {
			var m map[string]any
			_ = json.Unmarshal(p, &m)
			m["account"] = acct
			b, _ := json.Marshal(m)
			return b
		}
		h.deliver(withAccount(event("evt_po1"+h.owner, "payout.paid", t0, payout("paid"))))
		h.deliver(withAccount(event("evt_po2"+h.owner, "payout.failed", t0+100, payout("failed"))))
		if got := h.deliver(withAccount(event("evt_po3"+h.owner, "payout.paid", t0+50, payout("paid")))); got != store.OutcomeStale {
			t.Fatalf("paid after failed: %s", got)
		}
		po, err := store.GetPayout(ctx, db, "po_1"+h.owner)
		if err != nil || po.Status != "failed" || po.OwnerID == nil || *po.OwnerID != h.owner {
			t.Fatalf("payout %+v %v", po, err)
		}

		b := h.booking(booking.Confirmed, 20)
		tr := func(reversed int64) map[string]any {
			return map[string]any{"id": "tr_" + b, "object": "transfer", "amount": 900, "currency": "eur", "destination": acct,
				"amount_reversed": reversed, "reversed": reversed >= 900, "metadata": map[string]string{"booking_id": b}}
		}
		h.send("transfer.reversed", t0+10, tr(900))
		if got := h.send("transfer.created", t0, tr(0)); got != store.OutcomeDuplicateEffect {
			t.Fatalf("late transfer.created: %s", got)
		}
		x, err := store.GetTransfer(ctx, db, "tr_"+b)
		if err != nil || !x.Reversed || x.AmountReversed != 900 || x.BookingID == nil || *x.BookingID != b {
			t.Fatalf("transfer %+v %v", x, err)
		}
	})
}

// TestSweepReenqueuesLostStripeEvents: an event whose task was lost after
// its outbox row was relayed is enqueued again by the sweeper.
func TestSweepReenqueuesLostStripeEvents(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	h := newHarness(t, db, nil)
	ctx := context.Background()
	ev, err := payments.ParseEvent(event("evt_lost", "payment_intent.succeeded", t0, intent("x", "succeeded")))
	if err != nil {
		t.Fatal(err)
	}
	en, err := eventEntry(ev, store.EventSourceWebhook, store.Now().Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertStripeEvent(ctx, db, en.Event, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.w.sweep(ctx, nil); err != nil {
		t.Fatal(err)
	}
	info, err := h.insp.GetTaskInfo(tasks.QueueCritical, tasks.StripeEvent{EventID: "evt_lost"}.TaskID())
	if err != nil || info.Type != tasks.TypeStripeEvent {
		t.Fatalf("re-enqueued task: %+v %v", info, err)
	}
}
