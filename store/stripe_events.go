package store

import (
	"context"
	"fmt"
	"time"
)

// StripeEvent is a row of the webhook inbox: a Stripe event as received
// (webhook) or derived (reconciliation), and what processing it did.
type StripeEvent struct {
	ID            string     `db:"id"`
	Type          string     `db:"type"`
	APIVersion    string     `db:"api_version"`
	Livemode      bool       `db:"livemode"`
	ObjectID      string     `db:"object_id"`
	EventCreated  time.Time  `db:"event_created"`
	Payload       string     `db:"payload"`
	Source        string     `db:"source"`
	ReceivedAt    time.Time  `db:"received_at"`
	ProcessedAt   *time.Time `db:"processed_at"`
	Outcome       string     `db:"outcome"`
	OutcomeDetail string     `db:"outcome_detail"`
	Attempts      int        `db:"attempts"`
}

// Event sources.
const (
	EventSourceWebhook   = "webhook"
	EventSourceReconcile = "reconcile"
)

// Outcomes of processing a Stripe event.
const (
	// OutcomeApplied: the event changed our state.
	OutcomeApplied = "applied"
	// OutcomeIgnored: a type we do not act on (stored for the record).
	OutcomeIgnored = "ignored"
	// OutcomeUnknownBooking: the event names no booking we know; kept for an
	// operator and for reconciliation, never retried.
	OutcomeUnknownBooking = "unknown_booking"
	// OutcomeUnknownObject: an account, customer or payout of nobody we know.
	OutcomeUnknownObject = "unknown_object"
	// OutcomeStale: older than what we already applied to the object.
	OutcomeStale = "stale"
	// OutcomeDuplicateEffect: our state already says what the event says
	// (another event, or reconciliation, got there first).
	OutcomeDuplicateEffect = "duplicate_effect"
	// OutcomeUnsupportedAPIVersion: rendered in another API version than the
	// one we are pinned to; stored, marked at ingestion, never applied.
	OutcomeUnsupportedAPIVersion = "unsupported_api_version"
	// OutcomeRefundRequested: the payment arrived for a booking that can no
	// longer take it; a refund was enqueued.
	OutcomeRefundRequested = "refund_requested"
)

const stripeEventColumns = `id, type, api_version, livemode, object_id, event_created, payload, source,
	received_at, processed_at, outcome, outcome_detail, attempts`

// GetStripeEvent returns a stored event; ENOTFOUND if absent.
func GetStripeEvent(ctx context.Context, q Queryer, id string) (*StripeEvent, error) {
	var e StripeEvent
	if err := Get(ctx, q, &e, `SELECT `+stripeEventColumns+` FROM stripe_events WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get stripe event %s: %w", id, err)
	}
	return &e, nil
}

// LockStripeEvent is GetStripeEvent that, on PostgreSQL, locks the row for
// the caller's transaction, so two workers never process one event at once
// (SQLite's write transactions are serialized already).
func LockStripeEvent(ctx context.Context, q Queryer, engine Engine, id string) (*StripeEvent, error) {
	var e StripeEvent
	if err := Get(ctx, q, &e, `SELECT `+stripeEventColumns+` FROM stripe_events WHERE id = ?`+forUpdate(engine), id); err != nil {
		return nil, fmt.Errorf("lock stripe event %s: %w", id, err)
	}
	return &e, nil
}

// MarkStripeEvent records the outcome of processing an event.
func MarkStripeEvent(ctx context.Context, q Queryer, id, outcome, detail string) error {
	if len(detail) > 1000 {
		detail = detail[:1000]
	}
	_, err := Exec(ctx, q, `UPDATE stripe_events SET processed_at = ?, outcome = ?, outcome_detail = ?, attempts = attempts + 1
		WHERE id = ?`, Now(), outcome, detail, id)
	if err != nil {
		return fmt.Errorf("mark stripe event %s: %w", id, err)
	}
	return nil
}

// CountStripeEventAttempt records a failed processing attempt (outside the
// failed transaction).
func CountStripeEventAttempt(ctx context.Context, q Queryer, id, detail string) error {
	if len(detail) > 1000 {
		detail = detail[:1000]
	}
	_, err := Exec(ctx, q, `UPDATE stripe_events SET attempts = attempts + 1, outcome_detail = ? WHERE id = ? AND processed_at IS NULL`,
		detail, id)
	return err
}

// NewestAppliedEventAt returns the creation time of the newest event of one
// of the types that was applied to the object, or the zero time: events
// older than it are stale. It orders objects that have no last_event_at
// column of their own (Connect accounts, subscriptions).
func NewestAppliedEventAt(ctx context.Context, q Queryer, objectID string, types []string) (time.Time, error) {
	query, args, err := In(q, `SELECT event_created FROM stripe_events
		WHERE object_id = ? AND type IN (?) AND outcome = ? ORDER BY event_created DESC LIMIT 1`, objectID, types, OutcomeApplied)
	if err != nil {
		return time.Time{}, err
	}
	var at time.Time
	if err := Get(ctx, q, &at, query, args...); err != nil {
		if isNotFound(err) {
			return time.Time{}, nil
		}
		return time.Time{}, err
	}
	return at, nil
}

// InsertStripeEvent stores one event with its outbox message (if any) in
// the caller's transaction; inserted is false when the event ID was already
// stored (a duplicate delivery), in which case nothing is written.
func InsertStripeEvent(ctx context.Context, q Queryer, e StripeEvent, task *OutboxMessage) (inserted bool, err error) {
	ids, err := insertStripeEvents(ctx, q, []InboxEntry{{Event: e, Task: task}})
	if err != nil {
		return false, err
	}
	return len(ids) == 1, nil
}

// ParkedStripeEvents lists, oldest first, the events processed as
// unknown_booking whose detail is one of details: events waiting for their
// PaymentIntent or charge to be linked to a booking (the partial index
// stripe_events_parked_idx serves this).
func ParkedStripeEvents(ctx context.Context, q Queryer, details []string) ([]string, error) {
	query, args, err := In(q, `SELECT id FROM stripe_events WHERE outcome = '`+OutcomeUnknownBooking+`'
		AND outcome_detail IN (?) ORDER BY event_created, id`, details)
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := Select(ctx, q, &ids, query, args...); err != nil {
		return nil, fmt.Errorf("parked stripe events: %w", err)
	}
	return ids, nil
}

// UnprocessedStripeEvents lists IDs of events received before `before` and
// not yet processed, oldest first.
func UnprocessedStripeEvents(ctx context.Context, q Queryer, before time.Time, limit int) ([]string, error) {
	var ids []string
	err := Select(ctx, q, &ids, `SELECT id FROM stripe_events WHERE processed_at IS NULL AND received_at < ?
		ORDER BY received_at LIMIT ?`, before.UTC(), limit)
	return ids, err
}

// purgeableOutcomes are the outcomes of events that nothing needs once they
// are old. Unprocessed events are never purged, nor the parked and
// unknown ones (unknown_booking, unknown_object): an operator or
// reconciliation may still need them.
var purgeableOutcomes = []string{OutcomeApplied, OutcomeIgnored, OutcomeStale, OutcomeDuplicateEffect,
	OutcomeUnsupportedAPIVersion, OutcomeRefundRequested}

// purgeChunk bounds the IDs of one DELETE.
const purgeChunk = 500

// PurgeStripeEvents deletes up to limit events processed before `before`
// and returns how many it deleted. An applied event is kept while it is
// the newest applied event of its type for its object: the staleness of
// later events of objects without a last_event_at column of their own
// (Connect accounts, subscriptions) is read from it (NewestAppliedEventAt),
// so a late or redelivered older event stays stale after the purge. A
// purged event that comes again would be stored and processed again, and
// the state machine would see its effect already there; it does not come
// again, as the retention is at least the 30 days Stripe keeps its events
// (it stops retrying a delivery after 3 days, and reconciliation lists
// undelivered events of the last day by default).
func PurgeStripeEvents(ctx context.Context, q Queryer, before time.Time, limit int) (int64, error) {
	query, args, err := In(q, `SELECT e.id FROM stripe_events e
		WHERE e.processed_at < ? AND e.outcome IN (?)
		AND NOT (e.outcome = ? AND NOT EXISTS (SELECT 1 FROM stripe_events n
			WHERE n.object_id = e.object_id AND n.type = e.type AND n.outcome = ? AND n.event_created > e.event_created))
		LIMIT ?`, before.UTC(), purgeableOutcomes, OutcomeApplied, OutcomeApplied, limit)
	if err != nil {
		return 0, err
	}
	var ids []string
	if err := Select(ctx, q, &ids, query, args...); err != nil {
		return 0, fmt.Errorf("old stripe events: %w", err)
	}
	var n int64
	for len(ids) > 0 {
		chunk := ids[:min(purgeChunk, len(ids))]
		ids = ids[len(chunk):]
		query, args, err := In(q, `DELETE FROM stripe_events WHERE id IN (?)`, chunk)
		if err != nil {
			return n, err
		}
		d, err := Exec(ctx, q, query, args...)
		n += d
		if err != nil {
			return n, fmt.Errorf("purge stripe events: %w", err)
		}
	}
	return n, nil
}

func forUpdate(engine Engine) string {
	if engine == Postgres {
		return ` FOR UPDATE`
	}
	return ``
}
