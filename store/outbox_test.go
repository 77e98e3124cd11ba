package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestMarkOutboxSentFindsRowsByKey: marking rows sent behind a backlog of
// unsent rows, with statistics taken while almost nothing was unsent (the
// state a Redis outage or a busy relay leaves), reads the rows by primary
// key and never walks the unsent index (PostgreSQL's own per-transaction
// scan counters say which index the UPDATE used). A row already marked
// keeps its first time.
func TestMarkOutboxSentFindsRowsByKey(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	ctx := context.Background()
	add := func(prefix string, n int) []string {
		ids := make([]string, n)
		msgs := make([]store.OutboxMessage, n)
		for i := range msgs {
			ids[i] = fmt.Sprintf("%s-%d", prefix, i)
			msgs[i] = store.OutboxMessage{ID: ids[i], Type: "notify:event", Payload: []byte(`{}`)}
		}
		for i := 0; i < n; i += 500 {
			if err := store.AddOutbox(ctx, db, msgs[i:min(i+500, n)]...); err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
	sent := add("sent", 2000)
	if err := store.MarkOutboxSent(ctx, db, sent...); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	if err := store.Get(ctx, db, &first, `SELECT sent_at FROM outbox WHERE id = ?`, sent[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE outbox`); err != nil {
		t.Fatal(err)
	}
	backlog := add("backlog", 5000)

	err := db.InTx(ctx, func(tx *sqlx.Tx) error {
		// Index scans this backend has counted and not yet reported:
		// read before and after the mark, in the same transaction.
		scans := func() (map[string]int64, error) {
			var rows []struct {
				Index string `db:"relname"`
				N     int64  `db:"scans"`
			}
			err := store.Select(ctx, tx, &rows, `SELECT relname, pg_stat_get_xact_numscans(oid) AS scans FROM pg_class
				WHERE relname IN ('outbox_pkey', 'outbox_unsent_idx') AND relnamespace = current_schema()::regnamespace`)
			m := map[string]int64{}
			for _, r := range rows {
				m[r.Index] = r.N
			}
			return m, err
		}
		before, err := scans()
		if err != nil {
			return err
		}
		if err := store.MarkOutboxSent(ctx, tx, append(backlog[:10:10], sent[0])...); err != nil {
			return err
		}
		after, err := scans()
		if err != nil {
			return err
		}
		pkey, unsent := after["outbox_pkey"]-before["outbox_pkey"], after["outbox_unsent_idx"]-before["outbox_unsent_idx"]
		if pkey == 0 || unsent != 0 {
			t.Errorf("the mark scanned outbox_pkey %d times and outbox_unsent_idx %d times; want the primary key only", pkey, unsent)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE id LIKE 'backlog-%' AND sent_at IS NOT NULL`); n != 10 {
		t.Fatalf("%d backlog rows marked sent, want 10", n)
	}
	var again time.Time
	if err := store.Get(ctx, db, &again, `SELECT sent_at FROM outbox WHERE id = ?`, sent[0]); err != nil {
		t.Fatal(err)
	}
	if !again.Equal(first) {
		t.Fatalf("a row marked twice: sent_at %v, then %v; want the first kept", first, again)
	}
}

// TestDeleteSentOutbox: the purge deletes the rows relayed before the
// cutoff, in chunks, and nothing else: not rows relayed since, not rows
// never relayed however old.
func TestDeleteSentOutbox(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now().UTC()
		add := func(id string, created time.Time, sent *time.Time) {
			t.Helper()
			if err := store.AddOutbox(ctx, db, store.OutboxMessage{ID: id, Type: "notify:event", Payload: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Exec(ctx, db, `UPDATE outbox SET created_at = ?, sent_at = ? WHERE id = ?`, created, sent, id); err != nil {
				t.Fatal(err)
			}
		}
		old, recent := now.Add(-8*24*time.Hour), now.Add(-time.Hour)
		for i := 0; i < 10; i++ {
			add(fmt.Sprintf("old-sent-%d", i), old, &old)
		}
		add("old-unsent", old, nil)
		add("old-sent-recently", old, &recent)
		add("new-sent", recent, &recent)

		n, err := store.DeleteSentOutbox(ctx, db, now.Add(-7*24*time.Hour), 3)
		if err != nil || n != 10 {
			t.Fatalf("purge: %d, %v; want the 10 rows relayed 8 days ago", n, err)
		}
		var left []string
		if err := store.Select(ctx, db, &left, `SELECT id FROM outbox ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		if want := []string{"new-sent", "old-sent-recently", "old-unsent"}; !slices.Equal(left, want) {
			t.Fatalf("left %v, want %v", left, want)
		}
	})
}
