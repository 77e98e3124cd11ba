package e2e

import (
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

// TestAPIAndWorkerAsSeparateProcesses is the production shape: the api and
// worker roles as two processes on PostgreSQL and Redis. The API writes a
// booking and, in the same transaction, the outbox row of its booking:expire
// task; the worker process runs it when the payment deadline passes.
func TestAPIAndWorkerAsSeparateProcesses(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t), "REDIS_URL": testkit.RedisDB(t).URL,
		"BOOKING_PAYMENT_TTL": "2s", "BCRYPT_COST": "4", "JWT_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e"}
	api := Start(t, "api", env)
	api.WaitStatus("/health/readiness", 200, 5*time.Second)
	worker := Start(t, "worker", env)
	worker.WaitStatus("/health/readiness", 200, 5*time.Second)

	_, renter, b := ListingAndBooking(t, api.Base, 3, 2)
	if b.Status != "pending_payment" {
		t.Fatalf("new booking is %s", b.Status)
	}
	got := WaitBooking(t, renter, b.ID, "expired", 15*time.Second)
	last := got.History[len(got.History)-1]
	if last.From != "pending_payment" || last.To != "expired" || last.Source != "task" {
		t.Fatalf("history = %+v", got.History)
	}
	for _, p := range []*Proc{worker, api} {
		if _, err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
}

// TestPaymentIntentFallback: the API cannot reach Stripe (its STRIPE_API_BASE
// is dead), so the booking is created with no payment; the worker process,
// which can (stripe-mock), creates the PaymentIntent from the payment:intent
// task written with the booking, and the next GET shows it.
func TestPaymentIntentFallback(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t), "REDIS_URL": testkit.RedisDB(t).URL,
		"BCRYPT_COST": "4", "JWT_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e",
		"STRIPE_SECRET_KEY": "sk_test_123", "STRIPE_WEBHOOK_SECRET": "whsec_e2e", "STRIPE_TIMEOUT": "300ms"}
	apiEnv := map[string]string{"STRIPE_API_BASE": "http://127.0.0.1:1"}
	workerEnv := map[string]string{"STRIPE_API_BASE": testkit.StripeAPIBase(t)}
	for k, v := range env {
		apiEnv[k], workerEnv[k] = v, v
	}
	api := Start(t, "api", apiEnv)
	api.WaitStatus("/health/readiness", 200, 5*time.Second)
	Start(t, "worker", workerEnv).WaitStatus("/health/readiness", 200, 5*time.Second)

	_, renter, b := ListingAndBooking(t, api.Base, 3, 2)
	if b.Payment != nil {
		t.Fatalf("Stripe is unreachable from the API, yet the booking has a payment: %+v", b.Payment)
	}
	deadline := time.Now().Add(15 * time.Second)
	var got Booking
	for time.Now().Before(deadline) {
		if renter.Do("GET", "/api/v1/bookings/"+b.ID, nil, &got) == 200 && got.Payment != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got.Payment == nil || got.Payment.PaymentIntentID == "" || got.Payment.ClientSecret == "" {
		t.Fatalf("the fallback never created the PaymentIntent: %+v", got)
	}
}
