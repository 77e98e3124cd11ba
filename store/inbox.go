package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
)

// InboxEntry is one event to store and the task that will process it (nil
// for an event stored already processed, such as one of an unsupported API
// version).
type InboxEntry struct {
	Event StripeEvent
	Task  *OutboxMessage
}

// NewInboxEntry is the inbox entry of an event with the task that will
// process it. An event rendered in another API version than pinnedVersion
// is stored already processed, with outcome unsupported_api_version and no
// task: kept for operators, never applied, never retried.
func NewInboxEntry(e StripeEvent, pinnedVersion string, task OutboxMessage) InboxEntry {
	if e.APIVersion != pinnedVersion {
		now := Now()
		e.ProcessedAt = &now
		e.Outcome = OutcomeUnsupportedAPIVersion
		e.OutcomeDetail = fmt.Sprintf("api_version %q; this deployment is pinned to %s", e.APIVersion, pinnedVersion)
		return InboxEntry{Event: e}
	}
	return InboxEntry{Event: e, Task: &task}
}

// InboxOptions tune the group commit.
type InboxOptions struct {
	// MaxRows bounds one batch (one transaction); 0 means 256.
	MaxRows int
	// Window is how long a batch waits for more rows after its first one
	// arrives. 0 (the default) never waits: a batch is whatever queued while
	// the previous commits were in flight, so a lone event commits at once
	// and a burst shares commits.
	Window time.Duration
	// Flushers is how many batches may commit at once; 0 means 4.
	Flushers int
	// Timeout bounds one batch's transaction; 0 means 10 s.
	Timeout time.Duration
	// AfterCommit, if set, receives the outbox messages of each committed
	// batch's new events (to relay them), after the waiters are released.
	AfterCommit func(ctx context.Context, msgs []OutboxMessage)
}

// Inbox stores webhook events with group commit: Add queues an entry and
// waits; a collector gathers the entries of concurrent callers into one
// transaction (one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING id
// for the events, one for their outbox rows), commits it, and only then
// answers each caller with its own result. One fsync then serves a whole
// batch instead of one event, which is what lets ingestion go past a single
// connection's commit rate while every 2xx still follows a durable commit.
type Inbox struct {
	db   *DB
	opt  InboxOptions
	reqs chan *inboxReq
	sem  chan struct{}
	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	batches, rows atomic.Int64
}

// InboxStats counts committed batches and the entries they carried.
type InboxStats struct{ Batches, Entries int64 }

// Stats returns how many batches and entries were flushed so far.
func (in *Inbox) Stats() InboxStats {
	return InboxStats{Batches: in.batches.Load(), Entries: in.rows.Load()}
}

type inboxReq struct {
	entry InboxEntry
	res   chan inboxRes
}

type inboxRes struct {
	inserted bool
	err      error
}

// ErrInboxClosed is returned by Add after Close.
var ErrInboxClosed = portal.Errorf(portal.EUNAVAILABLE, "the webhook inbox is shutting down")

// NewInbox starts an Inbox on db; Close stops it.
func NewInbox(db *DB, opt InboxOptions) *Inbox {
	if opt.MaxRows <= 0 {
		opt.MaxRows = 256
	}
	if opt.Flushers <= 0 {
		opt.Flushers = 4
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	in := &Inbox{
		db:   db,
		opt:  opt,
		reqs: make(chan *inboxReq, 4*opt.MaxRows),
		sem:  make(chan struct{}, opt.Flushers),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go in.collect()
	return in
}

// Add stores an entry and returns once its batch committed: inserted is
// false for an event ID already stored (a duplicate, which changes
// nothing). If the batch fails, every entry of it gets the error
// (EUNAVAILABLE when the database is down). If ctx ends first, Add returns
// EUNAVAILABLE; the entry may still commit, which a redelivery then sees as
// a duplicate.
func (in *Inbox) Add(ctx context.Context, e InboxEntry) (inserted bool, err error) {
	r := &inboxReq{entry: e, res: make(chan inboxRes, 1)}
	select {
	case <-in.stop:
		return false, ErrInboxClosed
	default:
	}
	select {
	case in.reqs <- r:
	case <-in.stop:
		return false, ErrInboxClosed
	case <-ctx.Done():
		return false, portal.WrapError(portal.EUNAVAILABLE, ctx.Err(), "the webhook inbox is overloaded")
	}
	select {
	case res := <-r.res:
		return res.inserted, res.err
	case <-ctx.Done():
		return false, portal.WrapError(portal.EUNAVAILABLE, ctx.Err(), "the event was not stored in time")
	}
}

// Close stops accepting entries, commits what is queued, and waits for the
// batches in flight.
func (in *Inbox) Close() {
	in.once.Do(func() { close(in.stop) })
	<-in.done
	in.wg.Wait()
}

func (in *Inbox) collect() {
	defer close(in.done)
	for {
		var first *inboxReq
		select {
		case first = <-in.reqs:
		case <-in.stop:
			// Answer whatever is still queued.
			for {
				select {
				case r := <-in.reqs:
					in.launch([]*inboxReq{r})
				default:
					return
				}
			}
		}
		if in.opt.Window > 0 {
			t := time.NewTimer(in.opt.Window)
			<-t.C
		}
		// Wait for a free flusher before draining the queue: the longer the
		// commits in flight take, the bigger the next batch grows.
		in.sem <- struct{}{}
		batch := []*inboxReq{first}
	drain:
		for len(batch) < in.opt.MaxRows {
			select {
			case r := <-in.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		in.flushHeld(batch)
	}
}

// launch flushes one batch outside the collector's flow control (shutdown).
func (in *Inbox) launch(batch []*inboxReq) {
	in.sem <- struct{}{}
	in.flushHeld(batch)
}

// flushHeld flushes batch in the background with a flusher slot (in.sem)
// its caller holds, and releases the slot when done.
func (in *Inbox) flushHeld(batch []*inboxReq) {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		defer func() { <-in.sem }()
		in.flush(batch)
	}()
}

func (in *Inbox) flush(batch []*inboxReq) {
	ctx, cancel := context.WithTimeout(context.Background(), in.opt.Timeout)
	defer cancel()
	// Within a batch the first entry of an ID is the one written; the others
	// are duplicates like any later delivery.
	entries := make([]InboxEntry, 0, len(batch))
	firstOf := make(map[string]*inboxReq, len(batch))
	for _, r := range batch {
		if _, dup := firstOf[r.entry.Event.ID]; dup {
			continue
		}
		firstOf[r.entry.Event.ID] = r
		entries = append(entries, r.entry)
	}
	// Concurrent batches insert in the same (ID) order, so two batches that
	// share an ID wait for each other instead of deadlocking on the unique
	// indexes.
	sort.Slice(entries, func(i, j int) bool { return entries[i].Event.ID < entries[j].Event.ID })
	in.batches.Add(1)
	in.rows.Add(int64(len(batch)))
	var ids []string
	var err error
	if in.db.Engine == Postgres {
		// One statement is one implicit transaction: a single round trip
		// instead of BEGIN, two INSERTs and COMMIT. A deadlock or
		// serialization failure (possible against other writers of the
		// outbox) is retried like InTx does.
		for attempt := 0; attempt < 5; attempt++ {
			ids, err = insertStripeEventsOneStatement(ctx, in.db, entries)
			if err == nil || !isRetryable(err) {
				break
			}
		}
		err = Translate(err)
	} else {
		err = in.db.InTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			ids, err = insertStripeEvents(ctx, tx, entries)
			return err
		})
	}
	inserted := make(map[string]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	if err != nil {
		if portal.ErrorCode(err) != portal.EUNAVAILABLE {
			err = portal.WrapError(portal.EUNAVAILABLE, err, "the event could not be stored")
		}
	}
	var msgs []OutboxMessage
	for _, r := range batch {
		if err != nil {
			r.res <- inboxRes{err: err}
			continue
		}
		mine := firstOf[r.entry.Event.ID] == r && inserted[r.entry.Event.ID]
		r.res <- inboxRes{inserted: mine}
		if mine && r.entry.Task != nil {
			msgs = append(msgs, *r.entry.Task)
		}
	}
	if len(msgs) > 0 && in.opt.AfterCommit != nil {
		// Relaying is not part of the commit: it must not hold a flusher.
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			rctx, cancel := context.WithTimeout(context.Background(), in.opt.Timeout)
			defer cancel()
			in.opt.AfterCommit(rctx, msgs)
		}()
	}
}

// insertStripeEvents writes events (multi-row, skipping IDs already stored)
// and the outbox rows of those it inserted; it returns the inserted IDs.
func insertStripeEvents(ctx context.Context, q Queryer, entries []InboxEntry) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	now := Now()
	var sb strings.Builder
	sb.WriteString(`INSERT INTO stripe_events (id, type, api_version, livemode, object_id, event_created, payload, source,
		received_at, processed_at, outcome, outcome_detail) VALUES `)
	args := make([]any, 0, 12*len(entries))
	for i, en := range entries {
		e := en.Event
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, stripeEventValues(e, now)...)
	}
	sb.WriteString(` ON CONFLICT (id) DO NOTHING RETURNING id`)
	var ids []string
	if err := Select(ctx, q, &ids, sb.String(), args...); err != nil {
		return nil, fmt.Errorf("insert stripe events: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	isNew := make(map[string]bool, len(ids))
	for _, id := range ids {
		isNew[id] = true
	}
	var msgs []OutboxMessage
	for _, en := range entries {
		if isNew[en.Event.ID] && en.Task != nil {
			msgs = append(msgs, *en.Task)
		}
	}
	if err := addOutboxRows(ctx, q, msgs); err != nil {
		return nil, err
	}
	return ids, nil
}

// stripeEventValues are the stripe_events columns of e, in the order of
// the inserts above and below: the source defaults to the webhook, the
// receipt time to now.
func stripeEventValues(e StripeEvent, now time.Time) []any {
	src := e.Source
	if src == "" {
		src = EventSourceWebhook
	}
	recv := e.ReceivedAt
	if recv.IsZero() {
		recv = now
	}
	return []any{e.ID, e.Type, e.APIVersion, e.Livemode, e.ObjectID, e.EventCreated.UTC(), e.Payload, src,
		recv.UTC(), e.ProcessedAt, e.Outcome, e.OutcomeDetail}
}

// insertStripeEventsOneStatement is insertStripeEvents on PostgreSQL as one
// statement: the outbox rows are inserted by a data-modifying CTE that joins
// the events' RETURNING, so only new events get one, atomically.
func insertStripeEventsOneStatement(ctx context.Context, q Queryer, entries []InboxEntry) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	now := Now()
	var sb strings.Builder
	args := make([]any, 0, 18*len(entries))
	sb.WriteString(`WITH ev AS (INSERT INTO stripe_events (id, type, api_version, livemode, object_id, event_created, payload,
		source, received_at, processed_at, outcome, outcome_detail) VALUES `)
	for i, en := range entries {
		e := en.Event
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,?,?,?,?,?,?,?::timestamptz,?,?)")
		args = append(args, stripeEventValues(e, now)...)
	}
	sb.WriteString(` ON CONFLICT (id) DO NOTHING RETURNING id)`)
	first := true
	for _, en := range entries {
		if en.Task == nil {
			continue
		}
		if first {
			sb.WriteString(`, ob AS (INSERT INTO outbox (id, task_type, payload, process_at, created_at)
				SELECT t.id, t.task_type, t.payload, t.process_at, t.created_at FROM (VALUES `)
		} else {
			sb.WriteString(",")
		}
		first = false
		sb.WriteString("(?::text,?::text,?::text,?::bytea,?::timestamptz,?::timestamptz)")
		var at *time.Time
		if !en.Task.ProcessAt.IsZero() {
			t := en.Task.ProcessAt.UTC().Truncate(time.Microsecond)
			at = &t
		}
		args = append(args, en.Event.ID, en.Task.ID, en.Task.Type, en.Task.Payload, at, now)
	}
	if !first {
		sb.WriteString(`) AS t (event_id, id, task_type, payload, process_at, created_at)
			JOIN ev ON ev.id = t.event_id ON CONFLICT (id) DO NOTHING)`)
	}
	sb.WriteString(` SELECT id FROM ev`)
	var ids []string
	if err := Select(ctx, q, &ids, sb.String(), args...); err != nil {
		return nil, fmt.Errorf("insert stripe events: %w", err)
	}
	return ids, nil
}

// addOutboxRows is AddOutbox in one multi-row statement.
func addOutboxRows(ctx context.Context, q Queryer, msgs []OutboxMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	query, args := insertOutboxRows(msgs, Now())
	if _, err := Exec(ctx, q, query, args...); err != nil {
		return fmt.Errorf("add outbox rows: %w", err)
	}
	return nil
}

func isNotFound(err error) bool { return portal.ErrorCode(err) == portal.ENOTFOUND }
