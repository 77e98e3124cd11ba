package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestPurgeStripeEvents: events processed before the cutoff go, unless
// they are the newest applied event of their object and type (later events
// are judged stale against it: NewestAppliedEventAt); events processed
// since, unprocessed ones and the parked or unknown ones stay whatever
// their age; the limit bounds one purge, and the next takes the rest.
func TestPurgeStripeEvents(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := testkit.RandomName("p") + "_"
		now := time.Now().UTC().Truncate(time.Second)
		cutoff := now.Add(-90 * 24 * time.Hour)
		old, young := cutoff.Add(-24*time.Hour), now.Add(-time.Hour)
		t0 := old.Add(-time.Hour)
		add := func(id, typ, object string, created time.Time, processed *time.Time, outcome string) {
			t.Helper()
			e := store.StripeEvent{ID: p + id, Type: typ, ObjectID: p + object, EventCreated: created, Payload: "{}",
				Source: store.EventSourceWebhook, ReceivedAt: created}
			if _, err := store.InsertStripeEvent(ctx, db, e, nil); err != nil {
				t.Fatal(err)
			}
			if processed != nil {
				if _, err := store.Exec(ctx, db, `UPDATE stripe_events SET processed_at = ?, outcome = ? WHERE id = ?`,
					*processed, outcome, p+id); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Three applied account.updated of one account: the newest stays.
		add("a1", "account.updated", "acct", t0, &old, store.OutcomeApplied)
		add("a2", "account.updated", "acct", t0.Add(time.Minute), &old, store.OutcomeApplied)
		add("a3", "account.updated", "acct", t0.Add(2*time.Minute), &old, store.OutcomeApplied)
		add("a0", "account.updated", "acct", t0.Add(-time.Minute), &old, store.OutcomeStale)
		// The newest applied of its type, though a newer one of another
		// type was applied to the object: stays.
		add("s1", "customer.subscription.created", "sub", t0, &old, store.OutcomeApplied)
		add("s2", "customer.subscription.updated", "sub", t0.Add(time.Minute), &old, store.OutcomeApplied)
		// A newer applied one processed since: the old one goes.
		add("p1", "payment_intent.succeeded", "pi", t0, &old, store.OutcomeApplied)
		add("p2", "payment_intent.succeeded", "pi", young, &young, store.OutcomeApplied)
		// The other outcomes nothing reads again.
		add("i", "customer.created", "cus", t0, &old, store.OutcomeIgnored)
		add("d", "charge.succeeded", "ch", t0, &old, store.OutcomeDuplicateEffect)
		add("r", "payment_intent.succeeded", "pi2", t0, &old, store.OutcomeRefundRequested)
		add("v", "charge.refunded", "ch4", t0, &old, store.OutcomeUnsupportedAPIVersion)
		// Kept whatever their age.
		add("u", "charge.refunded", "ch2", t0, nil, "")
		add("k", "charge.dispute.created", "ch3", t0, &old, store.OutcomeUnknownBooking)
		add("o", "payout.failed", "po", t0, &old, store.OutcomeUnknownObject)
		add("y", "customer.created", "cus2", t0, &young, store.OutcomeIgnored)

		purge := func(limit int) int64 {
			t.Helper()
			n, err := store.PurgeStripeEvents(ctx, db, cutoff, limit)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		first := purge(3)
		if first != 3 {
			t.Fatalf("a purge of at most 3 deleted %d", first)
		}
		if n := purge(100_000); n != 5 {
			t.Fatalf("the next purge deleted %d, want the other 5 old ones", n)
		}
		if n := purge(100_000); n != 0 {
			t.Fatalf("a purge after everything old was purged deleted %d", n)
		}
		var left []string
		if err := store.Select(ctx, db, &left, `SELECT id FROM stripe_events WHERE id LIKE ? ORDER BY id`, p+"%"); err != nil {
			t.Fatal(err)
		}
		want := []string{"a3", "k", "o", "p2", "s1", "s2", "u", "y"}
		for i := range want {
			want[i] = p + want[i]
		}
		if !slices.Equal(left, want) {
			t.Fatalf("left %v, want %v", left, want)
		}
		at, err := store.NewestAppliedEventAt(ctx, db, p+"acct", []string{"account.updated"})
		if err != nil || !at.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("newest applied account.updated after the purge: %v %v, want %v", at, err, t0.Add(2*time.Minute))
		}
	})
}
