// Package relay moves outbox rows to Redis. A writer commits its change and
// the outbox rows that describe the work it needs in one transaction, then
// hands the same messages to Publish, which enqueues them right away. Rows
// nobody published (a crash after commit, Redis down at the time, or a
// writer that leaves publishing to the relay) are picked up by Poll, which
// every worker process runs every second, and by the sweeper. The asynq task
// ID is the outbox row's ID, so a message relayed twice is one task.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// Enqueuer is the part of asynq.Client the relay needs.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Relay enqueues outbox messages and records which reached Redis. Marks are
// batched: one UPDATE per flush instead of one per message.
type Relay struct {
	db  *store.DB
	q   Enqueuer
	log *slog.Logger

	mu      sync.Mutex
	pending []string
	kick    chan struct{}

	// FlushInterval bounds how long a sent mark waits for its batch.
	FlushInterval time.Duration
}

// New returns a Relay; call Run to flush its marks.
func New(db *store.DB, q Enqueuer, log *slog.Logger) *Relay {
	return &Relay{db: db, q: q, log: log, kick: make(chan struct{}, 1), FlushInterval: 50 * time.Millisecond}
}

// Publish enqueues messages whose outbox rows were just committed. Failures
// are logged and left to the sweeper: the rows are durable, so nothing is lost.
func (r *Relay) Publish(ctx context.Context, msgs ...tasks.Message) {
	var sent []string
	for _, m := range msgs {
		if err := r.enqueue(ctx, m); err != nil {
			r.log.WarnContext(ctx, "outbox relay: enqueue failed, the sweeper will retry",
				"task_id", m.ID, "task_type", m.Type, "err", err)
			continue
		}
		sent = append(sent, m.ID)
	}
	if len(sent) == 0 {
		return
	}
	r.mu.Lock()
	r.pending = append(r.pending, sent...)
	full := len(r.pending) >= 500
	r.mu.Unlock()
	if full {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

func (r *Relay) enqueue(ctx context.Context, m tasks.Message) error {
	t, err := m.Task()
	if err != nil {
		return err
	}
	_, err = r.q.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		// Already in Redis (pending, running, or completed within its
		// retention): the relay's job is done.
		return nil
	}
	return err
}

// Run flushes sent marks until ctx ends, then flushes once more.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
		case <-r.kick:
		}
		r.Flush(ctx)
	}
}

// Flush writes the pending sent marks.
func (r *Relay) Flush(ctx context.Context) {
	r.mu.Lock()
	ids := r.pending
	r.pending = nil
	r.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), 500)
		if err := store.MarkOutboxSent(ctx, r.db, ids[:n]...); err != nil {
			// Unmarked rows are relayed again by the sweeper; the task ID
			// makes that a no-op.
			r.log.WarnContext(ctx, "outbox relay: could not mark rows sent", "rows", n, "err", err)
		}
		ids = ids[n:]
	}
}

// Pending relays outbox rows older than grace that are still unsent (a crash
// between commit and Publish, or Redis down at the time) and returns how many
// reached Redis.
func (r *Relay) Pending(ctx context.Context, grace time.Duration, limit int) (int, error) {
	msgs, err := store.UnsentOutbox(ctx, r.db, time.Now().Add(-grace), limit)
	if err != nil {
		return 0, err
	}
	var sent []string
	for _, m := range msgs {
		tm := tasks.Message(m)
		if err := r.enqueue(ctx, tm); err != nil {
			if mErr := store.MarkOutboxFailed(ctx, r.db, m.ID, err.Error()); mErr != nil {
				r.log.WarnContext(ctx, "outbox relay: could not record failure", "task_id", m.ID, "err", mErr)
			}
			continue
		}
		sent = append(sent, m.ID)
	}
	if err := store.MarkOutboxSent(ctx, r.db, sent...); err != nil {
		return len(sent), err
	}
	return len(sent), nil
}

// Poll relays unsent outbox rows older than grace every interval until ctx
// ends: the relay of last resort, bounding how long committed work can wait
// for Redis to about interval + grace.
func (r *Relay) Poll(ctx context.Context, interval, grace time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Pending(ctx, grace, 500); err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox poll failed", "err", err)
			}
		} else if n > 0 {
			r.log.DebugContext(ctx, "outbox poll relayed rows", "rows", n)
		}
	}
}
