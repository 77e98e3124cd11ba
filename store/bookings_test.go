package store_test

import (
	"context"
	"errors"
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
