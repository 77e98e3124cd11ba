package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// seedUserAndListing writes the rows bookings need.
func seedUserAndListing(t *testing.T, db *store.DB) (userID, listingID string) {
	t.Helper()
	ctx := context.Background()
	now := store.Now()
	userID, listingID = testkit.RandomName("u"), testkit.RandomName("l")
	if _, err := store.Exec(ctx, db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		VALUES (?, ?, 'x', 'Test', 'owner', ?, ?)`, userID, userID+"@example.com", now, now); err != nil {
		t.Fatalf("insert user: %v", err)
	}
	if _, err := store.Exec(ctx, db, `INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at)
		VALUES (?, ?, 'Bike', 1000, 'EUR', ?, ?)`, listingID, userID, now, now); err != nil {
		t.Fatalf("insert listing: %v", err)
	}
	return userID, listingID
}

func insertBooking(ctx context.Context, q store.Queryer, listingID, userID, start, end, status string) error {
	now := store.Now()
	_, err := store.Exec(ctx, q, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1000, 'EUR', ?, ?, ?)`,
		testkit.RandomName("b"), listingID, userID, userID, start, end, status, now.Add(time.Hour), now, now)
	return err
}

func TestMigrationsAndErrorTranslation(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		v, err := db.MigrationVersion(ctx)
		if err != nil || v < 1 {
			t.Fatalf("migration version = %d, %v", v, err)
		}
		// Migrating again is a no-op.
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		userID, listingID := seedUserAndListing(t, db)

		cases := []struct {
			name string
			run  func() error
			code string
		}{
			{"unique email", func() error {
				now := store.Now()
				_, err := store.Exec(ctx, db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
					VALUES ('other', ?, 'x', 'Dup', 'renter', ?, ?)`, userID+"@example.com", now, now)
				return err
			}, portal.EDUPLICATE},
			{"foreign key", func() error {
				return insertBooking(ctx, db, "no-such-listing", userID, "2030-01-01", "2030-01-03", "pending_payment")
			}, portal.EINVALID},
			{"check constraint", func() error {
				return insertBooking(ctx, db, listingID, userID, "2030-01-05", "2030-01-03", "pending_payment")
			}, portal.EINVALID},
			{"not found", func() error {
				var id string
				return store.Get(ctx, db, &id, `SELECT id FROM users WHERE id = ?`, "missing")
			}, portal.ENOTFOUND},
		}
		for _, c := range cases {
			if got := portal.ErrorCode(c.run()); got != c.code {
				t.Errorf("%s: code %q, want %q", c.name, got, c.code)
			}
		}
	})
}

func TestBookingsNeverOverlap(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		if err := insertBooking(ctx, db, listingID, userID, "2030-01-10", "2030-01-15", "confirmed"); err != nil {
			t.Fatalf("first booking: %v", err)
		}
		cases := []struct {
			start, end, status string
			code               string
		}{
			{"2030-01-10", "2030-01-15", "pending_payment", portal.EOVERLAP}, // identical
			{"2030-01-14", "2030-01-20", "pending_payment", portal.EOVERLAP}, // tail overlap
			{"2030-01-01", "2030-01-11", "pending_payment", portal.EOVERLAP}, // head overlap
			{"2030-01-11", "2030-01-12", "confirmed", portal.EOVERLAP},       // inside
			{"2030-01-15", "2030-01-16", "pending_payment", ""},              // end is exclusive
			{"2030-01-05", "2030-01-10", "pending_payment", ""},              // ends where it starts
			{"2030-01-12", "2030-01-13", "cancelled", ""},                    // cancelled holds no dates
		}
		for _, c := range cases {
			err := insertBooking(ctx, db, listingID, userID, c.start, c.end, c.status)
			if got := portal.ErrorCode(err); got != c.code {
				t.Errorf("%s..%s %s: code %q, want %q (%v)", c.start, c.end, c.status, got, c.code, err)
			}
		}
		// Reviving a cancelled booking onto taken dates is refused too.
		_, err := store.Exec(ctx, db, `UPDATE bookings SET status = 'confirmed' WHERE status = 'cancelled'`)
		if portal.ErrorCode(err) != portal.EOVERLAP {
			t.Errorf("revive onto taken dates: %v, want overlap", err)
		}
	})
}

func TestInTxRollsBackOnError(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		err := db.InTx(ctx, func(tx *sqlx.Tx) error {
			if err := insertBooking(ctx, tx, listingID, userID, "2031-01-01", "2031-01-02", "confirmed"); err != nil {
				return err
			}
			return portal.Errorf(portal.ECONFLICT, "stop")
		})
		if portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("InTx error = %v", err)
		}
		var n int
		if err := store.Get(ctx, db, &n, `SELECT count(*) FROM bookings`); err != nil || n != 0 {
			t.Fatalf("bookings after rollback = %d, %v", n, err)
		}
	})
}
