package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/tasks"
)

func withStripe(base string, timeout time.Duration) option {
	return func(cfg *api.Config, deps *api.Deps) {
		c, err := payments.New(payments.Config{SecretKey: "sk_test_123", APIBase: base, Timeout: timeout})
		if err != nil {
			panic(err)
		}
		deps.Payments = c
		cfg.StripeTimeout = timeout
	}
}

// TestBookingCreatesItsPaymentIntent: with Stripe answering (stripe-mock),
// the new booking carries its PaymentIntent and client secret; the secret is
// shown to the renter only; the fallback task is scheduled anyway and finds
// nothing to do.
func TestBookingCreatesItsPaymentIntent(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	a := newTestAPI(t, db, withStripe(testkit.StripeAPIBase(t), 3*time.Second))
	owner, renter := a.signup("owner"), a.signup("renter")
	l := a.listing(owner, 2500)
	b := a.book(renter, l.ID, day(3), day(5))
	if b.Payment == nil || !strings.HasPrefix(b.Payment.PaymentIntentID, "pi_") || b.Payment.ClientSecret == "" {
		t.Fatalf("payment = %+v", b.Payment)
	}
	var got api.BookingView
	a.do("GET", "/api/v1/bookings/"+b.ID, renter.Token, nil).decode(t, &got)
	if got.Payment == nil || got.Payment.PaymentIntentID != b.Payment.PaymentIntentID || got.Payment.ClientSecret != b.Payment.ClientSecret {
		t.Fatalf("renter's GET: %+v", got.Payment)
	}
	var asOwner api.BookingView
	a.do("GET", "/api/v1/bookings/"+b.ID, owner.Token, nil).decode(t, &asOwner)
	if asOwner.Payment == nil || asOwner.Payment.ClientSecret != "" {
		t.Fatalf("the owner must not see the client secret: %+v", asOwner.Payment)
	}
	var list struct {
		Data []api.BookingView `json:"data"`
	}
	a.do("GET", "/api/v1/bookings", renter.Token, nil).decode(t, &list)
	if len(list.Data) != 1 || list.Data[0].Payment == nil || list.Data[0].Payment.ClientSecret == "" {
		t.Fatalf("list: %+v", list.Data)
	}
	if a.task(tasks.QueueCritical, tasks.PaymentIntent{BookingID: b.ID}.TaskID()) == nil {
		t.Fatal("the payment:intent fallback is not scheduled")
	}
}

// TestBookingSurvivesStripeDown: Stripe unreachable → the booking is still
// created (201, payment null), its payment:intent task is scheduled, and no
// request waits longer than STRIPE_TIMEOUT for Stripe.
func TestBookingSurvivesStripeDown(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	a := newTestAPI(t, db, withStripe("http://127.0.0.1:1", 500*time.Millisecond))
	owner, renter := a.signup("owner"), a.signup("renter")
	l := a.listing(owner, 2500)
	began := time.Now()
	r := a.do("POST", "/api/v1/bookings", renter.Token, bookingBody(l.ID, day(3), day(5)))
	took := time.Since(began)
	expect(t, r, http.StatusCreated)
	var b api.BookingView
	r.decode(t, &b)
	if b.Payment != nil || b.Status != "pending_payment" {
		t.Fatalf("booking = %+v", b)
	}
	if took > 3*time.Second {
		t.Fatalf("the request waited %s for a dead Stripe", took)
	}
	ti := a.task(tasks.QueueCritical, tasks.PaymentIntent{BookingID: b.ID}.TaskID())
	if ti == nil || ti.State.String() != "scheduled" {
		t.Fatalf("payment:intent fallback: %+v", ti)
	}
	if n := a.count(`SELECT count(*) FROM payments WHERE booking_id = ? AND payment_intent_id IS NOT NULL`, b.ID); n != 0 {
		t.Fatalf("%d payments with an intent", n)
	}
}
