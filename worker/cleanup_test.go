package worker

import (
	"context"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestCleanupPurgesOldStripeEventsButKeepsStaleness: maintenance:cleanup
// purges processed Stripe events older than the retention, except the
// newest applied one of an object and type, so an older event that
// arrives after the purge is still judged stale and changes nothing.
// Events younger than the retention stay, and a retention of 0 purges
// nothing.
func TestCleanupPurgesOldStripeEventsButKeepsStaleness(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db, nil)
		ctx := context.Background()
		acct := "acct_" + h.owner
		account := func(charges bool) map[string]any {
			return map[string]any{"id": acct, "object": "account", "charges_enabled": charges, "payouts_enabled": charges}
		}
		count := func(q string, args ...any) int {
			t.Helper()
			var n int
			if err := store.Get(ctx, db, &n, q, args...); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for i, want := range []string{store.OutcomeApplied, store.OutcomeApplied, store.OutcomeStale} {
			created := []int64{t0 + 10, t0 + 20, t0 + 5}[i]
			if got := h.send("account.updated", created, account(true)); got != want {
				t.Fatalf("account.updated at t0+%d: %s, want %s", created-t0, got, want)
			}
		}
		cus := "cus_" + h.owner + "_new"
		h.send("customer.created", t0+30, map[string]any{"id": cus, "object": "customer"})
		// The account's events processed 31 days ago.
		mustExec(t, db, `UPDATE stripe_events SET processed_at = ? WHERE object_id = ?`, store.Now().Add(-31*24*time.Hour), acct)

		h.w.cfg.StripeEventRetention = 0
		if err := h.w.cleanup(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if n := count(`SELECT count(*) FROM stripe_events WHERE object_id = ?`, acct); n != 3 {
			t.Fatalf("retention 0: %d of the account's 3 events left", n)
		}

		h.w.cfg.StripeEventRetention = 30 * 24 * time.Hour
		if err := h.w.cleanup(ctx, nil); err != nil {
			t.Fatal(err)
		}
		var left []store.StripeEvent
		if err := store.Select(ctx, db, &left, `SELECT id, type, object_id, event_created, payload, source, received_at, outcome
			FROM stripe_events WHERE object_id = ?`, acct); err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].Outcome != store.OutcomeApplied || left[0].EventCreated.Unix() != t0+20 {
			t.Fatalf("left of the account's events: %+v; want the newest applied one only", left)
		}
		if count(`SELECT count(*) FROM stripe_events WHERE object_id = ?`, cus) != 1 {
			t.Fatal("an event processed now was purged")
		}
		// Older than the kept one, newer than the purged ones: stale, and
		// the account keeps what the newest said.
		if got := h.send("account.updated", t0+15, account(false)); got != store.OutcomeStale {
			t.Fatalf("account.updated older than the kept one, after the purge: %s", got)
		}
		if n := count(`SELECT count(*) FROM users WHERE id = ? AND charges_enabled = ?`, h.owner, true); n != 1 {
			t.Fatal("a stale event changed the account after the purge")
		}
	})
}
