package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func stripeClient(t *testing.T, base string) *payments.Client {
	t.Helper()
	c, err := payments.New(payments.Config{SecretKey: "sk_test_123", APIBase: base, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func task(t *testing.T, p tasks.Payload) *asynq.Task {
	t.Helper()
	m, err := tasks.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.NewTask(m.Type, m.Payload)
}

// TestPaymentIntentAndRefundAgainstStripeMock: payment:intent stores the
// intent and its client secret; booking:refund refunds a cancelled paid
// booking through Stripe and, as stripe-mock answers succeeded, refunds it.
func TestPaymentIntentAndRefundAgainstStripeMock(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, stripeClient(t, testkit.StripeAPIBase(t)))
		ctx := context.Background()
		b := h.booking(booking.PendingPayment, 0)
		if err := h.w.handlePaymentIntent(ctx, task(t, tasks.PaymentIntent{BookingID: b})); err != nil {
			t.Fatalf("payment:intent: %v", err)
		}
		p := h.payment(b)
		if p.PaymentIntentID == nil || !strings.HasPrefix(*p.PaymentIntentID, "pi_") || p.ClientSecret == nil || p.Amount != 1000 {
			t.Fatalf("payment %+v", p)
		}
		// Twice is once.
		if err := h.w.handlePaymentIntent(ctx, task(t, tasks.PaymentIntent{BookingID: b})); err != nil {
			t.Fatal(err)
		}

		// The renter paid (webhook), then cancelled.
		h.send("payment_intent.succeeded", t0, map[string]any{"id": *p.PaymentIntentID, "object": "payment_intent",
			"status": "succeeded", "amount": 1000, "amount_received": 1000, "currency": "eur", "metadata": map[string]string{"booking_id": b}})
		if _, err := store.ApplyBookingEvent(ctx, db, b, booking.Cancel, store.Source{Kind: store.SourceAPI}); err != nil {
			t.Fatal(err)
		}
		if err := h.w.handleBookingRefund(ctx, task(t, tasks.BookingRefund{BookingID: b})); err != nil {
			t.Fatalf("booking:refund: %v", err)
		}
		if s := h.status(b); s != booking.Refunded {
			t.Fatalf("booking %s after refund", s)
		}
		if p := h.payment(b); p.Status != store.PaymentRefunded || p.AmountRefunded != 1000 {
			t.Fatalf("payment after refund %+v", p)
		}
		rs, err := store.ListRefunds(ctx, db, h.payment(b).ID)
		if err != nil || len(rs) != 1 {
			t.Fatalf("refunds %+v %v", rs, err)
		}
		// A retried refund task does nothing more.
		if err := h.w.handleBookingRefund(ctx, task(t, tasks.BookingRefund{BookingID: b})); err != nil {
			t.Fatal(err)
		}
		if hs := h.history(b); len(hs) != 3 {
			t.Fatalf("history %v", hs)
		}
	})
}

// scenarioStripe is a Stripe API with controlled data: the PaymentIntents
// and undelivered events the test puts in it, paginated two per page.
type scenarioStripe struct {
	intents []map[string]any
	events  []map[string]any
	pages   atomic.Int32
}

func (s *scenarioStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	var data []map[string]any
	switch r.URL.Path {
	case "/v1/payment_intents":
		data = s.intents
	case "/v1/events":
		if r.URL.Query().Get("delivery_success") != "false" {
			http.Error(w, `{"error":{"type":"invalid_request_error","message":"want delivery_success=false"}}`, 400)
			return
		}
		data = s.events
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"no such route"}}`))
		return
	}
	s.pages.Add(1)
	start := 0
	if after := r.URL.Query().Get("starting_after"); after != "" {
		for i, d := range data {
			if d["id"] == after {
				start = i + 1
			}
		}
	}
	end := min(start+2, len(data))
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "url": r.URL.Path, "has_more": end < len(data), "data": data[start:end]})
}

// TestReconcileRepairsMissedWebhook: a booking whose succeeded webhook never
// came is confirmed by reconciliation, through the same code path (source
// reconcile in its history); an undelivered event is stored and applied;
// intents we already reflect and strangers' intents change nothing; a second
// run changes nothing.
func TestReconcileRepairsMissedWebhook(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		sc := &scenarioStripe{}
		srv := httptest.NewServer(sc)
		defer srv.Close()
		h := newHarness(t, db, stripeClient(t, srv.URL))
		ctx := context.Background()

		missed := h.booking(booking.PendingPayment, 0)  // succeeded webhook never came
		current := h.booking(booking.PendingPayment, 1) // already confirmed by its webhook
		undelivered := h.booking(booking.PendingPayment, 2)
		pending := h.booking(booking.PendingPayment, 3) // renter has not paid yet
		h.send("payment_intent.succeeded", t0, intent(current, "succeeded"))
		sc.intents = []map[string]any{intent(missed, "succeeded"), intent(current, "succeeded"),
			intent(pending, "requires_payment_method"), intent("stranger", "succeeded")}
		var undeliveredEvent map[string]any
		_ = json.Unmarshal(event("evt_undelivered_"+undelivered, "payment_intent.succeeded", t0, intent(undelivered, "succeeded")), &undeliveredEvent)
		sc.events = []map[string]any{undeliveredEvent}

		rep, err := h.w.Reconcile(ctx, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		// The undelivered event is applied before the intents are listed,
		// so only the missed booking's intent has drifted.
		if rep.Intents != 4 || rep.Drifted != 1 || rep.Undelivered != 1 || rep.Applied != 2 {
			t.Fatalf("report %+v", rep)
		}
		if sc.pages.Load() < 3 {
			t.Fatalf("pagination not followed: %d pages", sc.pages.Load())
		}
		for id, want := range map[string]booking.Status{missed: booking.Confirmed, current: booking.Confirmed,
			undelivered: booking.Confirmed, pending: booking.PendingPayment} {
			if got := h.status(id); got != want {
				t.Fatalf("booking %s: %s, want %s", id, got, want)
			}
		}
		hs, err := store.BookingHistory(ctx, db, missed)
		if err != nil || len(hs) != 1 || hs[0].Source != store.SourceReconcile || !strings.HasPrefix(hs[0].SourceRef, reconcileSynthPrefix) {
			t.Fatalf("history of the missed booking %+v %v", hs, err)
		}
		ev, err := store.GetStripeEvent(ctx, db, "evt_undelivered_"+undelivered)
		if err != nil || ev.Source != store.EventSourceReconcile || ev.Outcome != store.OutcomeApplied {
			t.Fatalf("undelivered event %+v %v", ev, err)
		}
		if hs := h.history(undelivered); len(hs) != 1 {
			t.Fatalf("undelivered history %v", hs)
		}
		// A second run finds no drift.
		rep, err = h.w.Reconcile(ctx, time.Now().Add(-time.Hour))
		if err != nil || rep.Drifted != 0 || rep.Applied != 0 {
			t.Fatalf("second reconcile %+v %v", rep, err)
		}
		if hs := h.history(missed); len(hs) != 1 {
			t.Fatalf("history after a second run %v", hs)
		}
		// The cron task runs the same thing.
		if err := h.w.handleReconcile(ctx, task(t, tasks.Reconcile{At: time.Now(), Window: time.Hour})); err != nil {
			t.Fatal(err)
		}
	})
}
