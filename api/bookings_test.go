package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func TestCreateBooking(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		owner, renter := a.signup("owner"), a.signup("renter")
		l := a.listing(owner, 2500)

		before := time.Now()
		r := a.do("POST", "/api/v1/bookings", renter.Token, bookingBody(l.ID, day(1), day(4)))
		expect(t, r, http.StatusCreated)
		var b api.BookingView
		r.decode(t, &b)
		if b.Status != booking.PendingPayment || b.TotalAmount != 7500 || b.Currency != "EUR" || b.RenterID != renter.ID ||
			b.OwnerID != owner.ID || b.StartDate != day(1) || b.EndDate != day(4) || b.Payment != nil {
			t.Fatalf("booking = %+v", b)
		}
		if d := b.ExpiresAt.Sub(before); d < 29*time.Minute || d > 31*time.Minute {
			t.Fatalf("expires_at %s is not 30 minutes ahead", b.ExpiresAt)
		}
		if len(b.History) != 1 || b.History[0].From != nil || b.History[0].To != "pending_payment" ||
			b.History[0].Source != "api" || b.History[0].SourceRef != r.Header.Get("X-Request-ID") {
			t.Fatalf("history = %+v", b.History)
		}
		// The expiry is scheduled in Redis under its deterministic ID, and its
		// outbox row is (soon) marked sent.
		ti := a.task("default", "booking:expire:"+b.ID)
		if ti == nil || ti.State != asynq.TaskStateScheduled || ti.NextProcessAt.Before(b.ExpiresAt) {
			t.Fatalf("expire task = %+v", ti)
		}
		waitFor(t, func() bool {
			return a.count(`SELECT count(*) FROM outbox WHERE id = ? AND sent_at IS NOT NULL`, "booking:expire:"+b.ID) == 1
		})
		// So is the booking.created event's notify task, at once: not left
		// for the outbox poll (OUTBOX_POLL_INTERVAL later).
		var eventID string
		if err := store.Get(context.Background(), db, &eventID,
			`SELECT id FROM domain_events WHERE subject_id = ? AND type = 'booking.created'`, b.ID); err != nil {
			t.Fatal(err)
		}
		if ti := a.task("default", tasks.NotifyEvent{EventID: eventID}.TaskID()); ti == nil || ti.State != asynq.TaskStatePending {
			t.Fatalf("notify task of booking.created = %+v", ti)
		}

		// GET shows the same booking.
		r = a.do("GET", "/api/v1/bookings/"+b.ID, renter.Token, nil)
		expect(t, r, http.StatusOK)
		var got api.BookingView
		r.decode(t, &got)
		if got.ID != b.ID || got.TotalAmount != 7500 || len(got.History) != 1 || !got.ExpiresAt.Equal(b.ExpiresAt) {
			t.Fatalf("GET = %+v", got)
		}

		// The dates are now taken.
		r = a.do("POST", "/api/v1/bookings", a.signup("renter").Token, bookingBody(l.ID, day(3), day(6)))
		expect(t, r, http.StatusConflict)
		if e := r.errorBody(t); e.Code != "booking_overlap" {
			t.Fatalf("overlap = %+v", e)
		}
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func TestCreateBookingRules(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testkit.SQLite(t), func(c *api.Config, _ *api.Deps) {
		c.BookingMaxNights, c.BookingMaxAdvanceDays = 14, 60
	})
	owner, renter := a.signup("owner"), a.signup("renter")
	l := a.listing(owner, 1000)
	inactive := a.listing(owner, 1000)
	expect(t, a.do("PATCH", "/api/v1/listings/"+inactive.ID, owner.Token, map[string]any{"active": false}), http.StatusOK)

	cases := []struct {
		name   string
		who    account
		body   any
		status int
		code   string
		fields string
	}{
		{"start in the past", renter, bookingBody(l.ID, day(-1), day(2)), 400, "validation_failed", "[start_date]"},
		{"end before start", renter, bookingBody(l.ID, day(5), day(4)), 400, "validation_failed", "[end_date]"},
		{"zero nights", renter, bookingBody(l.ID, day(5), day(5)), 400, "validation_failed", "[end_date]"},
		{"too long", renter, bookingBody(l.ID, day(1), day(16)), 400, "validation_failed", "[end_date]"},
		{"too far ahead", renter, bookingBody(l.ID, day(61), day(62)), 400, "validation_failed", "[start_date]"},
		{"both wrong", renter, bookingBody(l.ID, day(-3), day(-4)), 400, "validation_failed", "[start_date end_date]"},
		{"not a date", renter, map[string]string{"listing_id": l.ID, "start_date": "tomorrow", "end_date": "2030-02-30"},
			400, "validation_failed", "[start_date end_date]"},
		{"missing listing id", renter, map[string]string{"start_date": day(1).String(), "end_date": day(2).String()},
			400, "validation_failed", "[listing_id]"},
		{"unknown listing", renter, bookingBody("nope", day(1), day(2)), 404, "not_found", ""},
		{"own listing", owner, bookingBody(l.ID, day(1), day(2)), 422, "unprocessable", ""},
		{"inactive listing", renter, bookingBody(inactive.ID, day(1), day(2)), 422, "unprocessable", ""},
		{"max nights is fine", renter, bookingBody(l.ID, day(0), day(14)), 201, "", ""},
		{"max advance is fine", renter, bookingBody(l.ID, day(60), day(61)), 201, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do("POST", "/api/v1/bookings", c.who.Token, c.body)
			expect(t, r, c.status)
			if c.code == "" {
				return
			}
			e := r.errorBody(t)
			var fields []string
			for _, d := range e.Details {
				fields = append(fields, d.Field)
			}
			if e.Code != c.code || (c.fields != "" && fmt.Sprint(fields) != c.fields) {
				t.Fatalf("error = %+v, want %s %s", e, c.code, c.fields)
			}
		})
	}
	if n := a.count(`SELECT count(*) FROM bookings`); n != 2 {
		t.Fatalf("%d bookings written, want the 2 valid ones", n)
	}
}

// TestConcurrentBookings sends 50 requests at once for the same listing and
// dates, then 50 for ranges that differ but all overlap: each time exactly
// one wins, every other gets 409 booking_overlap, and one row exists.
func TestConcurrentBookings(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		owner := a.signup("owner")
		renters := make([]account, 10)
		for i := range renters {
			renters[i] = a.signup("renter")
		}
		run := func(name string, rng func(i int) (booking.Date, booking.Date)) {
			l := a.listing(owner, 1000)
			const n = 50
			statuses := make([]int, n)
			codes := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					s, e := rng(i)
					r, err := a.try("POST", "/api/v1/bookings", renters[i%len(renters)].Token, "application/json", bookingBody(l.ID, s, e))
					statuses[i], errs[i] = r.Status, err
					var eb api.ErrorBody
					if err == nil && r.Status != http.StatusCreated && json.Unmarshal(r.Body, &eb) == nil {
						codes[i] = eb.Error.Code
					}
				}()
			}
			began := time.Now()
			close(start)
			wg.Wait()
			t.Logf("%s: %d concurrent requests answered in %s", name, n, time.Since(began).Round(time.Millisecond))
			created, overlap := 0, 0
			for i := range statuses {
				switch {
				case statuses[i] == http.StatusCreated:
					created++
				case statuses[i] == http.StatusConflict && codes[i] == "booking_overlap":
					overlap++
				default:
					t.Errorf("%s: request %d got %d %s %v", name, i, statuses[i], codes[i], errs[i])
				}
			}
			if created != 1 || overlap != n-1 {
				t.Fatalf("%s: %d created, %d overlaps; want 1 and %d", name, created, overlap, n-1)
			}
			if rows := a.count(`SELECT count(*) FROM bookings WHERE listing_id = ?`, l.ID); rows != 1 {
				t.Fatalf("%s: %d rows, want 1", name, rows)
			}
			// Only the winner's expiry was written to the outbox.
			if rows := a.count(`SELECT count(*) FROM outbox o JOIN bookings b ON o.id = 'booking:expire:' || b.id
				WHERE b.listing_id = ?`, l.ID); rows != 1 {
				t.Fatalf("%s: %d outbox rows, want 1", name, rows)
			}
		}
		run("identical", func(int) (booking.Date, booking.Date) { return day(10), day(15) })
		// Every range holds the night of day 29: pairwise overlapping, never equal.
		run("overlapping", func(i int) (booking.Date, booking.Date) { return day(20 + i%10), day(30 + i%7) })
		if n := a.count(`SELECT count(*) FROM outbox WHERE task_type = 'booking:expire'`); n != 2 {
			t.Fatalf("outbox holds %d expiries, want 2", n)
		}
		// And the two winners' booking.created notify tasks, nothing of the
		// refused requests.
		if n := a.count(`SELECT count(*) FROM outbox WHERE task_type = 'notify:event'`); n != 2 {
			t.Fatalf("outbox holds %d notify rows, want 2", n)
		}
		if n := a.count(`SELECT count(*) FROM domain_events`); n != 2 {
			t.Fatalf("%d domain events, want 2", n)
		}
	})
}

// TestIdempotentBooking: requests of one renter with one Idempotency-Key
// make one booking, and every one of them, concurrent or later, is
// answered with it; the key with other dates is refused; another renter's
// same key is another booking; a malformed key is a field error.
func TestIdempotentBooking(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		owner, renter, other := a.signup("owner"), a.signup("renter"), a.signup("renter")
		l := a.listing(owner, 1000)
		post := func(acc account, key string, start, end booking.Date) (response, error) {
			return a.tryWith("POST", "/api/v1/bookings", acc.Token,
				http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}}, bookingBody(l.ID, start, end))
		}
		created := func(r response, err error) api.BookingView {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			expect(t, r, http.StatusCreated)
			var b api.BookingView
			r.decode(t, &b)
			if r.Header.Get("Location") != "/api/v1/bookings/"+b.ID {
				t.Fatalf("Location %q for booking %s", r.Header.Get("Location"), b.ID)
			}
			return b
		}
		rows := func(id string) (bookings, history, events int) {
			return a.count(`SELECT count(*) FROM bookings WHERE id = ?`, id),
				a.count(`SELECT count(*) FROM booking_history WHERE booking_id = ?`, id),
				a.count(`SELECT count(*) FROM domain_events WHERE subject_id = ?`, id)
		}

		r, err := post(renter, "order-1", day(1), day(3))
		first := created(r, err)
		if first.ID != store.KeyedBookingID(renter.ID, "order-1") || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first answer: booking %s, Idempotent-Replayed %q", first.ID, r.Header.Get("Idempotent-Replayed"))
		}
		r, err = post(renter, "order-1", day(1), day(3))
		again := created(r, err)
		if again.ID != first.ID || r.Header.Get("Idempotent-Replayed") != "true" || len(again.History) != 1 {
			t.Fatalf("retry: %+v, Idempotent-Replayed %q", again, r.Header.Get("Idempotent-Replayed"))
		}
		if b, h, e := rows(first.ID); b != 1 || h != 1 || e != 1 {
			t.Fatalf("after the retry: %d bookings, %d history rows, %d events; want 1 each", b, h, e)
		}

		// The key names that request: other dates with it are refused, and
		// write nothing.
		r, err = post(renter, "order-1", day(5), day(7))
		if err != nil {
			t.Fatal(err)
		}
		expect(t, r, http.StatusUnprocessableEntity)
		if n := a.count(`SELECT count(*) FROM bookings WHERE listing_id = ?`, l.ID); n != 1 {
			t.Fatalf("%d bookings of the listing, want 1", n)
		}
		// Another renter's key of the same text is theirs.
		r, err = post(other, "order-1", day(5), day(7))
		if b := created(r, err); b.ID == first.ID || b.RenterID != other.ID {
			t.Fatalf("other renter's booking = %+v", b)
		}
		// Cancelled since, the booking is still the key's answer: no new one.
		expect(t, a.do("POST", "/api/v1/bookings/"+first.ID+"/cancel", renter.Token, nil), http.StatusOK)
		r, err = post(renter, "order-1", day(1), day(3))
		if b := created(r, err); b.ID != first.ID || b.Status != booking.Cancelled {
			t.Fatalf("retry after cancel = %+v", b)
		}

		// Concurrent requests with one key: one booking, every answer it.
		const n = 20
		ids := make([]string, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := post(renter, "order-2", day(10), day(12))
				var b api.BookingView
				switch {
				case err != nil:
					t.Error(err)
				case r.Status != http.StatusCreated:
					t.Errorf("request %d: %d %s", i, r.Status, r.Body)
				case json.Unmarshal(r.Body, &b) != nil:
					t.Errorf("request %d: body %s", i, r.Body)
				}
				ids[i] = b.ID
			}()
		}
		close(start)
		wg.Wait()
		want := store.KeyedBookingID(renter.ID, "order-2")
		for i, id := range ids {
			if id != want {
				t.Fatalf("request %d answered booking %q, want %s", i, id, want)
			}
		}
		if b, h, e := rows(want); b != 1 || h != 1 || e != 1 {
			t.Fatalf("concurrent: %d bookings, %d history rows, %d events; want 1 each", b, h, e)
		}

		// Malformed keys, an empty one, and two.
		for _, keys := range [][]string{{"has space"}, {strings.Repeat("k", 256)}, {""}, {"a", "b"}} {
			hdr := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": keys}
			r, err := a.tryWith("POST", "/api/v1/bookings", renter.Token, hdr, bookingBody(l.ID, day(20), day(21)))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, r, http.StatusBadRequest)
			if e := r.errorBody(t); e.Code != "validation_failed" || len(e.Details) != 1 || e.Details[0].Field != "Idempotency-Key" {
				t.Fatalf("keys %.30q: %+v", keys, e)
			}
		}
	})
}

func TestCancelBookingAPI(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		ctx := context.Background()
		owner, renter := a.signup("owner"), a.signup("renter")
		l := a.listing(owner, 1000)

		// Unpaid, cancelled by the owner: no refund.
		b := a.book(renter, l.ID, day(1), day(2))
		r := a.do("POST", "/api/v1/bookings/"+b.ID+"/cancel", owner.Token, nil)
		expect(t, r, http.StatusOK)
		var got api.BookingView
		r.decode(t, &got)
		if got.Status != booking.Cancelled || len(got.History) != 2 || *got.History[1].From != "pending_payment" ||
			got.History[1].Cause != "cancel" || got.History[1].Source != "api" {
			t.Fatalf("cancelled = %+v", got)
		}
		if a.task("critical", "booking:refund:"+b.ID) != nil {
			t.Fatal("an unpaid cancellation enqueued a refund")
		}
		// Again: 409 with a clear message.
		r = a.do("POST", "/api/v1/bookings/"+b.ID+"/cancel", renter.Token, nil)
		expect(t, r, http.StatusConflict)
		if e := r.errorBody(t); e.Code != "conflict" || e.Message != "a cancelled booking cannot be cancelled" {
			t.Fatalf("second cancel = %+v", e)
		}

		// Paid, cancelled by the renter: a refund task, through the outbox.
		paid := a.book(renter, l.ID, day(3), day(4))
		if _, err := store.ApplyBookingEvent(ctx, db, paid.ID, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe, Ref: "evt_1"}); err != nil {
			t.Fatal(err)
		}
		r = a.do("POST", "/api/v1/bookings/"+paid.ID+"/cancel", renter.Token, nil)
		expect(t, r, http.StatusOK)
		r.decode(t, &got)
		if got.Status != booking.Cancelled {
			t.Fatalf("paid cancel = %+v", got)
		}
		if ti := a.task("critical", "booking:refund:"+paid.ID); ti == nil || ti.Type != "booking:refund" {
			t.Fatalf("refund task = %+v", ti)
		}
		if n := a.count(`SELECT count(*) FROM bookings WHERE id = ? AND refund_requested_at IS NOT NULL`, paid.ID); n != 1 {
			t.Fatal("refund_requested_at not set")
		}

		// Active: no cancelling.
		act := a.book(renter, l.ID, day(5), day(6))
		for _, ev := range []booking.Event{booking.PaymentSucceeded, booking.Start} {
			if _, err := store.ApplyBookingEvent(ctx, db, act.ID, ev, store.Source{Kind: store.SourceCron}); err != nil {
				t.Fatal(err)
			}
		}
		expect(t, a.do("POST", "/api/v1/bookings/"+act.ID+"/cancel", owner.Token, nil), http.StatusConflict)
	})
}

func TestListBookingsAPI(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testkit.Postgres(t))
	owner, renter, other := a.signup("owner"), a.signup("renter"), a.signup("renter")
	l := a.listing(owner, 1000)
	var mine []string
	for i := 0; i < 3; i++ {
		mine = append(mine, a.book(renter, l.ID, day(2*i+1), day(2*i+2)).ID)
	}
	a.book(other, l.ID, day(20), day(21))

	list := func(token, query string) api.ListResponse[api.BookingView] {
		t.Helper()
		r := a.do("GET", "/api/v1/bookings"+query, token, nil)
		expect(t, r, http.StatusOK)
		var out api.ListResponse[api.BookingView]
		r.decode(t, &out)
		return out
	}
	page := list(renter.Token, "?limit=2")
	if len(page.Data) != 2 || !page.Pagination.HasMore || page.Data[0].ID != mine[2] || len(page.Data[0].History) != 1 {
		t.Fatalf("renter page 1 = %+v", page)
	}
	page = list(renter.Token, "?limit=2&cursor="+*page.Pagination.NextCursor)
	if len(page.Data) != 1 || page.Pagination.HasMore || page.Data[0].ID != mine[0] {
		t.Fatalf("renter page 2 = %+v", page)
	}
	if got := list(owner.Token, "?as=owner"); len(got.Data) != 4 {
		t.Fatalf("owner sees %d bookings, want 4", len(got.Data))
	}
	if got := list(owner.Token, ""); len(got.Data) != 0 || got.Data == nil {
		t.Fatalf("owner as renter = %+v, want an empty list", got)
	}
	if got := list(owner.Token, "?as=owner&status=cancelled"); len(got.Data) != 0 {
		t.Fatalf("status filter: %d", len(got.Data))
	}
	for _, bad := range []string{"?as=admin", "?status=lost", "?limit=1000"} {
		if r := a.do("GET", "/api/v1/bookings"+bad, renter.Token, nil); r.Status != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, r.Status)
		}
	}
}
