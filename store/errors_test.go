package store_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestSerializationFailuresAreRetried makes two SERIALIZABLE transactions
// conflict on PostgreSQL: one gets 40001, which Translate reports as
// ECONFLICT and InTx retries until both have committed.
func TestSerializationFailuresAreRetried(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE counters (n integer NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// Raw: the failure is reported as a conflict.
	tx1, _ := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	tx2, _ := db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	var n int
	_ = tx1.GetContext(ctx, &n, `SELECT count(*) FROM counters`)
	_ = tx2.GetContext(ctx, &n, `SELECT count(*) FROM counters`)
	_, _ = tx1.ExecContext(ctx, `INSERT INTO counters VALUES (1)`)
	_, _ = tx2.ExecContext(ctx, `INSERT INTO counters VALUES (2)`)
	err1, err2 := tx1.Commit(), tx2.Commit()
	if err1 == nil && err2 == nil {
		t.Fatal("expected one serialization failure")
	}
	failed := err1
	if failed == nil {
		failed = err2
	}
	if got := portal.ErrorCode(store.Translate(failed)); got != portal.ECONFLICT {
		t.Fatalf("serialization failure translated to %q (%v)", got, failed)
	}

	// Through InTx: both writers succeed, one after a retry.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.InTx(ctx, func(tx *sqlx.Tx) error {
				if _, err := tx.ExecContext(ctx, `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`); err != nil {
					return err
				}
				var c int
				if err := tx.GetContext(ctx, &c, `SELECT count(*) FROM counters`); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO counters VALUES ($1)`, c+10)
				return err
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if err := db.GetContext(ctx, &n, `SELECT count(*) FROM counters`); err != nil || n != 1+len(errs) {
		t.Fatalf("rows = %d, %v; want %d", n, err, 1+len(errs))
	}
}

// TestSQLiteBusyIsAConflict holds the write lock from one connection while
// another, with no busy timeout, tries to write.
func TestSQLiteBusyIsAConflict(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	ctx := context.Background()
	tx, err := db.BeginTxx(ctx, nil) // _txlock=immediate: takes the write lock now
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	other, err := sql.Open("sqlite", "file:"+db.Path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.ExecContext(ctx, `INSERT INTO outbox (id, task_type, payload, created_at) VALUES ('x', 't', x'00', '2026-01-01 00:00:00+00:00')`)
	if got := portal.ErrorCode(store.Translate(err)); got != portal.ECONFLICT {
		t.Fatalf("busy database translated to %q (%v)", got, err)
	}
}

// TestUnreachableDatabaseIsUnavailable: a dead PostgreSQL is EUNAVAILABLE,
// which the API answers with 503.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	_, err := store.Open(context.Background(), "postgres://nobody:pw@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", "", store.Options{})
	if got := portal.ErrorCode(err); got != portal.EUNAVAILABLE {
		t.Fatalf("code %q (%v)", got, err)
	}
	if err != nil && strings.Contains(err.Error(), "pw@") {
		t.Fatalf("error leaks the password: %v", err)
	}
}
