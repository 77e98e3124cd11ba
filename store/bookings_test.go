package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func bookingID(t *testing.T, db *store.DB, listingID, start string) string {
	t.Helper()
	var id string
	if err := store.Get(context.Background(), db, &id, `SELECT id FROM bookings WHERE listing_id = ? AND start_date = ?`,
		listingID, start); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestApplyBookingEvent(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		if err := insertBooking(ctx, db, listingID, userID, "2030-02-01", "2030-02-05", "pending_payment"); err != nil {
			t.Fatal(err)
		}
		id := bookingID(t, db, listingID, "2030-02-01")
		src := store.Source{Kind: store.SourceStripe, Ref: "evt_1"}

		b, err := store.ApplyBookingEvent(ctx, db, id, booking.PaymentSucceeded, src)
		if err != nil || b.Status != booking.Confirmed {
			t.Fatalf("pay: %v %v", b, err)
		}
		// The same event again is illegal now, and changes nothing.
		_, err = store.ApplyBookingEvent(ctx, db, id, booking.PaymentSucceeded, src)
		var ill *booking.IllegalTransition
		if portal.ErrorCode(err) != portal.ECONFLICT || !errors.As(err, &ill) {
			t.Fatalf("second pay: %v, want an illegal transition conflict", err)
		}
		// A dispute returns to the state before it when won.
		if _, err := store.ApplyBookingEvent(ctx, db, id, booking.Start, store.Source{Kind: store.SourceCron}); err != nil {
			t.Fatal(err)
		}
		if b, err = store.ApplyBookingEvent(ctx, db, id, booking.DisputeOpened, src); err != nil || b.Status != booking.Disputed {
			t.Fatalf("dispute: %v %v", b, err)
		}
		if b, err = store.ApplyBookingEvent(ctx, db, id, booking.DisputeWon, src); err != nil || b.Status != booking.Active {
			t.Fatalf("dispute won: %v %v", b, err)
		}
		h, err := store.BookingHistory(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"pending_payment>confirmed", "confirmed>active", "active>disputed", "disputed>active"}
		if len(h) != len(want) {
			t.Fatalf("history has %d rows, want %d: %+v", len(h), len(want), h)
		}
		for i, e := range h {
			if got := e.FromStatus + ">" + e.ToStatus; got != want[i] {
				t.Errorf("history[%d] = %s, want %s", i, got, want[i])
			}
		}
		if h[0].Source != store.SourceStripe || h[0].SourceRef != "evt_1" || h[0].Cause != string(booking.PaymentSucceeded) {
			t.Errorf("history[0] = %+v", h[0])
		}
	})
}

func TestLatePaymentCannotReviveOntoTakenDates(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		if err := insertBooking(ctx, db, listingID, userID, "2030-03-01", "2030-03-05", "expired"); err != nil {
			t.Fatal(err)
		}
		if err := insertBooking(ctx, db, listingID, userID, "2030-03-03", "2030-03-04", "confirmed"); err != nil {
			t.Fatal(err)
		}
		id := bookingID(t, db, listingID, "2030-03-01")
		_, err := store.ApplyBookingEvent(ctx, db, id, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe})
		if portal.ErrorCode(err) != portal.EOVERLAP {
			t.Fatalf("late payment onto taken dates: %v, want overlap", err)
		}
		b, _ := store.GetBooking(ctx, db, id)
		if b.Status != booking.Expired {
			t.Fatalf("status = %s, want expired", b.Status)
		}
	})
}

// TestTransitionBookingRaces: the same transition of one booking races with
// itself (a task delivered twice, or the tick and the sweeper); exactly one
// applies, with one history row and one domain event; the loser sees a
// conflict and wrote nothing. On PostgreSQL this is the two-round-trip path with no explicit
// transaction, held together by the compare-and-set.
func TestTransitionBookingRaces(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		for round := 0; round < 10; round++ {
			start := fmt.Sprintf("2031-%02d-01", round+1)
			if err := insertBooking(ctx, db, listingID, userID, start, fmt.Sprintf("2031-%02d-03", round+1), "pending_payment"); err != nil {
				t.Fatal(err)
			}
			id := bookingID(t, db, listingID, start)
			errs := make(chan error, 2)
			for range 2 {
				ev := booking.Expire
				go func() {
					_, err := store.TransitionBooking(ctx, db, id, ev, store.Source{Kind: store.SourceTask}, nil)
					errs <- err
				}()
			}
			won := 0
			for range 2 {
				err := <-errs
				switch {
				case err == nil:
					won++
				case portal.ErrorCode(err) != portal.ECONFLICT:
					t.Fatalf("round %d: %v", round, err)
				}
			}
			var hist, events int
			_ = store.Get(ctx, db, &hist, `SELECT count(*) FROM booking_history WHERE booking_id = ?`, id)
			_ = store.Get(ctx, db, &events, `SELECT count(*) FROM domain_events WHERE subject_id = ?`, id)
			if won != 1 || hist != 1 || events != 1 {
				t.Fatalf("round %d: %d won, %d history rows, %d events; want 1 each", round, won, hist, events)
			}
		}
	})
}

// TestTransitionBookingCheck: a check that refuses stops the transition
// before anything is written.
func TestTransitionBookingCheck(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		userID, listingID := seedUserAndListing(t, db)
		if err := insertBooking(ctx, db, listingID, userID, "2032-01-01", "2032-01-02", "pending_payment"); err != nil {
			t.Fatal(err)
		}
		id := bookingID(t, db, listingID, "2032-01-01")
		stop := errors.New("not yet")
		if _, err := store.TransitionBooking(ctx, db, id, booking.Expire, store.Source{Kind: store.SourceTask},
			func(*store.Booking) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("err = %v, want the check's", err)
		}
		b, err := store.TransitionBooking(ctx, db, id, booking.Expire, store.Source{Kind: store.SourceTask}, nil)
		if err != nil || b.Status != booking.Expired || len(b.Outbox) == 0 {
			t.Fatalf("expire: %+v %v (its notify tasks must come back to publish)", b, err)
		}
		var outbox int
		_ = store.Get(ctx, db, &outbox, `SELECT count(*) FROM outbox WHERE task_type LIKE 'notify:%'`)
		if outbox != len(b.Outbox) {
			t.Fatalf("%d notify outbox rows, returned %d", outbox, len(b.Outbox))
		}
	})
}
