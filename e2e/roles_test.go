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
