package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// tickBatch is how many bookings the tick reads at a time, and tickChunk
// how many of them move together (store.TransitionBookings: one read and
// one write on PostgreSQL), each still its own compare-and-set.
const (
	tickBatch = 500
	tickChunk = 64
)

// expireBooking expires a booking still unpaid at its deadline. A booking
// that moved on (paid, cancelled, already expired) makes the task a no-op,
// not an error: the task was scheduled at creation and goes stale whenever
// the renter pays in time. A task that runs before the deadline (clock skew
// between hosts) fails and is retried later.
func (w *Worker) expireBooking(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.BookingExpire](t)
	if err != nil {
		return err
	}
	taskID, _ := asynq.GetTaskID(ctx)
	moved, err := w.transition(ctx, p.BookingID, booking.Expire, store.Source{Kind: store.SourceTask, Ref: taskID},
		func(b *store.Booking) error {
			if b.Status != booking.PendingPayment {
				return errMovedOn
			}
			if now := time.Now(); now.Before(b.ExpiresAt) {
				return fmt.Errorf("booking %s expires at %s, not yet (now %s)", b.ID,
					b.ExpiresAt.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
			}
			return nil
		})
	if err != nil {
		return err
	}
	if !moved {
		w.log.DebugContext(ctx, "booking moved on: nothing to expire", "booking_id", p.BookingID)
		return nil
	}
	w.log.InfoContext(ctx, "booking expired unpaid", "booking_id", p.BookingID)
	return nil
}

// errMovedOn is a transition's check saying the booking is past the event:
// the work is done or moot.
var errMovedOn = errors.New("booking moved on")

// transition applies one event to one booking as a unit of work of its own
// (store.TransitionBooking: two round trips on PostgreSQL, shared with the
// transitions of concurrent tasks through store.Transitions). check, if set,
// vets the booking as read. moved is false, with no error, when the booking
// was no longer in a state the event applies to (it moved on: the work is
// done or moot). The transition's outbox messages (its domain event's
// notify tasks) are published after it is written.
func (w *Worker) transition(ctx context.Context, id string, ev booking.Event, src store.Source, check func(*store.Booking) error) (moved bool, err error) {
	b, err := w.transitions.Apply(ctx, id, ev, src, check)
	return w.moved(ctx, id, ev, b, err)
}

// moved reads the outcome of a transition (see transition) and publishes
// the outbox messages of one that moved.
func (w *Worker) moved(ctx context.Context, id string, ev booking.Event, b *store.Booking, err error) (bool, error) {
	var ill *booking.IllegalTransition
	if errors.As(err, &ill) || errors.Is(err, store.ErrStale) || errors.Is(err, errMovedOn) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("booking %s %s: %w", id, ev, err)
	}
	if len(b.Outbox) > 0 {
		w.deps.Relay.Publish(ctx, b.Outbox...)
	}
	return true, nil
}

// bookingsTick moves bookings by the calendar (UTC): confirmed bookings whose
// first day has come become active, then active bookings that are over
// (today >= end_date, which is exclusive) become completed — so a booking
// whose whole stay passed while nothing ran goes through both in one tick.
// Each booking moves in its own compare-and-set; one that fails does not
// stop the others, and the task is retried for it.
func (w *Worker) bookingsTick(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.Tick](t)
	if err != nil {
		return err
	}
	// The tick's own time, so a late or retried tick does what its minute
	// asked; never a time ahead of the clock.
	at := time.Now()
	if !p.At.IsZero() && p.At.Before(at) {
		at = p.At
	}
	today := booking.DateOf(at, time.UTC)
	taskID, _ := asynq.GetTaskID(ctx)
	src := store.Source{Kind: store.SourceCron, Ref: taskID}
	started, errStart := w.transitionAll(ctx, today, store.BookingsToStart, booking.Start, src)
	ended, errEnd := w.transitionAll(ctx, today, store.BookingsToEnd, booking.End, src)
	if started+ended > 0 {
		w.log.InfoContext(ctx, "bookings tick", "date", today.String(), "started", started, "completed", ended)
	}
	return errors.Join(errStart, errEnd)
}

type bookingBatch func(ctx context.Context, q store.Queryer, today booking.Date, after string, limit int) ([]string, error)

// transitionAll applies ev to every booking find returns, batch by batch in
// ID order, tickChunk at a time, and returns how many moved.
func (w *Worker) transitionAll(ctx context.Context, today booking.Date, find bookingBatch, ev booking.Event, src store.Source) (int, error) {
	moved, after := 0, ""
	var errs []error
	for {
		ids, err := find(ctx, w.deps.DB, today, after, tickBatch)
		if err != nil {
			return moved, err
		}
		for start := 0; start < len(ids); start += tickChunk {
			if err := ctx.Err(); err != nil {
				return moved, err
			}
			chunk := ids[start:min(start+tickChunk, len(ids))]
			reqs := make([]store.TransitionRequest, len(chunk))
			for i, id := range chunk {
				reqs[i] = store.TransitionRequest{ID: id, Event: ev, Source: src}
			}
			for i, r := range store.TransitionBookings(ctx, w.deps.DB, reqs) {
				ok, err := w.moved(ctx, chunk[i], ev, r.Booking, r.Err)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if ok {
					moved++
				}
			}
		}
		if len(ids) < tickBatch {
			break
		}
		after = ids[len(ids)-1]
	}
	if len(errs) > 0 {
		return moved, fmt.Errorf("%d bookings failed to %s (first: %w)", len(errs), ev, errs[0])
	}
	return moved, nil
}

// sweepExpiries enqueues booking:expire, with its deterministic task ID,
// for every booking still pending payment past its deadline (plus grace, so
// the task scheduled at creation has had its chance). A task that is
// already queued, running or just done keeps the ID, so nothing doubles.
func (w *Worker) sweepExpiries(ctx context.Context) (int, error) {
	ids, err := store.OverdueExpiries(ctx, w.deps.DB, time.Now().Add(-w.cfg.OutboxGrace), 1000)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	msgs := make([]tasks.Message, 0, len(ids))
	for _, id := range ids {
		m, err := tasks.Encode(tasks.BookingExpire{BookingID: id})
		if err != nil {
			return 0, err
		}
		msgs = append(msgs, m)
	}
	w.deps.Relay.Publish(ctx, msgs...)
	return len(msgs), nil
}
