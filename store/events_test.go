package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// outboxIDs returns the IDs of the outbox rows of an event, sorted.
func outboxIDs(t *testing.T, db *store.DB, eventID string) []string {
	t.Helper()
	var ids []string
	if err := store.Select(context.Background(), db, &ids, `SELECT id FROM outbox WHERE id LIKE ? ORDER BY id`, "%:"+eventID+"%"); err != nil {
		t.Fatal(err)
	}
	return ids
}

func msgIDs(msgs []tasks.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	sort.Strings(ids)
	return ids
}

// TestBookingTransitionsRecordTheirEvents: every transition that concerns
// people records one domain event, with the data its messages need, the
// addressees its audience names and its one notify:event outbox row, in
// the transition's transaction;
// start and end record none; a refused transition records nothing.
func TestBookingTransitionsRecordTheirEvents(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Kayak", 2500)
		if _, err := store.Exec(ctx, db, `UPDATE listings SET timezone = 'Europe/Lisbon' WHERE id = ?`, l.ID); err != nil {
			t.Fatal(err)
		}
		id := store.NewID()
		created, _, err := store.CreateBooking(ctx, db, newBooking(id, l.ID, renter.ID, day(t, 2), day(t, 5)))
		if err != nil {
			t.Fatal(err)
		}
		// booking.created: the caller's expiry and the event's notify task.
		evs, err := store.EventsOf(ctx, db, event.SubjectBooking, id)
		if err != nil || len(evs) != 1 || evs[0].Type != event.BookingCreated {
			t.Fatalf("events after create = %+v, %v", evs, err)
		}
		ev := evs[0]
		if ev.Data.ListingTitle != "Kayak" || ev.Data.TimeZone != "Europe/Lisbon" || ev.Data.Amount != 7500 ||
			ev.Data.Currency != "EUR" || ev.Data.StartDate != day(t, 2).String() || ev.Data.PayBy == nil ||
			!ev.Data.PayBy.Equal(created.ExpiresAt) || ev.Data.RenterID != renter.ID || ev.Data.OwnerID != owner.ID {
			t.Fatalf("booking.created data = %+v", ev.Data)
		}
		want := []string{"notify:event:" + ev.ID}
		addressee := func(r event.Role, c event.Channel, id string) event.Addressee {
			return event.Addressee{Delivery: event.Delivery{Role: r, Channel: c}, RecipientID: id}
		}
		if got, want := ev.Addressees(), []event.Addressee{addressee(event.Renter, event.Email, renter.ID),
			addressee(event.Renter, event.InApp, renter.ID), addressee(event.Owner, event.InApp, owner.ID)}; !slices.Equal(got, want) {
			t.Fatalf("booking.created addressees = %+v, want %+v", got, want)
		}
		if got := outboxIDs(t, db, ev.ID); !slices.Equal(got, want) {
			t.Fatalf("outbox of booking.created = %v, want %v", got, want)
		}
		if got := msgIDs(created.Outbox); !slices.Equal(got, append([]string{"booking:expire:" + id}, want...)) {
			t.Fatalf("CreateBooking returned messages %v", got)
		}

		src := store.Source{Kind: store.SourceStripe, Ref: "evt_1"}
		steps := []struct {
			ev      booking.Event
			typ     event.Type // "" → no event
			outcome string
			rcpts   int // addressees of the event
		}{
			{booking.PaymentSucceeded, event.BookingConfirmed, "", 4},
			{booking.Start, "", "", 0},
			{booking.DisputeOpened, event.BookingDisputed, "", 3}, // owner email+inapp, operators email
			{booking.DisputeWon, event.BookingDisputeClosed, event.DisputeWon, 3},
			{booking.End, "", "", 0},
			{booking.DisputeOpened, event.BookingDisputed, "", 3},
			{booking.DisputeLost, event.BookingDisputeClosed, event.DisputeLost, 3},
		}
		for i, s := range steps {
			b, err := store.ApplyBookingEvent(ctx, db, id, s.ev, src)
			if err != nil {
				t.Fatalf("step %d %s: %v", i, s.ev, err)
			}
			evs, _ := store.EventsOf(ctx, db, event.SubjectBooking, id)
			last := evs[len(evs)-1]
			if s.typ == "" {
				if len(b.Outbox) != 0 || last.Type == "" {
					t.Fatalf("step %d %s recorded %v", i, s.ev, b.Outbox)
				}
				continue
			}
			if last.Type != s.typ || last.Data.Outcome != s.outcome || last.Data.FromStatus == "" {
				t.Fatalf("step %d %s: last event %+v", i, s.ev, last)
			}
			if got := outboxIDs(t, db, last.ID); !slices.Equal(got, []string{"notify:event:" + last.ID}) || !slices.Equal(got, msgIDs(b.Outbox)) {
				t.Fatalf("step %d %s: outbox %v, returned %v", i, s.ev, got, msgIDs(b.Outbox))
			}
			if n := len(last.Addressees()); n != s.rcpts {
				t.Fatalf("step %d %s: %d addressees, want %d", i, s.ev, n, s.rcpts)
			}
		}
		evs, _ = store.EventsOf(ctx, db, event.SubjectBooking, id)
		if len(evs) != 6 {
			t.Fatalf("%d events, want 6", len(evs))
		}
		// The operators are one addressee, whatever their number of
		// addresses: the worker emails each.
		if a := evs[2].Addressees(); a[len(a)-1] != addressee(event.Operators, event.Email, event.OperatorsRecipient) {
			t.Fatalf("booking.disputed addressees = %+v", a)
		}

		// A refused transition (a refunded booking cannot be paid) records nothing.
		if _, err := store.ApplyBookingEvent(ctx, db, id, booking.PaymentSucceeded, src); portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("pay a refunded booking: %v", err)
		}
		if evs2, _ := store.EventsOf(ctx, db, event.SubjectBooking, id); len(evs2) != 6 {
			t.Fatalf("a refused transition recorded an event")
		}
	})
}

// TestEventRollsBackWithItsChange: the event and its outbox rows live and
// die with the transaction of the change.
func TestEventRollsBackWithItsChange(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Tent", 1000)
		id := createBooking(t, db, l.ID, renter.ID, 1, 2)
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *sqlx.Tx) error {
			if _, err := store.ApplyBookingEvent(ctx, tx, id, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM domain_events WHERE type = 'booking.confirmed'`); n != 0 {
			t.Fatalf("%d confirmed events after a rollback", n)
		}
		if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE task_type LIKE 'notify:%'`); n != 1 {
			t.Fatalf("%d notify rows, want the one of booking.created", n)
		}
	})
}

// TestRecordEventWithAKeyIsOnce: an event recorded twice under the same
// key (a Stripe event processed twice) is one event and one set of outbox
// rows; the other helpers record what their templates need.
func TestRecordEventWithAKeyIsOnce(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner := newUser(t, db, "owner")
		arrival := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
		p := store.PayoutFacts{ID: "po_1", OwnerID: owner.ID, StripeAccountID: "acct_1", Amount: 1234, Currency: "eur",
			FailureCode: "account_closed", ArrivalDate: &arrival}
		first, err := store.RecordPayoutFailed(ctx, db, "stripe:evt_9", p)
		if err != nil {
			t.Fatal(err)
		}
		second, err := store.RecordPayoutFailed(ctx, db, "stripe:evt_9", p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(msgIDs(first), msgIDs(second)) || len(first) != 1 {
			t.Fatalf("messages %v then %v", msgIDs(first), msgIDs(second))
		}
		if n := countRows(t, db, `SELECT count(*) FROM domain_events WHERE type = 'payout.failed'`); n != 1 {
			t.Fatalf("%d payout.failed events, want 1", n)
		}
		if n := countRows(t, db, `SELECT count(*) FROM outbox WHERE task_type LIKE 'notify:%'`); n != 1 {
			t.Fatalf("%d notify rows, want 1", n)
		}
		evs, _ := store.EventsOf(ctx, db, event.SubjectPayout, "po_1")
		if len(evs) != 1 || evs[0].Data.Currency != "EUR" || evs[0].Data.Reason != "account_closed" || !evs[0].Data.ArrivalDate.Equal(arrival) {
			t.Fatalf("payout event = %+v", evs)
		}
		if n := len(evs[0].Addressees()); n != 3 { // owner email and in-app, operators
			t.Fatalf("payout.failed has %d addressees, want 3", n)
		}

		msgs, err := store.RecordAccountRestricted(ctx, db, "stripe:evt_10", owner.ID, "acct_1", true, false)
		if err != nil || len(msgs) != 1 || msgs[0].Type != tasks.TypeNotifyEvent {
			t.Fatalf("account restricted: %v, %v", msgIDs(msgs), err)
		}
		up := insertUpload(t, db, owner.ID, "image", "processing")
		msgs, err = store.RecordUploadEvent(ctx, db, event.UploadReady, store.UploadFacts{ID: up, OwnerID: owner.ID, Kind: "image"})
		if err != nil || len(msgs) != 1 || msgs[0].Type != tasks.TypeNotifyEvent {
			t.Fatalf("upload ready: %v, %v", msgIDs(msgs), err)
		}
		if _, err := store.RecordUploadEvent(ctx, db, event.BookingCreated, store.UploadFacts{ID: up}); err == nil {
			t.Fatal("an upload event of a booking type was recorded")
		}
		if _, err := store.RecordEvent(ctx, db, event.Event{Type: "nonsense"}); err == nil {
			t.Fatal("an unknown event type was recorded")
		}
		var payload tasks.NotifyEvent
		if err := json.Unmarshal(msgs[0].Payload, &payload); err != nil || payload.EventID == "" {
			t.Fatalf("payload %s: %v", msgs[0].Payload, err)
		}
		ready, err := store.GetEvent(ctx, db, payload.EventID)
		if err != nil || !slices.Equal(ready.Addressees(), []event.Addressee{{Delivery: event.Delivery{Role: event.Owner, Channel: event.InApp}, RecipientID: owner.ID}}) {
			t.Fatalf("upload.ready %+v: %v", ready, err)
		}
	})
}

// TestPaymentFailedEvent: the renter hears of it, with the deadline while
// the booking can still be paid.
func TestPaymentFailedEvent(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Canoe", 3000)
		id := store.NewID()
		b, _, err := store.CreateBooking(ctx, db, newBooking(id, l.ID, renter.ID, day(t, 1), day(t, 3)))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := store.RecordPaymentFailed(ctx, db, b, "stripe:evt_pf", "card_declined")
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%v, %v", msgIDs(msgs), err)
		}
		ev, err := store.GetEvent(ctx, db, strings.TrimPrefix(msgs[0].ID, "notify:event:"))
		if err != nil || ev.Type != event.PaymentFailed || ev.Data.PayBy == nil || ev.Data.Reason != "card_declined" || ev.Data.Amount != 6000 {
			t.Fatalf("event %+v, %v", ev, err)
		}
	})
}

// TestDeliveryClaims: the delivery record is the idempotency record of an
// email: one attempt at a time, a failed one claimable again, a sent or
// rejected one never; a claim left by a dead worker is taken over after
// its lease.
func TestDeliveryClaims(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner := newUser(t, db, "owner")
		msgs, err := store.RecordAccountRestricted(ctx, db, "k1", owner.ID, "acct", false, false)
		if err != nil {
			t.Fatal(err)
		}
		var p tasks.NotifyEvent
		_ = json.Unmarshal(msgs[0].Payload, &p)
		k := store.DeliveryKey{EventID: p.EventID, RecipientID: owner.ID, Channel: "email"}
		claim := func(lease time.Duration) (bool, string) {
			t.Helper()
			ok, st, err := store.ClaimDelivery(ctx, db, k, lease)
			if err != nil {
				t.Fatal(err)
			}
			return ok, st
		}
		if ok, st := claim(time.Minute); !ok || st != store.DeliverySending {
			t.Fatalf("first claim: %v %s", ok, st)
		}
		if ok, st := claim(time.Minute); ok || st != store.DeliverySending {
			t.Fatalf("claim while sending: %v %s", ok, st)
		}
		if err := store.FinishDelivery(ctx, db, k, store.DeliveryFailed, "smtp: connection refused"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := claim(time.Minute); !ok {
			t.Fatal("a failed delivery could not be claimed again")
		}
		time.Sleep(5 * time.Millisecond)
		if ok, _ := claim(time.Millisecond); !ok {
			t.Fatal("a claim past its lease was not taken over")
		}
		if err := store.FinishDelivery(ctx, db, k, store.DeliverySent, ""); err != nil {
			t.Fatal(err)
		}
		for _, lease := range []time.Duration{time.Minute, 0} {
			if ok, st := claim(lease); ok || st != store.DeliverySent {
				t.Fatalf("claim of a sent delivery: %v %s", ok, st)
			}
		}
		d, err := store.GetDelivery(ctx, db, k)
		if err != nil || d.Attempts != 3 || d.Status != store.DeliverySent || d.LastError != "" {
			t.Fatalf("delivery = %+v, %v", d, err)
		}
	})
}

// TestNotifications: one per (event, user); a user's list is theirs only,
// newest first, paged, with the unread count; reading is idempotent and
// another user's notification is not found.
func TestNotifications(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newUser(t, db, "owner"), newUser(t, db, "owner")
		var ids []string
		for i := 0; i < 5; i++ {
			msgs, err := store.RecordAccountRestricted(ctx, db, "k"+string(rune('a'+i)), a.ID, "acct", false, false)
			if err != nil {
				t.Fatal(err)
			}
			var p tasks.NotifyEvent
			_ = json.Unmarshal(msgs[0].Payload, &p)
			n := &store.Notification{UserID: a.ID, EventID: p.EventID, Type: "account.restricted", Title: "T", Body: "B"}
			for j := 0; j < 2; j++ {
				created, err := store.AddNotification(ctx, db, n)
				if err != nil || created != (j == 0) {
					t.Fatalf("add %d/%d: created %v, %v", i, j, created, err)
				}
				n.ID = ""
			}
			var id string
			if err := store.Get(ctx, db, &id, `SELECT id FROM notifications WHERE event_id = ?`, p.EventID); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			time.Sleep(2 * time.Millisecond)
		}
		page1, next, err := store.ListNotifications(ctx, db, store.NotificationFilter{UserID: a.ID}, store.Page{Limit: 3})
		if err != nil || len(page1) != 3 || next == nil || page1[0].ID != ids[4] || page1[0].SubjectType != event.SubjectAccount {
			t.Fatalf("page 1 = %+v, %v, %v", page1, next, err)
		}
		page2, next, err := store.ListNotifications(ctx, db, store.NotificationFilter{UserID: a.ID}, store.Page{Limit: 3, After: next})
		if err != nil || len(page2) != 2 || next != nil || page2[1].ID != ids[0] {
			t.Fatalf("page 2 = %+v, %v, %v", page2, next, err)
		}
		if rows, _, _ := store.ListNotifications(ctx, db, store.NotificationFilter{UserID: b.ID}, store.Page{Limit: 10}); len(rows) != 0 {
			t.Fatalf("user b sees %d notifications", len(rows))
		}
		if _, err := store.MarkNotificationRead(ctx, db, b.ID, ids[0]); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("b reads a's notification: %v", err)
		}
		n1, err := store.MarkNotificationRead(ctx, db, a.ID, ids[0])
		if err != nil || n1.ReadAt == nil {
			t.Fatalf("read: %+v, %v", n1, err)
		}
		time.Sleep(2 * time.Millisecond)
		n2, err := store.MarkNotificationRead(ctx, db, a.ID, ids[0])
		if err != nil || !n2.ReadAt.Equal(*n1.ReadAt) {
			t.Fatalf("read again moved read_at: %v then %v, %v", n1.ReadAt, n2.ReadAt, err)
		}
		if n, err := store.UnreadNotifications(ctx, db, a.ID); err != nil || n != 4 {
			t.Fatalf("unread = %d, %v", n, err)
		}
		unread, _, _ := store.ListNotifications(ctx, db, store.NotificationFilter{UserID: a.ID, UnreadOnly: true}, store.Page{Limit: 10})
		if len(unread) != 4 || slices.ContainsFunc(unread, func(n store.Notification) bool { return n.ID == ids[0] }) {
			t.Fatalf("unread list = %d rows", len(unread))
		}
	})
}

// TestAddNotificationsInOneStatement: several at once, the ones already
// there left alone and not counted; UsersByIDs returns those that exist.
func TestAddNotificationsInOneStatement(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newUser(t, db, "owner"), newUser(t, db, "renter")
		msgs, err := store.RecordAccountRestricted(ctx, db, "k-many", a.ID, "acct", false, false)
		if err != nil {
			t.Fatal(err)
		}
		ev := strings.TrimPrefix(msgs[0].ID, "notify:event:")
		if _, err := store.AddNotification(ctx, db, &store.Notification{UserID: a.ID, EventID: ev, Type: "account.restricted", Title: "T", Body: "B"}); err != nil {
			t.Fatal(err)
		}
		added, err := store.AddNotifications(ctx, db, []*store.Notification{
			{UserID: a.ID, EventID: ev, Type: "account.restricted", Title: "T2", Body: "B2"},
			{UserID: b.ID, EventID: ev, Type: "account.restricted", Title: "T", Body: "B"}})
		if err != nil || added != 1 {
			t.Fatalf("added %d, %v; want 1", added, err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM notifications WHERE event_id = ? AND title = 'T'`, ev); n != 2 {
			t.Fatalf("%d notifications titled T, want 2 (the first one kept)", n)
		}
		users, err := store.UsersByIDs(ctx, db, []string{a.ID, b.ID, "gone"})
		if err != nil || len(users) != 2 || users[a.ID].Email != a.Email || users["gone"] != nil {
			t.Fatalf("users = %v, %v", users, err)
		}
	})
}
