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
	if err := w.sweepStuckUploads(ctx); err != nil {
		return fmt.Errorf("sweep stuck uploads: %w", err)
	}
	return w.sweepStripeEvents(ctx)
}

// outboxRetention is how long relayed outbox rows are kept for inspection.
const outboxRetention = 7 * 24 * time.Hour

// outboxPurgeChunk bounds the rows one statement of the purge deletes.
const outboxPurgeChunk = 5000

// stripeEventPurgeLimit bounds the Stripe events one cleanup purges (it
// runs hourly: a backlog goes in steps).
const stripeEventPurgeLimit = 50_000

// cleanup purges old relayed outbox rows and old processed Stripe events,
// and deletes abandoned uploads.
func (w *Worker) cleanup(ctx context.Context, _ *asynq.Task) error {
	n, err := store.DeleteSentOutbox(ctx, w.deps.DB, time.Now().Add(-outboxRetention), outboxPurgeChunk)
	if err != nil {
		return fmt.Errorf("purge outbox: %w", err)
	}
	w.log.InfoContext(ctx, "cleanup purged relayed outbox rows", "rows", n)
	if keep := w.cfg.StripeEventRetention; keep > 0 {
		n, err := store.PurgeStripeEvents(ctx, w.deps.DB, time.Now().Add(-keep), stripeEventPurgeLimit)
		if err != nil {
			return fmt.Errorf("purge stripe events: %w", err)
		}
		if n > 0 {
			w.log.InfoContext(ctx, "cleanup purged processed stripe events", "events", n, "older_than", keep.String())
		}
	}
	if _, err := w.cleanupPendingUploads(ctx); err != nil {
		return fmt.Errorf("clean up abandoned uploads: %w", err)
	}
	return nil
}
