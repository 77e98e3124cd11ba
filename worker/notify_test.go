package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/internal/smtptest"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/mail"
	"github.com/rentalportal/portal/notify"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// mailFixture is the worker fixture with a real SMTP server behind the
// worker's mailer, a short notify backoff, and two operator addresses.
type mailFixture struct {
	*fixture
	smtp        *smtptest.Server
	renterEmail string
	ownerEmail  string
	operators   []string
}

func newMailFixture(t *testing.T, db *store.DB) *mailFixture {
	t.Helper()
	f := &mailFixture{fixture: newFixture(t, db), smtp: smtptest.Start(t),
		operators: []string{"ops1@portal.example", "ops2@portal.example"}}
	ctx := context.Background()
	for id, dst := range map[string]*string{f.renter: &f.renterEmail, f.owner: &f.ownerEmail} {
		u, err := store.GetUser(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		*dst = u.Email
	}
	s, err := mail.ParseURL(f.smtp.URL())
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.NewSMTP(s, "Rental Portal <no-reply@portal.example>")
	if err != nil {
		t.Fatal(err)
	}
	r, err := notify.New("https://portal.example")
	if err != nil {
		t.Fatal(err)
	}
	f.worker = worker.New(worker.Config{Concurrency: 4, TaskCheckInterval: 10 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, OutboxGrace: time.Millisecond, OperatorEmails: f.operators,
		NotifyRetryBase: 50 * time.Millisecond, NotifyRetryMax: 200 * time.Millisecond},
		worker.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: db, Relay: f.relay, Mailer: m, Notify: r})
	return f
}

// book creates a 3-night booking (EUR 150.00) and publishes what the API
// would: its expiry and its booking.created notifications.
func (f *mailFixture) book(t *testing.T, startIn int) *store.Booking {
	t.Helper()
	b, _ := f.create(t, today().AddDays(startIn), today().AddDays(startIn+3), time.Hour)
	f.relay.Publish(context.Background(), b.Outbox...)
	return b
}

// apply applies a booking event as the Stripe handler does and publishes
// its messages after commit.
func (f *mailFixture) apply(t *testing.T, id string, ev booking.Event, ref string) *store.Booking {
	t.Helper()
	b, err := store.ApplyBookingEvent(context.Background(), f.db, id, ev, store.Source{Kind: store.SourceStripe, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	f.relay.Publish(context.Background(), b.Outbox...)
	return b
}

// withSubject returns the messages to addr whose subject starts with prefix.
func (f *mailFixture) withSubject(addr, prefix string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range f.smtp.To(addr) {
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func (f *mailFixture) delivery(t *testing.T, eventID, rcpt string) *store.Delivery {
	t.Helper()
	d, err := store.GetDelivery(context.Background(), f.db, store.DeliveryKey{EventID: eventID, RecipientID: rcpt, Channel: "email"})
	if err != nil {
		return nil
	}
	return d
}

func lastEvent(t *testing.T, db *store.DB, bookingID string) event.Event {
	t.Helper()
	evs, err := store.EventsOf(context.Background(), db, event.SubjectBooking, bookingID)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events of %s: %v %v", bookingID, evs, err)
	}
	return evs[len(evs)-1]
}

// TestConfirmedBookingEmailsRenterAndOwnerOnce is the first
// scenario through the real worker, Redis and an SMTP server: a confirmed
// booking sends the renter and the owner one email each, with the amount
// and the dates; a duplicate Stripe event, the same tasks run again and a
// second publish of them send nothing more; the in-app notifications are
// written once each.
func TestConfirmedBookingEmailsRenterAndOwnerOnce(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newMailFixture(t, db)
		ctx := context.Background()
		f.startWorker(t)
		b := f.book(t, 10)
		confirmed := f.apply(t, b.ID, booking.PaymentSucceeded, "evt_paid")
		ev := lastEvent(t, db, b.ID)
		if ev.Type != event.BookingConfirmed {
			t.Fatalf("last event %s", ev.Type)
		}
		f.smtp.Wait(3, 15*time.Second) // created → renter; confirmed → renter, owner

		start := b.StartDate.Time().Format("Mon 2 Jan 2006")
		end := b.EndDate.Time().Format("Mon 2 Jan 2006")
		for who, addr := range map[string]string{"renter": f.renterEmail, "owner": f.ownerEmail} {
			got := f.withSubject(addr, "Booking confirmed: ")
			if len(got) != 1 {
				t.Fatalf("%s got %d confirmation emails, want 1", who, len(got))
			}
			m := got[0]
			for _, want := range []string{"EUR 150.00", "Check-in: " + start, "Check-out: " + end,
				"3 nights (dates at the listing, UTC time)", "https://portal.example/api/v1/bookings/" + b.ID} {
				if !strings.Contains(m.Text, want) {
					t.Errorf("%s's text lacks %q:\n%s", who, want, m.Text)
				}
			}
			if !strings.Contains(m.HTML, "EUR 150.00") || !strings.Contains(m.Subject, start+" – "+end) {
				t.Errorf("%s: subject %q, html lacks the amount", who, m.Subject)
			}
			if !strings.HasPrefix(m.MessageID, "<notify.") || !strings.HasSuffix(m.MessageID, "@portal.example>") {
				t.Errorf("%s: Message-ID %q", who, m.MessageID)
			}
		}
		if n := len(f.withSubject(f.renterEmail, "Complete your payment: ")); n != 1 {
			t.Fatalf("renter got %d booking.created emails", n)
		}

		// A duplicate Stripe event: the transition is refused, no event.
		if _, err := store.ApplyBookingEvent(ctx, db, b.ID, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe, Ref: "evt_paid"}); err == nil {
			t.Fatal("the duplicate payment applied")
		}
		if e := lastEvent(t, db, b.ID); e.ID != ev.ID {
			t.Fatalf("the duplicate recorded event %s", e.Type)
		}
		// The same tasks again, run by hand and published again: nothing more.
		for _, m := range confirmed.Outbox {
			for i := 0; i < 2; i++ {
				if err := f.worker.Mux().ProcessTask(ctx, asynq.NewTask(m.Type, m.Payload)); err != nil {
					t.Fatalf("rerun %s: %v", m.ID, err)
				}
			}
		}
		f.relay.Publish(ctx, confirmed.Outbox...)
		time.Sleep(500 * time.Millisecond)
		if n := len(f.smtp.Messages()); n != 3 {
			t.Fatalf("%d emails after the duplicates, want 3", n)
		}
		for _, rcpt := range []string{f.renter, f.owner} {
			if d := f.delivery(t, ev.ID, rcpt); d == nil || d.Status != store.DeliverySent || d.Attempts != 1 {
				t.Fatalf("delivery to %s = %+v", rcpt, d)
			}
		}
		// In-app: created (renter, owner) and confirmed (renter, owner), once each.
		waitFor(t, 10*time.Second, func() bool {
			var n int
			_ = store.Get(ctx, db, &n, `SELECT count(*) FROM notifications`)
			return n == 4
		})
		rows, _, err := store.ListNotifications(ctx, db, store.NotificationFilter{UserID: f.owner}, store.Page{Limit: 10})
		if err != nil || len(rows) != 2 || rows[0].Type != "booking.confirmed" || !strings.Contains(rows[0].Body, "EUR 150.00") {
			t.Fatalf("owner's notifications = %+v, %v", rows, err)
		}
	})
}

// TestSMTPOutageDeliversOnceAfterRestart: the SMTP server is down when the
// emails are due (then also stopped in the middle of a message); the tasks
// retry with the notify backoff; once the server is back each recipient
// gets exactly one email.
func TestSMTPOutageDeliversOnceAfterRestart(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newMailFixture(t, db)
		b := f.book(t, 10)
		// booking.created's renter email has gone out before the outage.
		f.startWorker(t)
		f.smtp.Wait(1, 10*time.Second)

		f.smtp.Stop()
		f.apply(t, b.ID, booking.PaymentSucceeded, "evt_paid")
		ev := lastEvent(t, db, b.ID)
		// Both deliveries fail, and are retried, while the server is down.
		waitFor(t, 15*time.Second, func() bool {
			r, o := f.delivery(t, ev.ID, f.renter), f.delivery(t, ev.ID, f.owner)
			return r != nil && o != nil && r.Attempts >= 2 && o.Attempts >= 2
		})
		if d := f.delivery(t, ev.ID, f.renter); d.Status == store.DeliverySent || !strings.Contains(d.LastError, "smtp") {
			t.Fatalf("delivery during the outage = %+v", d)
		}
		// The event's in-app notifications did not wait for the mail
		// server: its task delivered them on its first attempt.
		var inApp int
		if err := store.Get(context.Background(), db, &inApp, `SELECT count(*) FROM notifications WHERE event_id = ?`, ev.ID); err != nil || inApp != 2 {
			t.Fatalf("%d in-app notifications of the confirmation during the outage (%v), want 2", inApp, err)
		}
		// Back up, but the connection of the first message is cut in the
		// middle of DATA, before the server has taken the message in. Only
		// that connection: stopping the whole server here would also cut a
		// concurrent delivery after the server accepted it and before its
		// reply — the window no SMTP client can close (see
		// TestServerThatDiesBeforeReplyingGetsACopyWithTheSameMessageID).
		f.smtp.OnData(func(n int) error {
			if n == 2 { // the first DATA after the restart (the created email was 1)
				return smtptest.ErrCutOff
			}
			return nil
		})
		f.smtp.Restart()
		<-f.smtp.DataSeen() // the created email's
		<-f.smtp.DataSeen() // the one cut off

		f.smtp.Wait(3, 20*time.Second)
		time.Sleep(1500 * time.Millisecond) // room for a wrong extra delivery
		for who, addr := range map[string]string{"renter": f.renterEmail, "owner": f.ownerEmail} {
			if n := len(f.withSubject(addr, "Booking confirmed: ")); n != 1 {
				t.Fatalf("%s got %d confirmation emails, want exactly 1", who, n)
			}
		}
		for _, rcpt := range []string{f.renter, f.owner} {
			if d := f.delivery(t, ev.ID, rcpt); d.Status != store.DeliverySent || d.Attempts < 2 {
				t.Fatalf("delivery to %s = %+v", rcpt, d)
			}
		}
	})
}

// TestEventWithAnUndeliverableChannel: a worker with no mailer delivers an
// event's in-app notifications and fails its task for good (archived, for
// an operator to see), naming the emails it could not send; a rerun adds
// no notification.
func TestEventWithAnUndeliverableChannel(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testkit.SQLite(t)) // no mailer
	b, _ := f.create(t, today().AddDays(3), today().AddDays(5), time.Hour)
	ev := lastEvent(t, f.db, b.ID)
	for i := 0; i < 2; i++ {
		err := f.run(t, tasks.NotifyEvent{EventID: ev.ID})
		if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "email to "+f.renter) {
			t.Fatalf("run %d: %v, want a permanent failure of the renter's email", i, err)
		}
		var n int
		if err := store.Get(context.Background(), f.db, &n, `SELECT count(*) FROM notifications WHERE event_id = ?`, ev.ID); err != nil || n != 2 {
			t.Fatalf("run %d: %d in-app notifications (%v), want 2 (renter, owner)", i, n, err)
		}
	}
}

// TestPermanentRejectionIsRecordedNotRetried: a 550 for the renter is
// recorded as rejected and the task completes; the owner still gets theirs.
func TestPermanentRejectionIsRecordedNotRetried(t *testing.T) {
	t.Parallel()
	f := newMailFixture(t, testkit.SQLite(t))
	f.smtp.RejectRecipient(f.renterEmail, 550)
	b := f.book(t, 10)
	f.startWorker(t)
	f.apply(t, b.ID, booking.PaymentSucceeded, "evt_paid")
	ev := lastEvent(t, f.db, b.ID)
	waitFor(t, 10*time.Second, func() bool {
		d := f.delivery(t, ev.ID, f.renter)
		return d != nil && d.Status == store.DeliveryRejected && len(f.smtp.To(f.ownerEmail)) == 1
	})
	d := f.delivery(t, ev.ID, f.renter)
	if d.Attempts != 1 || !strings.Contains(d.LastError, "550") || strings.Contains(d.LastError, f.renterEmail) {
		t.Fatalf("rejected delivery = %+v", d)
	}
	id := tasks.NotifyEvent{EventID: ev.ID}.TaskID()
	waitFor(t, 5*time.Second, func() bool {
		ti, err := f.inspector.GetTaskInfo("default", id)
		return err == nil && ti.State == asynq.TaskStateCompleted
	})
	// Running it again — or the one-delivery task of the older contract —
	// sends nothing and counts no attempt.
	for _, p := range []tasks.Payload{tasks.NotifyEvent{EventID: ev.ID},
		tasks.Notify{Channel: tasks.TypeNotifyEmail, EventID: ev.ID, RecipientID: f.renter}} {
		if err := f.run(t, p); err != nil {
			t.Fatal(err)
		}
	}
	if d := f.delivery(t, ev.ID, f.renter); d.Attempts != 1 || len(f.smtp.To(f.renterEmail)) != 0 || len(f.smtp.To(f.ownerEmail)) != 1 {
		t.Fatalf("after a rerun: %+v, %d emails to the renter, %d to the owner", d, len(f.smtp.To(f.renterEmail)), len(f.smtp.To(f.ownerEmail)))
	}
}

// TestOperatorsGetDisputesOnceEach: a dispute emails each operator address
// once (with its own delivery record), the owner too; an address deferred
// (4xx) is retried alone, without a second copy to the other.
func TestOperatorsGetDisputesOnceEach(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newMailFixture(t, db)
		b := f.book(t, 10)
		f.apply(t, b.ID, booking.PaymentSucceeded, "evt_paid")
		f.smtp.RejectRecipient(f.operators[1], 451)
		f.startWorker(t)
		f.apply(t, b.ID, booking.DisputeOpened, "evt_dispute")
		ev := lastEvent(t, db, b.ID)
		waitFor(t, 10*time.Second, func() bool {
			d := f.delivery(t, ev.ID, event.OperatorRecipient(f.operators[1]))
			return d != nil && d.Attempts >= 2
		})
		f.smtp.RejectRecipient(f.operators[1], 0)
		waitFor(t, 15*time.Second, func() bool {
			d := f.delivery(t, ev.ID, event.OperatorRecipient(f.operators[1]))
			return d != nil && d.Status == store.DeliverySent
		})
		time.Sleep(500 * time.Millisecond)
		for _, addr := range f.operators {
			if got := f.smtp.To(addr); len(got) != 1 {
				t.Fatalf("%s got %d emails, want 1", addr, len(got))
			}
		}
		if n := len(f.withSubject(f.ownerEmail, "Payment disputed: ")); n != 1 {
			t.Fatalf("owner got %d dispute emails", n)
		}
		ops := f.withSubject(f.operators[0], "[Action needed] Payment disputed: booking "+b.ID)
		if len(ops) != 1 || !strings.Contains(ops[0].Text, "Owner: "+f.owner) {
			t.Fatalf("operator email = %+v", ops)
		}
		if d := f.delivery(t, ev.ID, event.OperatorRecipient(f.operators[0])); d.Attempts != 1 {
			t.Fatalf("the first operator's delivery was attempted %d times", d.Attempts)
		}
		// The renter is not told of the dispute.
		if n := len(f.withSubject(f.renterEmail, "Payment disputed")); n != 0 {
			t.Fatalf("renter got %d dispute emails", n)
		}
	})
}

// TestServerThatDiesBeforeReplyingGetsACopyWithTheSameMessageID documents
// the window SMTP leaves open: a server that took the message in but died
// before its reply makes the client try again, so the recipient gets two
// copies — with the same Message-ID, for receivers that de-duplicate.
func TestServerThatDiesBeforeReplyingGetsACopyWithTheSameMessageID(t *testing.T) {
	t.Parallel()
	f := newMailFixture(t, testkit.SQLite(t))
	f.smtp.OnData(func(n int) error {
		if n == 1 {
			go f.smtp.Stop() // the message is recorded, the reply never comes
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	})
	f.book(t, 10)
	f.startWorker(t)
	<-f.smtp.DataSeen()
	time.Sleep(300 * time.Millisecond)
	f.smtp.Restart()
	got := f.smtp.Wait(2, 15*time.Second)
	if len(got) != 2 || got[0].MessageID != got[1].MessageID || got[0].Subject != got[1].Subject {
		t.Fatalf("copies: %d, Message-IDs %q %q", len(got), got[0].MessageID, got[1].MessageID)
	}
}
