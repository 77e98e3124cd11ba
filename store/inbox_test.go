package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func inboxEntry(id string) store.InboxEntry {
	e := store.StripeEvent{ID: id, Type: "payment_intent.succeeded", APIVersion: "2023-10-16", ObjectID: "pi_" + id,
		EventCreated: time.Unix(1_700_000_000, 0).UTC(), Payload: `{"id":"` + id + `"}`}
	return store.NewInboxEntry(e, "2023-10-16", store.OutboxMessage{ID: "stripe:event:" + id, Type: "stripe:event",
		Payload: []byte(`{"event_id":"` + id + `"}`)})
}

func count(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := store.Get(context.Background(), db, &n, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestInboxGroupCommit: concurrent callers share transactions, duplicates
// (also inside one batch) are stored once and reported to all but one
// caller, and each stored event has exactly one outbox row.
func TestInboxGroupCommit(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		var relayed atomic.Int64
		in := store.NewInbox(db, store.InboxOptions{MaxRows: 64, Flushers: 2,
			AfterCommit: func(_ context.Context, msgs []store.OutboxMessage) { relayed.Add(int64(len(msgs))) }})
		const callers, perCaller, distinct = 40, 25, 600
		var inserted sync.Map
		var wg sync.WaitGroup
		errs := make(chan error, callers*perCaller)
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perCaller; i++ {
					id := fmt.Sprintf("evt_%d", (c*perCaller+i)%distinct) // 1000 deliveries of 600 events
					ok, err := in.Add(context.Background(), inboxEntry(id))
					if err != nil {
						errs <- err
						return
					}
					if ok {
						if _, dup := inserted.LoadOrStore(id, true); dup {
							errs <- fmt.Errorf("%s reported inserted twice", id)
						}
					}
				}
			}()
		}
		wg.Wait()
		in.Close()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		n := 0
		inserted.Range(func(_, _ any) bool { n++; return true })
		if n != distinct {
			t.Fatalf("%d events reported inserted, want %d", n, distinct)
		}
		if got := count(t, db, `SELECT count(*) FROM stripe_events`); got != distinct {
			t.Fatalf("stripe_events rows = %d, want %d", got, distinct)
		}
		if got := count(t, db, `SELECT count(*) FROM outbox WHERE task_type = 'stripe:event'`); got != distinct {
			t.Fatalf("outbox rows = %d, want %d", got, distinct)
		}
		if got := relayed.Load(); got != distinct {
			t.Fatalf("AfterCommit saw %d messages, want %d", got, distinct)
		}
		st := in.Stats()
		if st.Entries != callers*perCaller || st.Batches >= st.Entries {
			t.Fatalf("stats %+v: no batching happened", st)
		}
		t.Logf("%d entries in %d batches", st.Entries, st.Batches)
	})
}

func TestInboxDuplicatesInsideOneBatch(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		// A window makes the concurrent adds land in one batch.
		in := store.NewInbox(db, store.InboxOptions{Window: 50 * time.Millisecond, Flushers: 1})
		defer in.Close()
		var wg sync.WaitGroup
		var ins atomic.Int32
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := in.Add(context.Background(), inboxEntry("evt_same"))
				if err != nil {
					t.Error(err)
				}
				if ok {
					ins.Add(1)
				}
			}()
		}
		wg.Wait()
		if ins.Load() != 1 {
			t.Fatalf("%d callers told inserted, want 1", ins.Load())
		}
		if st := in.Stats(); st.Batches != 1 {
			t.Fatalf("stats %+v, want one batch", st)
		}
		if count(t, db, `SELECT count(*) FROM stripe_events`) != 1 || count(t, db, `SELECT count(*) FROM outbox`) != 1 {
			t.Fatal("want one event and one outbox row")
		}
		// A later delivery is a duplicate too.
		if ok, err := in.Add(context.Background(), inboxEntry("evt_same")); ok || err != nil {
			t.Fatalf("redelivery: inserted=%t err=%v", ok, err)
		}
	})
}

func TestInboxUnsupportedVersionIsStoredProcessedWithoutTask(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	in := store.NewInbox(db, store.InboxOptions{})
	defer in.Close()
	e := inboxEntry("evt_old")
	e = store.NewInboxEntry(store.StripeEvent{ID: "evt_old", Type: "charge.refunded", APIVersion: "2020-08-27",
		EventCreated: time.Now(), Payload: "{}"}, "2023-10-16", *e.Task)
	if ok, err := in.Add(context.Background(), e); !ok || err != nil {
		t.Fatalf("add: %t %v", ok, err)
	}
	ev, err := store.GetStripeEvent(context.Background(), db, "evt_old")
	if err != nil || ev.ProcessedAt == nil || ev.Outcome != store.OutcomeUnsupportedAPIVersion {
		t.Fatalf("event = %+v, %v", ev, err)
	}
	if count(t, db, `SELECT count(*) FROM outbox`) != 0 {
		t.Fatal("an unsupported event must not be enqueued")
	}
}

// TestInboxBatchFailure: when a batch's transaction fails, every caller of
// the batch gets EUNAVAILABLE and nothing is stored.
func TestInboxBatchFailure(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		in := store.NewInbox(db, store.InboxOptions{Window: 50 * time.Millisecond, Flushers: 1})
		defer in.Close()
		// The table is gone: every statement of the batch fails.
		if _, err := db.ExecContext(context.Background(), `DROP TABLE stripe_events`); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		codes := make(chan string, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := in.Add(context.Background(), inboxEntry(fmt.Sprintf("evt_f%d", i)))
				codes <- portal.ErrorCode(err)
			}()
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != portal.EUNAVAILABLE {
				t.Fatalf("code %q, want %q", c, portal.EUNAVAILABLE)
			}
		}
		if count(t, db, `SELECT count(*) FROM outbox`) != 0 {
			t.Fatal("outbox rows written by a failed batch")
		}
	})
}

func TestInboxClosed(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	in := store.NewInbox(db, store.InboxOptions{})
	in.Close()
	if _, err := in.Add(context.Background(), inboxEntry("evt_x")); portal.ErrorCode(err) != portal.EUNAVAILABLE {
		t.Fatalf("add after close: %v", err)
	}
}
