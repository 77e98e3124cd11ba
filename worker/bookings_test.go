package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

type fixture struct {
	db        *store.DB
	redis     testkit.Redis
	relay     *relay.Relay
	worker    *worker.Worker
	inspector *asynq.Inspector
	owner     string
	renter    string
	listing   string
}

func newFixture(t *testing.T, db *store.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	r := testkit.RedisDB(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fixture{db: db, redis: r, inspector: asynq.NewInspectorFromRedisClient(r.Client)}
	f.relay = relay.New(db, asynq.NewClientFromRedisClient(r.Client), log)
	f.worker = worker.New(worker.Config{Concurrency: 4, TaskCheckInterval: 10 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, OutboxGrace: time.Millisecond}, worker.Deps{Log: log, DB: db, Relay: f.relay})
	owner := &store.User{Email: testkit.RandomName("o") + "@example.com", PasswordHash: "x", Name: "O", Role: "owner"}
	renter := &store.User{Email: testkit.RandomName("r") + "@example.com", PasswordHash: "x", Name: "R", Role: "renter"}
	for _, u := range []*store.User{owner, renter} {
		if err := store.CreateUser(ctx, db, u); err != nil {
			t.Fatal(err)
		}
	}
	l := &store.Listing{OwnerID: owner.ID, Title: "Boat", PricePerDay: 5000, Currency: "EUR", Active: true}
	if err := store.CreateListing(ctx, db, l); err != nil {
		t.Fatal(err)
	}
	f.owner, f.renter, f.listing = owner.ID, renter.ID, l.ID
	return f
}

func today() booking.Date { return booking.DateOf(time.Now(), time.UTC) }

// create commits a booking with its booking:expire outbox row as the API
// does, and returns the message it would publish.
func (f *fixture) create(t *testing.T, start, end booking.Date, ttl time.Duration) (*store.Booking, tasks.Message) {
	t.Helper()
	id := store.NewID()
	expiresAt := store.Now().Add(ttl)
	msg, err := tasks.EncodeAt(tasks.BookingExpire{BookingID: id}, expiresAt.Truncate(time.Second).Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := store.CreateBooking(context.Background(), f.db, store.NewBooking{ID: id, ListingID: f.listing, RenterID: f.renter,
		Start: start, End: end, ExpiresAt: expiresAt, Source: store.Source{Kind: store.SourceAPI},
		Outbox: []store.OutboxMessage{store.OutboxMessage(msg)}})
	if err != nil {
		t.Fatal(err)
	}
	return b, msg
}

func (f *fixture) status(t *testing.T, id string) booking.Status {
	t.Helper()
	b, err := store.GetBooking(context.Background(), f.db, id)
	if err != nil {
		t.Fatal(err)
	}
	return b.Status
}

// run processes one task through the worker's mux (middleware included).
func (f *fixture) run(t *testing.T, p tasks.Payload) error {
	t.Helper()
	m, err := tasks.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return f.worker.Mux().ProcessTask(context.Background(), asynq.NewTask(m.Type, m.Payload))
}

// startWorker runs the real asynq server until the test ends.
func (f *fixture) startWorker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.worker.Run(ctx, f.redis.Client) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, within time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("condition not met within %s", within)
}

// TestExpiryByTheWorker: an unpaid booking with a short TTL is expired by its
// scheduled task in the real worker; one paid before its TTL is left alone
// by the same, now stale, task, which completes without error.
func TestExpiryByTheWorker(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		unpaid, m1 := f.create(t, today().AddDays(1), today().AddDays(2), time.Second)
		paid, m2 := f.create(t, today().AddDays(3), today().AddDays(4), time.Second)
		f.relay.Publish(ctx, m1, m2)
		if _, err := store.ApplyBookingEvent(ctx, db, paid.ID, booking.PaymentSucceeded, store.Source{Kind: store.SourceStripe, Ref: "evt_1"}); err != nil {
			t.Fatal(err)
		}
		f.startWorker(t)

		waitFor(t, 10*time.Second, func() bool {
			ti, err := f.inspector.GetTaskInfo("default", m2.ID)
			return f.status(t, unpaid.ID) == booking.Expired && err == nil && ti.State == asynq.TaskStateCompleted
		})
		if s := f.status(t, paid.ID); s != booking.Confirmed {
			t.Fatalf("the stale expiry moved a paid booking to %s", s)
		}
		h, _ := store.BookingHistory(ctx, db, unpaid.ID)
		last := h[len(h)-1]
		if last.ToStatus != "expired" || last.Source != store.SourceTask || last.SourceRef != m1.ID || last.Cause != "expire" {
			t.Fatalf("expiry history = %+v", last)
		}
		// The expired booking freed its dates.
		if _, _, err := store.CreateBooking(ctx, db, store.NewBooking{ID: store.NewID(), ListingID: f.listing, RenterID: f.renter,
			Start: today().AddDays(1), End: today().AddDays(2), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("rebook freed dates: %v", err)
		}
	})
}

func TestExpireTaskRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testkit.SQLite(t))
	b, _ := f.create(t, today().AddDays(1), today().AddDays(2), time.Hour)
	// Early (clock skew): a retryable error, and the booking stays.
	err := f.run(t, tasks.BookingExpire{BookingID: b.ID})
	if err == nil || f.status(t, b.ID) != booking.PendingPayment {
		t.Fatalf("early expiry: %v, status %s", err, f.status(t, b.ID))
	}
	// A booking that does not exist never will: archived at once.
	if err := f.run(t, tasks.BookingExpire{BookingID: "missing"}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("missing booking: %v, want SkipRetry", err)
	}
}

func TestBookingsTick(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		d := today()
		now := store.Now()
		ins := func(status string, start, end booking.Date) string {
			t.Helper()
			id := store.NewID()
			_, err := store.Exec(ctx, db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
				total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 100, 'EUR', ?, ?, ?)`,
				id, f.listing, f.renter, f.owner, start, end, status, now, now, now)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		startsToday := ins("confirmed", d, d.AddDays(3))
		future := ins("confirmed", d.AddDays(10), d.AddDays(12))
		endsToday := ins("active", d.AddDays(-3), d)
		running := ins("active", d.AddDays(3), d.AddDays(5)) // (dates only matter for the tick)
		wholeStayPassed := ins("confirmed", d.AddDays(-9), d.AddDays(-7))
		unpaid := ins("pending_payment", d.AddDays(-6), d.AddDays(-5))
		// More than one batch of bookings whose stays passed long ago.
		var old []string
		for i := 0; i < 510; i++ {
			old = append(old, ins("confirmed", d.AddDays(-2000+2*i), d.AddDays(-1999+2*i)))
		}

		if err := f.run(t, tasks.Tick{Type: tasks.TypeBookingsTick, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		want := map[string]booking.Status{startsToday: booking.Active, future: booking.Confirmed, endsToday: booking.Completed,
			running: booking.Active, wholeStayPassed: booking.Completed, unpaid: booking.PendingPayment,
			old[0]: booking.Completed, old[509]: booking.Completed}
		for id, s := range want {
			if got := f.status(t, id); got != s {
				t.Errorf("booking %s: %s, want %s", id, got, s)
			}
		}
		var n int
		if err := store.Get(ctx, db, &n, `SELECT count(*) FROM bookings WHERE status = 'completed'`); err != nil || n != 512 {
			t.Fatalf("completed = %d, %v; want 512", n, err)
		}
		h, _ := store.BookingHistory(ctx, db, wholeStayPassed)
		if len(h) != 2 || h[0].ToStatus != "active" || h[1].ToStatus != "completed" || h[1].Source != store.SourceCron {
			t.Fatalf("history = %+v", h)
		}
		// A second tick finds nothing to do.
		if err := f.run(t, tasks.Tick{Type: tasks.TypeBookingsTick, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if h2, _ := store.BookingHistory(ctx, db, wholeStayPassed); len(h2) != 2 {
			t.Fatalf("second tick wrote history: %+v", h2)
		}
		// A tick dated in the future acts as now, never ahead.
		if err := f.run(t, tasks.Tick{Type: tasks.TypeBookingsTick, At: time.Now().AddDate(0, 0, 30)}); err != nil {
			t.Fatal(err)
		}
		if got := f.status(t, future); got != booking.Confirmed {
			t.Fatalf("a future-dated tick started a booking: %s", got)
		}
	})
}

// TestCrashBetweenCommitAndEnqueue: a booking committed with its outbox row
// whose writer died before publishing is relayed by the sweeper: exactly one
// task, however many sweeps or late publishes follow.
func TestCrashBetweenCommitAndEnqueue(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		b, msg := f.create(t, today().AddDays(1), today().AddDays(3), time.Hour) // never published
		if n := f.scheduled(t); n != 0 {
			t.Fatalf("%d tasks before the sweep", n)
		}
		time.Sleep(5 * time.Millisecond) // past the (1ms) grace
		for i := 0; i < 2; i++ {
			if err := f.run(t, tasks.Tick{Type: tasks.TypeMaintenanceSweep, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if n := f.scheduled(t); n != 1 {
				t.Fatalf("sweep %d: %d scheduled tasks, want 1", i+1, n)
			}
		}
		ti, err := f.inspector.GetTaskInfo("default", "booking:expire:"+b.ID)
		if err != nil || ti.Type != tasks.TypeBookingExpire || ti.State != asynq.TaskStateScheduled || ti.NextProcessAt.Before(b.ExpiresAt) {
			t.Fatalf("relayed task = %+v, %v", ti, err)
		}
		// The relay's own Pending, and a late Publish by the revived writer, add nothing.
		if _, err := f.relay.Pending(ctx, 0, 100); err != nil {
			t.Fatal(err)
		}
		f.relay.Publish(ctx, msg)
		if n := f.scheduled(t); n != 1 {
			t.Fatalf("%d scheduled tasks after a late publish, want 1", n)
		}
		var unsent int
		if err := store.Get(ctx, db, &unsent, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`); err != nil || unsent != 0 {
			t.Fatalf("unsent outbox rows = %d, %v", unsent, err)
		}
	})
}

// TestSweeperEnqueuesOverdueExpiries: a booking past its deadline whose task
// Redis lost (flushed, or the embedded Redis restarted) gets its expiry
// enqueued again by the sweeper, once, and the task expires it.
func TestSweeperEnqueuesOverdueExpiries(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		b, _ := f.create(t, today().AddDays(1), today().AddDays(3), time.Millisecond)
		if err := store.MarkOutboxSent(ctx, db, "booking:expire:"+b.ID); err != nil { // relayed, then lost
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		for i := 0; i < 2; i++ {
			if err := f.run(t, tasks.Tick{Type: tasks.TypeMaintenanceSweep, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		pending, err := f.inspector.ListPendingTasks("default")
		var expiries []string
		for _, ti := range pending {
			if ti.Type == tasks.TypeBookingExpire {
				expiries = append(expiries, ti.ID)
			}
		}
		if err != nil || len(expiries) != 1 || expiries[0] != "booking:expire:"+b.ID {
			t.Fatalf("pending expiries = %v, %v; want the one expiry", expiries, err)
		}
		f.startWorker(t)
		waitFor(t, 10*time.Second, func() bool { return f.status(t, b.ID) == booking.Expired })
	})
}

// scheduled counts the tasks scheduled in the default queue.
func (f *fixture) scheduled(t *testing.T) int {
	t.Helper()
	ts, err := f.inspector.ListScheduledTasks("default")
	if err != nil {
		return 0
	}
	return len(ts)
}
