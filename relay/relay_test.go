package relay_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func commit(t *testing.T, db *store.DB, msgs ...tasks.Message) {
	t.Helper()
	err := db.InTx(context.Background(), func(tx *sqlx.Tx) error {
		for _, m := range msgs {
			if err := store.AddOutbox(context.Background(), tx, store.OutboxMessage(m)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unsent(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := store.Get(context.Background(), db, &n, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	return n
}

func pendingIDs(t *testing.T, insp *asynq.Inspector, queue string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks} {
		l, err := list(queue)
		if err != nil && err.Error() != "asynq: queue not found" {
			t.Fatal(err)
		}
		for _, ti := range l {
			ids[ti.ID] = true
		}
	}
	return ids
}

// TestRelayPublishesAndSweeps covers the outbox's promise: committed work
// reaches Redis exactly once, whether the writer relays it, a crash leaves
// it to the sweeper, or both race.
func TestRelayPublishesAndSweeps(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r := testkit.RedisDB(t)
		client := asynq.NewClientFromRedisClient(r.Client)
		insp := asynq.NewInspectorFromRedisClient(r.Client)
		rl := relay.New(db, client, slog.New(slog.DiscardHandler))

		// Normal path: commit, publish, flush the marks.
		a, _ := tasks.Encode(tasks.BookingRefund{BookingID: "b-normal"})
		later, _ := tasks.EncodeAt(tasks.BookingExpire{BookingID: "b-normal"}, time.Now().Add(time.Hour))
		commit(t, db, a, later)
		rl.Publish(ctx, a, later)
		rl.Flush(ctx)
		if n := unsent(t, db); n != 0 {
			t.Fatalf("%d rows unsent after publish", n)
		}
		if ids := pendingIDs(t, insp, tasks.QueueCritical); !ids[a.ID] {
			t.Fatalf("refund task not pending: %v", ids)
		}
		if ids := pendingIDs(t, insp, tasks.QueueDefault); !ids[later.ID] {
			t.Fatalf("expiry task not scheduled: %v", ids)
		}

		// Crash between commit and publish: the row stays unsent; the sweeper
		// relays it once, and sweeping again (or publishing late) doubles nothing.
		b, _ := tasks.Encode(tasks.BookingRefund{BookingID: "b-crash"})
		commit(t, db, b)
		if n, err := rl.Pending(ctx, time.Hour, 100); err != nil || n != 0 {
			t.Fatalf("sweep within grace relayed %d, %v; want 0", n, err)
		}
		if n, err := rl.Pending(ctx, 0, 100); err != nil || n != 1 {
			t.Fatalf("sweep relayed %d, %v; want 1", n, err)
		}
		if n, err := rl.Pending(ctx, 0, 100); err != nil || n != 0 {
			t.Fatalf("second sweep relayed %d, %v; want 0", n, err)
		}
		rl.Publish(ctx, b) // the writer wakes up late
		rl.Flush(ctx)
		info, err := insp.GetQueueInfo(tasks.QueueCritical)
		if err != nil {
			t.Fatal(err)
		}
		if info.Pending != 2 {
			t.Fatalf("critical queue holds %d tasks, want 2 (one per refund)", info.Pending)
		}

		// Writing the same work twice keeps one outbox row.
		commit(t, db, b)
		var rows int
		if err := store.Get(ctx, db, &rows, `SELECT count(*) FROM outbox WHERE id = ?`, b.ID); err != nil || rows != 1 {
			t.Fatalf("outbox rows for %s = %d, %v", b.ID, rows, err)
		}
	})
}

// TestRelayWithRedisDown leaves the rows to the sweeper and loses nothing.
func TestRelayWithRedisDown(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	ctx := context.Background()
	dead := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond})
	rl := relay.New(db, dead, slog.New(slog.DiscardHandler))
	m, _ := tasks.Encode(tasks.Thumbnail{UploadID: "u1"})
	commit(t, db, m)
	rl.Publish(ctx, m)
	rl.Flush(ctx)
	if n := unsent(t, db); n != 1 {
		t.Fatalf("unsent = %d, want the row kept for the sweeper", n)
	}
	if n, err := rl.Pending(ctx, 0, 10); n != 0 || err != nil {
		t.Fatalf("sweep with Redis down: %d, %v", n, err)
	}
	var attempts int
	if err := store.Get(ctx, db, &attempts, `SELECT attempts FROM outbox WHERE id = ?`, m.ID); err != nil || attempts != 1 {
		t.Fatalf("attempts = %d, %v", attempts, err)
	}
	// Redis is back: the sweeper delivers it.
	r := testkit.RedisDB(t)
	rl = relay.New(db, asynq.NewClientFromRedisClient(r.Client), slog.New(slog.DiscardHandler))
	if n, err := rl.Pending(ctx, 0, 10); n != 1 || err != nil {
		t.Fatalf("sweep after recovery: %d, %v", n, err)
	}
}

// TestPollRelaysWhatNobodyPublished: committed rows that no writer published
// reach Redis within about one interval.
func TestPollRelaysWhatNobodyPublished(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	r := testkit.RedisDB(t)
	rl := relay.New(db, asynq.NewClientFromRedisClient(r.Client), slog.New(slog.DiscardHandler))
	m, _ := tasks.Encode(tasks.BookingRefund{BookingID: "b-unpublished"})
	commit(t, db, m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rl.Poll(ctx, 100*time.Millisecond, 100*time.Millisecond)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if pendingIDs(t, insp, tasks.QueueCritical)[m.ID] {
			if n := unsent(t, db); n != 0 {
				t.Fatalf("row relayed but %d still unsent", n)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the poller never relayed the row")
}
