package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestTransitionBatchAnswersAsAlone: one batch mixing every outcome — a
// transition that applies, one its check refuses, one the state machine
// refuses, a missing booking, a booking that appears twice (the second
// transition sees the first), and one changed by someone else between
// the batch's read and its write — answers each as TransitionBooking
// alone would, and writes the rows of those that applied only. Then a
// batch whose write the database refuses as a whole (one transition's
// dates were taken meanwhile) is replayed one by one: the others apply.
func TestTransitionBatchAnswersAsAlone(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Sled", 1000)
		book := func(start int) string { return createBooking(t, db, l.ID, renter.ID, start, start+2) }
		status := func(id string) booking.Status {
			t.Helper()
			b, err := store.GetBooking(ctx, db, id)
			if err != nil {
				t.Fatal(err)
			}
			return b.Status
		}
		expires, refused, confirmed, twice, raced := book(1), book(4), book(7), book(10), book(13)
		src := store.Source{Kind: store.SourceTask, Ref: "t1"}
		if _, err := store.TransitionBooking(ctx, db, confirmed, booking.PaymentSucceeded, src, nil); err != nil {
			t.Fatal(err)
		}
		errCheck := errors.New("not yet")
		race := func(*store.Booking) error {
			// Someone else moves it after the read.
			_, err := store.Exec(ctx, db, `UPDATE bookings SET status = 'cancelled' WHERE id = ?`, raced)
			return err
		}
		if db.Engine == store.SQLite {
			// A transition reads in its transaction there, which holds
			// the database: nobody else writes between read and write.
			race = func(*store.Booking) error { return store.ErrStale }
			if _, err := store.Exec(ctx, db, `UPDATE bookings SET status = 'cancelled' WHERE id = ?`, raced); err != nil {
				t.Fatal(err)
			}
		}
		results := store.TransitionBookings(ctx, db, []store.TransitionRequest{
			{ID: expires, Event: booking.Expire, Source: src},
			{ID: refused, Event: booking.Expire, Source: src, Check: func(*store.Booking) error { return errCheck }},
			{ID: confirmed, Event: booking.Expire, Source: src},
			{ID: "missing", Event: booking.Expire, Source: src},
			{ID: twice, Event: booking.PaymentSucceeded, Source: src},
			{ID: raced, Event: booking.Expire, Source: src, Check: race},
			{ID: twice, Event: booking.DisputeOpened, Source: src},
		})
		var ill *booking.IllegalTransition
		for i, c := range []struct {
			ok   bool
			is   func(error) bool
			want booking.Status
		}{
			{true, nil, booking.Expired},
			{false, func(err error) bool { return errors.Is(err, errCheck) }, booking.PendingPayment},
			{false, func(err error) bool { return errors.As(err, &ill) && portal.ErrorCode(err) == portal.ECONFLICT }, booking.Confirmed},
			{false, func(err error) bool { return portal.ErrorCode(err) == portal.ENOTFOUND }, ""},
			{true, nil, booking.Confirmed},
			{false, func(err error) bool {
				return errors.Is(err, store.ErrStale) && (portal.ErrorCode(err) == portal.ECONFLICT || db.Engine == store.SQLite)
			}, booking.Cancelled},
			{true, nil, booking.Disputed},
		} {
			r := results[i]
			if c.ok != (r.Err == nil) || (!c.ok && !c.is(r.Err)) {
				t.Fatalf("request %d: %v", i, r.Err)
			}
			if c.ok && (r.Booking == nil || r.Booking.Status != c.want || len(r.Booking.Outbox) != 1) {
				t.Fatalf("request %d: booking %+v", i, r.Booking)
			}
		}
		for id, want := range map[string]booking.Status{expires: booking.Expired, refused: booking.PendingPayment,
			confirmed: booking.Confirmed, twice: booking.Disputed, raced: booking.Cancelled} {
			if got := status(id); got != want {
				t.Fatalf("booking %s is %s, want %s", id, got, want)
			}
		}
		if b, _ := store.GetBooking(ctx, db, twice); b.BeforeDispute == nil || *b.BeforeDispute != string(booking.Confirmed) {
			t.Fatalf("disputed booking remembers %v", b.BeforeDispute)
		}
		// Rows of the transitions that applied, and only those: history
		// (created + each move), events and their one outbox row each.
		for id, want := range map[string]int{expires: 2, refused: 1, confirmed: 2, twice: 3, raced: 1} {
			if n := countRows(t, db, `SELECT count(*) FROM booking_history WHERE booking_id = ?`, id); n != want {
				t.Fatalf("booking %s has %d history rows, want %d", id, n, want)
			}
		}
		for id, want := range map[string][]event.Type{expires: {event.BookingCreated, event.BookingExpired},
			refused: {event.BookingCreated}, twice: {event.BookingCreated, event.BookingConfirmed, event.BookingDisputed},
			raced: {event.BookingCreated}} {
			evs, err := store.EventsOf(ctx, db, event.SubjectBooking, id)
			if err != nil || len(evs) != len(want) {
				t.Fatalf("events of %s: %+v, %v", id, evs, err)
			}
			for i, ev := range evs {
				if ev.Type != want[i] {
					t.Fatalf("event %d of %s is %s, want %s", i, id, ev.Type, want[i])
				}
				if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE id = ?`, "notify:event:"+ev.ID); n != 1 {
					t.Fatalf("event %s of %s has %d outbox rows", ev.Type, id, n)
				}
			}
		}
		h, err := store.BookingHistory(ctx, db, expires)
		if err != nil || h[1].FromStatus != string(booking.PendingPayment) ||
			h[1].ToStatus != string(booking.Expired) || h[1].Source != store.SourceTask || h[1].SourceRef != "t1" {
			t.Fatalf("history of the expiry: %+v, %v", h, err)
		}

		// The expired booking's dates are taken again; its late payment
		// cannot take them back, and must not stop the other transition.
		retaken, other := book(1), book(16)
		results = store.TransitionBookings(ctx, db, []store.TransitionRequest{
			{ID: expires, Event: booking.PaymentSucceeded, Source: src},
			{ID: other, Event: booking.Expire, Source: src},
		})
		if portal.ErrorCode(results[0].Err) != portal.EOVERLAP || results[1].Err != nil {
			t.Fatalf("late payment onto taken dates: %v; other: %v", results[0].Err, results[1].Err)
		}
		if status(expires) != booking.Expired || status(retaken) != booking.PendingPayment || status(other) != booking.Expired {
			t.Fatalf("after the refused batch: %s %s %s", status(expires), status(retaken), status(other))
		}
	})
}

// TestConcurrentTransitionsApplyOnce: 40 goroutines expire 20 bookings
// through one Transitions, each booking twice at once: each booking is
// expired once — one caller moves it, the other finds it moved on — with
// one history row and one event.
func TestConcurrentTransitionsApplyOnce(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Raft", 1000)
		var ids []string
		for i := 0; i < 20; i++ {
			ids = append(ids, createBooking(t, db, l.ID, renter.ID, 1+3*i, 3+3*i))
		}
		tr := store.NewTransitions(db)
		var mu sync.Mutex
		moved := map[string]int{}
		var wg sync.WaitGroup
		for _, id := range append(append([]string{}, ids...), ids...) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := tr.Apply(ctx, id, booking.Expire, store.Source{Kind: store.SourceTask}, nil)
				var ill *booking.IllegalTransition
				switch {
				case err == nil && b.Status == booking.Expired:
					mu.Lock()
					moved[id]++
					mu.Unlock()
				case errors.As(err, &ill), errors.Is(err, store.ErrStale):
				default:
					t.Errorf("expire %s: %+v, %v", id, b, err)
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if moved[id] != 1 {
				t.Fatalf("booking %s moved %d times", id, moved[id])
			}
			if n := countRows(t, db, `SELECT count(*) FROM booking_history WHERE booking_id = ? AND to_status = 'expired'`, id); n != 1 {
				t.Fatalf("booking %s has %d expiry history rows", id, n)
			}
			if n := countRows(t, db, `SELECT count(*) FROM domain_events WHERE subject_id = ? AND type = 'booking.expired'`, id); n != 1 {
				t.Fatalf("booking %s has %d expiry events", id, n)
			}
		}
	})
}
