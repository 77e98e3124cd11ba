package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/mail"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// deliverInApp runs the worker's notify:event handler on every notify
// outbox row, as a worker would once the relay enqueued them; its emails go
// nowhere.
func (a *testAPI) deliverInApp() {
	a.t.Helper()
	ctx := context.Background()
	msgs, err := store.UnsentOutbox(ctx, a.db, time.Now().Add(time.Second), 1000)
	if err != nil {
		a.t.Fatal(err)
	}
	w := worker.New(worker.Config{}, worker.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: a.db, Mailer: discardMailer{}})
	for _, m := range msgs {
		if m.Type != tasks.TypeNotifyEvent {
			continue
		}
		if err := w.Mux().ProcessTask(ctx, asynq.NewTask(m.Type, m.Payload)); err != nil {
			a.t.Fatalf("%s: %v", m.ID, err)
		}
	}
}

type discardMailer struct{}

func (discardMailer) Send(context.Context, mail.Message) error { return nil }

// TestNotificationsAPI: each user lists only their own notifications,
// newest first, paged, with the unread count; marking one read is
// idempotent; someone else's notification is 404, whoever asks.
func TestNotificationsAPI(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		owner, renter, stranger, admin := a.signup("owner"), a.signup("renter"), a.signup("renter"), a.signup("admin")
		l1, l2 := a.listing(owner, 2000), a.listing(owner, 3000)
		b1 := a.book(renter, l1.ID, day(3), day(5))
		time.Sleep(2 * time.Millisecond)
		b2 := a.book(renter, l2.ID, day(3), day(4))
		a.deliverInApp()
		a.deliverInApp() // a second run adds nothing

		list := func(who account, query string) api.NotificationList {
			t.Helper()
			r := a.do("GET", "/api/v1/notifications"+query, who.Token, nil)
			expect(t, r, http.StatusOK)
			var l api.NotificationList
			r.decode(t, &l)
			return l
		}
		rl := list(renter, "")
		if len(rl.Data) != 2 || rl.UnreadCount != 2 || rl.Pagination.HasMore || rl.Pagination.NextCursor != nil || rl.Pagination.Limit != 20 {
			t.Fatalf("renter's list = %+v", rl)
		}
		n := rl.Data[0]
		if n.SubjectID != b2.ID || n.SubjectType != "booking" || n.Type != "booking.created" || n.Read || n.ReadAt != nil ||
			n.Title == "" || n.Body == "" || rl.Data[1].SubjectID != b1.ID {
			t.Fatalf("renter's newest = %+v (then %+v)", n, rl.Data[1])
		}
		if ol := list(owner, ""); len(ol.Data) != 2 || ol.UnreadCount != 2 || ol.Data[0].Title == n.Title {
			t.Fatalf("owner's list = %+v", ol)
		}
		for _, who := range []account{stranger, admin} {
			if l := list(who, ""); len(l.Data) != 0 || l.UnreadCount != 0 {
				t.Fatalf("%s sees %+v", who.Role, l)
			}
		}
		// The raw body has the agreed names.
		raw := a.do("GET", "/api/v1/notifications?limit=1", renter.Token, nil)
		var m map[string]any
		raw.decode(t, &m)
		for _, k := range []string{"data", "pagination", "unread_count"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("list body lacks %q: %s", k, raw.Body)
			}
		}
		// Pages.
		p1 := list(renter, "?limit=1")
		if len(p1.Data) != 1 || !p1.Pagination.HasMore || p1.Pagination.NextCursor == nil || p1.UnreadCount != 2 {
			t.Fatalf("page 1 = %+v", p1)
		}
		p2 := list(renter, "?limit=1&cursor="+*p1.Pagination.NextCursor)
		if len(p2.Data) != 1 || p2.Pagination.HasMore || p2.Data[0].ID != rl.Data[1].ID {
			t.Fatalf("page 2 = %+v", p2)
		}

		// Another user's notification: 404 for the owner, a stranger, an admin.
		for _, who := range []account{owner, stranger, admin} {
			r := a.do("POST", "/api/v1/notifications/"+n.ID+"/read", who.Token, nil)
			expect(t, r, http.StatusNotFound)
			if e := r.errorBody(t); e.Code != "not_found" {
				t.Fatalf("%s reading another's: %+v", who.Role, e)
			}
		}
		if l := list(renter, ""); l.UnreadCount != 2 {
			t.Fatalf("someone else's read marked it: %+v", l)
		}
		// Read, twice: the same read_at.
		var first, again api.NotificationView
		r := a.do("POST", "/api/v1/notifications/"+n.ID+"/read", renter.Token, nil)
		expect(t, r, http.StatusOK)
		r.decode(t, &first)
		time.Sleep(2 * time.Millisecond)
		r = a.do("POST", "/api/v1/notifications/"+n.ID+"/read", renter.Token, nil)
		expect(t, r, http.StatusOK)
		r.decode(t, &again)
		if !first.Read || first.ReadAt == nil || again.ReadAt == nil || !again.ReadAt.Equal(*first.ReadAt) {
			t.Fatalf("read %+v then %+v", first, again)
		}
		if l := list(renter, ""); l.UnreadCount != 1 || !l.Data[0].Read {
			t.Fatalf("after reading: %+v", l)
		}
		if l := list(renter, "?unread=true"); len(l.Data) != 1 || l.Data[0].ID != rl.Data[1].ID {
			t.Fatalf("unread only = %+v", l)
		}

		// Errors in the one shape.
		expect(t, a.do("GET", "/api/v1/notifications", "", nil), http.StatusUnauthorized)
		expect(t, a.do("POST", "/api/v1/notifications/"+n.ID+"/read", "", nil), http.StatusUnauthorized)
		expect(t, a.do("POST", "/api/v1/notifications/nope/read", renter.Token, nil), http.StatusNotFound)
		for _, q := range []string{"?limit=0", "?limit=101", "?cursor=notacursor", "?unread=maybe"} {
			r := a.do("GET", "/api/v1/notifications"+q, renter.Token, nil)
			expect(t, r, http.StatusBadRequest)
			if e := r.errorBody(t); e.Code != "invalid" {
				t.Fatalf("%s: %+v", q, e)
			}
		}
	})
}
