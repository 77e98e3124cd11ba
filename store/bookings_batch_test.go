package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// A batch of new bookings answers each as CreateBooking would alone, and
// writes exactly the rows of those it accepts: on PostgreSQL in one read
// and one statement, with overlaps inside the batch and with the table.
func TestCreateBookingsAnswersAsAlone(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter, other := newUser(t, db, "owner"), newUser(t, db, "renter"), newUser(t, db, "renter")
		kayak, tent := newListing(t, db, owner.ID, "Kayak", 2500), newListing(t, db, owner.ID, "Tent", 1000)
		old := newListing(t, db, owner.ID, "Old", 100)
		old.Active = false
		if err := store.UpdateListing(ctx, db, old); err != nil {
			t.Fatal(err)
		}
		createBooking(t, db, kayak.ID, renter.ID, 2, 5) // holds kayak's nights 2–4

		cases := []struct {
			name  string
			nb    store.NewBooking
			code  string // "" for created
			total int64
		}{
			{"created", newBooking(store.NewID(), kayak.ID, renter.ID, day(t, 10), day(t, 12)), "", 5000},
			{"another listing", newBooking(store.NewID(), tent.ID, other.ID, day(t, 10), day(t, 13)), "", 3000},
			{"overlaps one earlier in the batch", newBooking(store.NewID(), kayak.ID, other.ID, day(t, 11), day(t, 13)), portal.EOVERLAP, 0},
			{"overlaps one in the table", newBooking(store.NewID(), kayak.ID, other.ID, day(t, 4), day(t, 6)), portal.EOVERLAP, 0},
			{"own listing", newBooking(store.NewID(), kayak.ID, owner.ID, day(t, 20), day(t, 21)), portal.EUNPROCESSABLE, 0},
			{"inactive listing", newBooking(store.NewID(), old.ID, renter.ID, day(t, 20), day(t, 21)), portal.EUNPROCESSABLE, 0},
			{"no listing", newBooking(store.NewID(), "missing", renter.ID, day(t, 20), day(t, 21)), portal.ENOTFOUND, 0},
			{"adjacent to one in the batch", newBooking(store.NewID(), tent.ID, renter.ID, day(t, 13), day(t, 14)), "", 1000},
		}
		nbs := make([]store.NewBooking, len(cases))
		for i, c := range cases {
			nbs[i] = c.nb
		}
		results := store.CreateBookings(ctx, db, nbs)
		if len(results) != len(cases) {
			t.Fatalf("%d results for %d bookings", len(results), len(cases))
		}
		for i, c := range cases {
			r := results[i]
			if got := portal.ErrorCode(r.Err); got != c.code {
				t.Errorf("%s: err = %v, want code %q", c.name, r.Err, c.code)
				continue
			}
			rows := countRows(t, db, `SELECT count(*) FROM bookings WHERE id = ?`, c.nb.ID)
			outbox := countRows(t, db, `SELECT count(*) FROM outbox WHERE id = ?`, "booking:expire:"+c.nb.ID)
			events := countRows(t, db, `SELECT count(*) FROM domain_events WHERE subject_id = ? AND type = 'booking.created'`, c.nb.ID)
			if c.code != "" {
				if r.Booking != nil || rows+outbox+events != 0 {
					t.Errorf("%s: refused, yet booking %+v, %d rows, %d outbox rows, %d events", c.name, r.Booking, rows, outbox, events)
				}
				continue
			}
			b := r.Booking
			if b == nil || b.ID != c.nb.ID || b.Status != booking.PendingPayment || b.TotalAmount != c.total || b.OwnerID != owner.ID {
				t.Errorf("%s: booking = %+v", c.name, b)
				continue
			}
			if len(r.History) != 1 || r.History[0].ToStatus != "pending_payment" || r.History[0].SourceRef != "req-1" {
				t.Errorf("%s: history = %+v", c.name, r.History)
			}
			// Its outbox: the caller's booking:expire and the event's notify task.
			if len(b.Outbox) != 2 || rows != 1 || outbox != 1 || events != 1 {
				t.Errorf("%s: %d outbox messages returned; %d rows, %d outbox rows, %d events stored", c.name, len(b.Outbox), rows, outbox, events)
			}
			stored, err := store.GetBooking(ctx, db, b.ID)
			if err != nil || stored.TotalAmount != c.total || stored.StartDate != c.nb.Start || stored.EndDate != c.nb.End ||
				!stored.ExpiresAt.Equal(b.ExpiresAt) || stored.RenterID != c.nb.RenterID {
				t.Errorf("%s: stored %+v, %v; returned %+v", c.name, stored, err, b)
			}
			hist, err := store.BookingHistory(ctx, db, b.ID)
			if err != nil || len(hist) != 1 || hist[0].ID != r.History[0].ID || hist[0].ActorID == nil || *hist[0].ActorID != c.nb.RenterID ||
				!hist[0].CreatedAt.Equal(r.History[0].CreatedAt) {
				t.Errorf("%s: stored history %+v, %v; returned %+v", c.name, hist, err, r.History)
			}
		}
		if n := countRows(t, db, `SELECT count(*) FROM bookings`); n != 4 {
			t.Fatalf("bookings = %d, want 4 (one before, three of the batch)", n)
		}
	})
}

// A batch the database refuses as a whole (here: a renter that does not
// exist breaks a foreign key) is created booking by booking, so the others
// are not refused with it.
func TestCreateBookingsRefusedBatchGoesOneByOne(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Canoe", 700)
		good := newBooking(store.NewID(), l.ID, renter.ID, day(t, 1), day(t, 2))
		ghost := newBooking(store.NewID(), l.ID, "no-such-user", day(t, 3), day(t, 4))
		results := store.CreateBookings(ctx, db, []store.NewBooking{good, ghost})
		if results[0].Err != nil || results[0].Booking == nil {
			t.Fatalf("good booking: %+v", results[0])
		}
		if portal.ErrorCode(results[1].Err) != portal.EINVALID {
			t.Fatalf("ghost renter: %v, want %s", results[1].Err, portal.EINVALID)
		}
		if n := countRows(t, db, `SELECT count(*) FROM bookings`); n != 1 {
			t.Fatalf("bookings = %d, want 1", n)
		}
	})
}

// One booking ID asked for twice in a batch (a client's retries with one
// Idempotency-Key): it is written once, with one history row and one
// event, and the second ask is answered as a retry alone would be.
func TestCreateBookingsSameIDTwice(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Raft", 900)
		id := store.KeyedBookingID(renter.ID, "retry")
		nb := newBooking(id, l.ID, renter.ID, day(t, 1), day(t, 3))
		other := newBooking(store.NewID(), l.ID, renter.ID, day(t, 5), day(t, 6))
		results := store.CreateBookings(ctx, db, []store.NewBooking{nb, other, nb})
		if results[0].Err != nil || results[0].Booking == nil || results[1].Err != nil {
			t.Fatalf("first ask and the other booking: %+v, %+v", results[0], results[1])
		}
		if code := portal.ErrorCode(results[2].Err); code != portal.EOVERLAP && code != portal.EDUPLICATE {
			t.Fatalf("second ask: %+v, want %s or %s", results[2], portal.EOVERLAP, portal.EDUPLICATE)
		}
		for table, n := range map[string]int{
			`SELECT count(*) FROM bookings WHERE id = ?`:                    1,
			`SELECT count(*) FROM booking_history WHERE booking_id = ?`:     1,
			`SELECT count(*) FROM domain_events WHERE subject_id = ?`:       1,
			`SELECT count(*) FROM outbox WHERE id = 'booking:expire:' || ?`: 1,
		} {
			if got := countRows(t, db, table, id); got != n {
				t.Errorf("%s: %d, want %d", table, got, n)
			}
		}
	})
}

// A booking created alone while a batch is on its way, overlapping the
// batch's first booking and its next, does not deadlock with it: the lone
// insert waits for the batch before it holds anything the batch needs
// (both skip conflicts, ON CONFLICT DO NOTHING), and is then refused as an
// overlap. A failing plain insert held its index entry while waiting, the
// batch's next insert waited for that, and PostgreSQL broke the deadlock
// after deadlock_timeout by failing one of them.
func TestLoneInsertWaitsForBatchWithoutDeadlock(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	ctx := context.Background()
	owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
	l := newListing(t, db, owner.ID, "Punt", 800)
	batch, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Rollback()
	lone, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lone.Rollback()
	var lonePID int
	if err := lone.GetContext(ctx, &lonePID, `SELECT pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}

	first := newBooking(store.NewID(), l.ID, renter.ID, day(t, 1), day(t, 6))
	if ins, err := store.InsertBookingsIn(ctx, db, batch, first); err != nil || !ins[first.ID] {
		t.Fatalf("batch's first booking: %v, %v", ins, err)
	}
	middle := newBooking(store.NewID(), l.ID, renter.ID, day(t, 5), day(t, 8))
	type result struct {
		inserted bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		ins, err := store.InsertBookingAloneIn(ctx, db, lone, middle)
		done <- result{ins, err}
	}()
	// Until the lone insert waits for the batch's transaction.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting string
		if err := store.Get(ctx, db, &waiting, `SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = ?`, lonePID); err != nil {
			t.Fatal(err)
		}
		if waiting == "Lock" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lone insert never waited for the batch (wait event %q)", waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	next := newBooking(store.NewID(), l.ID, renter.ID, day(t, 7), day(t, 9))
	if ins, err := store.InsertBookingsIn(ctx, db, batch, next); err != nil || !ins[next.ID] {
		t.Fatalf("batch's next booking: %v, %v", ins, err)
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.inserted || portal.ErrorCode(r.err) != portal.EOVERLAP {
		t.Fatalf("lone booking: inserted %v, %v; want %s", r.inserted, r.err, portal.EOVERLAP)
	}
}

// The batch's write checks each listing still takes bookings at the price
// read: a stale read writes nothing and says so (CreateBookings then books
// it alone, from a fresh read).
func TestInsertBookingsChecksTheListingHeld(t *testing.T) {
	t.Parallel()
	db := testkit.Postgres(t)
	ctx := context.Background()
	owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
	l := newListing(t, db, owner.ID, "Raft", 900)
	a := newBooking(store.NewID(), l.ID, renter.ID, day(t, 1), day(t, 2))
	b := newBooking(store.NewID(), l.ID, renter.ID, day(t, 5), day(t, 6))
	inserted, held, err := store.InsertBookingsReadAt(ctx, db, []store.NewBooking{a, b}, 800)
	if err != nil {
		t.Fatal(err)
	}
	if inserted[a.ID] || inserted[b.ID] || held[a.ID] || held[b.ID] || len(inserted) != 2 {
		t.Fatalf("stale price: inserted %v, held %v", inserted, held)
	}
	if n := countRows(t, db, `SELECT count(*) FROM bookings`) + countRows(t, db, `SELECT count(*) FROM outbox`) +
		countRows(t, db, `SELECT count(*) FROM domain_events`) + countRows(t, db, `SELECT count(*) FROM booking_history`); n != 0 {
		t.Fatalf("a stale batch wrote %d rows", n)
	}
	// At the price it has, both are written, and one that overlaps a in the
	// same statement is skipped: held, not written.
	c := newBooking(store.NewID(), l.ID, renter.ID, day(t, 1), day(t, 3))
	inserted, held, err = store.InsertBookingsReadAt(ctx, db, []store.NewBooking{a, b, c}, 900)
	if err != nil || !inserted[a.ID] || !inserted[b.ID] || inserted[c.ID] || !held[a.ID] || !held[b.ID] || !held[c.ID] {
		t.Fatalf("fresh price: inserted %v, held %v, %v", inserted, held, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM outbox`); n != 4 {
		t.Fatalf("outbox rows = %d, want 4 (expire and notify of two bookings)", n)
	}
}

// Concurrent callers of one Bookings, all after the same nights: exactly
// one is booked, whichever batches they fall into.
func TestBookingsCreateConcurrentOverlapOnce(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner := newUser(t, db, "owner")
		l := newListing(t, db, owner.ID, "Cabin", 5000)
		renters := make([]*store.User, 8)
		for i := range renters {
			renters[i] = newUser(t, db, "renter")
		}
		bk := store.NewBookings(db)
		const n = 40
		codes := make([]string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Ranges that all share night 5.
				start := 3 + i%3
				_, _, err := bk.Create(ctx, newBooking(store.NewID(), l.ID, renters[i%len(renters)].ID, day(t, start), day(t, 6)))
				codes[i] = portal.ErrorCode(err)
				if err != nil && codes[i] != portal.EOVERLAP {
					t.Errorf("booking %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		created := 0
		for _, c := range codes {
			if c == "" {
				created++
			}
		}
		if created != 1 {
			t.Fatalf("%d created, want 1 (codes %v)", created, codes)
		}
		if rows := countRows(t, db, `SELECT count(*) FROM bookings WHERE listing_id = ?`, l.ID); rows != 1 {
			t.Fatalf("%d bookings stored, want 1", rows)
		}
	})
}
