package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func day(t *testing.T, offset int) booking.Date {
	t.Helper()
	return booking.DateOf(time.Now(), time.UTC).AddDays(offset)
}

func newBooking(id, listingID, renterID string, start, end booking.Date) store.NewBooking {
	return store.NewBooking{ID: id, ListingID: listingID, RenterID: renterID, Start: start, End: end,
		ExpiresAt: time.Now().Add(30 * time.Minute), Source: store.Source{Kind: store.SourceAPI, Ref: "req-1", ActorID: renterID},
		Outbox: []store.OutboxMessage{{ID: "booking:expire:" + id, Type: "booking:expire", Payload: []byte(`{}`),
			ProcessAt: time.Now().Add(30 * time.Minute)}}}
}

// createBooking creates a booking of listingID by renterID for the nights
// from today+start to today+end, and returns its ID.
func createBooking(t *testing.T, db *store.DB, listingID, renterID string, start, end int) string {
	t.Helper()
	id := store.NewID()
	if _, _, err := store.CreateBooking(context.Background(), db, newBooking(id, listingID, renterID, day(t, start), day(t, end))); err != nil {
		t.Fatal(err)
	}
	return id
}

func countRows(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := store.Get(context.Background(), db, &n, query, args...); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateBooking(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Kayak", 2500)

		id := store.NewID()
		b, h, err := store.CreateBooking(ctx, db, newBooking(id, l.ID, renter.ID, day(t, 2), day(t, 5)))
		if err != nil {
			t.Fatal(err)
		}
		if b.Status != booking.PendingPayment || b.TotalAmount != 7500 || b.Currency != "EUR" || b.OwnerID != owner.ID {
			t.Fatalf("booking = %+v", b)
		}
		if len(h) != 1 || h[0].FromStatus != "" || h[0].ToStatus != "pending_payment" || h[0].Source != "api" || h[0].SourceRef != "req-1" {
			t.Fatalf("history = %+v", h)
		}
		stored, err := store.GetBooking(ctx, db, id)
		if err != nil || stored.TotalAmount != 7500 || stored.StartDate != day(t, 2) || !stored.ExpiresAt.Equal(b.ExpiresAt) {
			t.Fatalf("stored = %+v, %v; returned %+v", stored, err, b)
		}
		if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE id = ? AND sent_at IS NULL`, "booking:expire:"+id); n != 1 {
			t.Fatalf("outbox rows = %d, want 1", n)
		}
		hist, _ := store.BookingHistory(ctx, db, id)
		if len(hist) != 1 || hist[0].ActorID == nil || *hist[0].ActorID != renter.ID {
			t.Fatalf("stored history = %+v", hist)
		}

		inactive := newListing(t, db, owner.ID, "Old", 100)
		inactive.Active = false
		if err := store.UpdateListing(ctx, db, inactive); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			nb   store.NewBooking
			code string
		}{
			{"overlap", newBooking(store.NewID(), l.ID, renter.ID, day(t, 4), day(t, 6)), portal.EOVERLAP},
			{"own listing", newBooking(store.NewID(), l.ID, owner.ID, day(t, 10), day(t, 11)), portal.EUNPROCESSABLE},
			{"inactive listing", newBooking(store.NewID(), inactive.ID, renter.ID, day(t, 10), day(t, 11)), portal.EUNPROCESSABLE},
			{"no listing", newBooking(store.NewID(), "missing", renter.ID, day(t, 10), day(t, 11)), portal.ENOTFOUND},
		}
		for _, c := range cases {
			if _, _, err := store.CreateBooking(ctx, db, c.nb); portal.ErrorCode(err) != c.code {
				t.Errorf("%s: %v, want %s", c.name, err, c.code)
			}
			// Nothing of a refused booking remains: no row, no outbox message.
			if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE id = ?`, "booking:expire:"+c.nb.ID); n != 0 {
				t.Errorf("%s: left an outbox row", c.name)
			}
		}
		if n := countRows(t, db, `SELECT count(*) FROM bookings`); n != 1 {
			t.Fatalf("bookings = %d, want 1", n)
		}
	})
}

func TestCancelBooking(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Drill", 900)
		mk := func(offset int) string { return createBooking(t, db, l.ID, renter.ID, offset, offset+1) }
		src := store.Source{Kind: store.SourceAPI, ActorID: renter.ID}
		refund := func(id string) store.OutboxMessage {
			return store.OutboxMessage{ID: "booking:refund:" + id, Type: "booking:refund", Payload: []byte(`{}`)}
		}

		unpaid := mk(1)
		b, refunding, err := store.CancelBooking(ctx, db, unpaid, src, refund(unpaid))
		if err != nil || b.Status != booking.Cancelled || refunding || b.RefundRequestedAt != nil {
			t.Fatalf("cancel unpaid: %+v %v %v", b, refunding, err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE task_type = 'booking:refund'`); n != 0 {
			t.Fatalf("an unpaid cancellation wrote a refund")
		}

		paid := mk(3)
		if _, err := store.ApplyBookingEvent(ctx, db, paid, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe}); err != nil {
			t.Fatal(err)
		}
		b, refunding, err = store.CancelBooking(ctx, db, paid, src, refund(paid))
		if err != nil || b.Status != booking.Cancelled || !refunding {
			t.Fatalf("cancel paid: %+v %v %v", b, refunding, err)
		}
		stored, _ := store.GetBooking(ctx, db, paid)
		if stored.RefundRequestedAt == nil {
			t.Fatal("refund_requested_at not set")
		}
		if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE id = ?`, "booking:refund:"+paid); n != 1 {
			t.Fatalf("refund outbox rows = %d", n)
		}

		// Cancelling again, or an active booking, is a conflict that changes nothing.
		_, _, err = store.CancelBooking(ctx, db, paid, src, refund(paid))
		if portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("cancel twice: %v", err)
		}
		active := mk(5)
		for _, ev := range []booking.Event{booking.PaymentSucceeded, booking.Start} {
			if _, err := store.ApplyBookingEvent(ctx, db, active, ev, store.Source{Kind: store.SourceCron}); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err = store.CancelBooking(ctx, db, active, src, refund(active))
		if portal.ErrorCode(err) != portal.ECONFLICT || portal.ErrorMessage(err) != "a active booking cannot be cancelled" {
			t.Fatalf("cancel active: %v", err)
		}
		if _, _, err := store.CancelBooking(ctx, db, "missing", src, refund("missing")); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("cancel missing: %v", err)
		}
	})
}

func TestListBookingsAndBatches(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter, other := newUser(t, db, "owner"), newUser(t, db, "renter"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Van", 10000)
		var mine []string
		for i := 0; i < 5; i++ {
			id := store.NewID()
			r := renter.ID
			if i == 4 {
				r = other.ID
			} else {
				mine = append(mine, id)
			}
			if _, _, err := store.CreateBooking(ctx, db, newBooking(id, l.ID, r, day(t, 2*i+1), day(t, 2*i+2))); err != nil {
				t.Fatal(err)
			}
		}
		p := store.Page{Limit: 2}
		var got []string
		for {
			rows, next, err := store.ListBookings(ctx, db, store.BookingFilter{RenterID: renter.ID}, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range rows {
				got = append(got, b.ID)
			}
			if next == nil {
				break
			}
			p.After = next
		}
		if len(got) != 4 || got[0] != mine[3] || got[3] != mine[0] {
			t.Fatalf("renter's bookings = %v, want %v newest first", got, mine)
		}
		rows, _, err := store.ListBookings(ctx, db, store.BookingFilter{OwnerID: owner.ID}, store.Page{Limit: 100})
		if err != nil || len(rows) != 5 {
			t.Fatalf("owner's bookings: %d %v", len(rows), err)
		}
		hs, err := store.BookingHistories(ctx, db, got...)
		if err != nil || len(hs) != 4 || len(hs[got[0]]) != 1 {
			t.Fatalf("histories: %v %v", hs, err)
		}

		// Batches for the tick, by date; end_date is exclusive.
		now := store.Now()
		ins := func(status string, start, end booking.Date) string {
			id, l := store.NewID(), newListing(t, db, owner.ID, "Batch", 100) // a listing each: no overlaps
			_, err := store.Exec(ctx, db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
				total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 100, 'EUR', ?, ?, ?)`,
				id, l.ID, renter.ID, owner.ID, start, end, status, now.Add(-time.Hour), now, now)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		startsToday := ins("confirmed", day(t, 0), day(t, 1))
		ins("confirmed", day(t, 20), day(t, 21)) // future
		endsToday := ins("active", day(t, -30), day(t, 0))
		ins("active", day(t, -20), day(t, 15)) // still running
		overdue := ins("pending_payment", day(t, 30), day(t, 31))

		if ids, err := store.BookingsToStart(ctx, db, day(t, 0), "", 10); err != nil || len(ids) != 1 || ids[0] != startsToday {
			t.Fatalf("to start = %v %v", ids, err)
		}
		if ids, _ := store.BookingsToStart(ctx, db, day(t, 0), startsToday, 10); len(ids) != 0 {
			t.Fatalf("keyset after the last id still returns %v", ids)
		}
		if ids, err := store.BookingsToEnd(ctx, db, day(t, 0), "", 10); err != nil || len(ids) != 1 || ids[0] != endsToday {
			t.Fatalf("to end = %v %v", ids, err)
		}
		// The bookings made above expire in 30 minutes: not overdue.
		if ids, err := store.OverdueExpiries(ctx, db, time.Now(), 10); err != nil || len(ids) != 1 || ids[0] != overdue {
			t.Fatalf("overdue = %v %v", ids, err)
		}
	})
}

// TestBookingRacesListingDeletion: a booking and the deletion of its
// listing, started together many times: either the booking is refused
// (the listing is gone) or the deletion is (the listing has a booking);
// never a deleted listing with a live booking, never both refused.
func TestBookingRacesListingDeletion(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		today := day(t, 0)
		outcomes := map[string]int{}
		for i := 0; i < 30; i++ {
			l := newListing(t, db, owner.ID, "Bike", 1000)
			start := make(chan struct{})
			var bookErr, delErr error
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				_, _, bookErr = store.CreateBooking(ctx, db, newBooking(store.NewID(), l.ID, renter.ID, day(t, 2), day(t, 4)))
			}()
			go func() {
				defer wg.Done()
				<-start
				delErr = db.InTx(ctx, func(tx *sqlx.Tx) error { return store.DeleteListing(ctx, tx, l.ID, today) })
			}()
			close(start)
			wg.Wait()
			switch {
			case bookErr == nil && portal.ErrorCode(delErr) == portal.ECONFLICT:
				outcomes["booked first"]++
			case portal.ErrorCode(bookErr) == portal.ENOTFOUND && delErr == nil:
				outcomes["deleted first"]++
			default:
				t.Fatalf("round %d: booking %v, deletion %v", i, bookErr, delErr)
			}
			live := countRows(t, db, `SELECT count(*) FROM bookings b JOIN listings l ON l.id = b.listing_id
				WHERE b.listing_id = ? AND l.deleted_at IS NOT NULL`, l.ID)
			if live != 0 {
				t.Fatalf("round %d: a deleted listing kept a booking", i)
			}
		}
		t.Logf("%v", outcomes)
	})
}
