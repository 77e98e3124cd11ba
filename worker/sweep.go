package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/store"
)

// sweep re-enqueues work the database says is outstanding: outbox rows a
// crash left unsent, and expiries of bookings still unpaid past their
// deadline. Everything it enqueues has a deterministic ID, so a sweep that
// races the normal path enqueues nothing twice.
func (w *Worker) sweep(ctx context.Context, _ *asynq.Task) error {
	n, err := w.deps.Relay.Pending(ctx, w.cfg.OutboxGrace, 1000)
	if err != nil {
		return fmt.Errorf("sweep outbox: %w", err)
	}
	if n > 0 {
		w.log.InfoContext(ctx, "sweeper relayed outbox rows", "rows", n)
	}
	n, err = w.sweepExpiries(ctx)
	if err != nil {
		return fmt.Errorf("sweep overdue expiries: %w", err)
	}
	if n > 0 {
		w.log.InfoContext(ctx, "sweeper enqueued overdue booking expiries", "bookings", n)
	}
	return nil
}

// outboxRetention is how long relayed outbox rows are kept for inspection.
const outboxRetention = 7 * 24 * time.Hour

// cleanup purges old relayed outbox rows.
func (w *Worker) cleanup(ctx context.Context, _ *asynq.Task) error {
	n, err := store.DeleteSentOutbox(ctx, w.deps.DB, time.Now().Add(-outboxRetention))
	if err != nil {
		return fmt.Errorf("purge outbox: %w", err)
	}
	w.log.InfoContext(ctx, "cleanup purged relayed outbox rows", "rows", n)
	return nil
}
