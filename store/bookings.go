package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/tasks"
)

// Booking is a booking row.
type Booking struct {
	ID                string         `db:"id" json:"id"`
	ListingID         string         `db:"listing_id" json:"listing_id"`
	RenterID          string         `db:"renter_id" json:"renter_id"`
	OwnerID           string         `db:"owner_id" json:"owner_id"`
	StartDate         booking.Date   `db:"start_date" json:"start_date"`
	EndDate           booking.Date   `db:"end_date" json:"end_date"`
	Status            booking.Status `db:"status" json:"status"`
	BeforeDispute     *string        `db:"status_before_dispute" json:"-"`
	TotalAmount       int64          `db:"total_amount" json:"total_amount"`
	Currency          string         `db:"currency" json:"currency"`
	ExpiresAt         time.Time      `db:"expires_at" json:"expires_at"`
	RefundRequestedAt *time.Time     `db:"refund_requested_at" json:"-"`
	CreatedAt         time.Time      `db:"created_at" json:"created_at"`
	UpdatedAt         time.Time      `db:"updated_at" json:"updated_at"`
	// Outbox holds the messages the call that returned the booking wrote to
	// the outbox in its transaction (its domain event's notify tasks, ...):
	// the caller publishes them after commit, or leaves them to the relay.
	Outbox []tasks.Message `db:"-" json:"-"`
}

const bookingColumns = `id, listing_id, renter_id, owner_id, start_date, end_date, status, status_before_dispute,
	total_amount, currency, expires_at, refund_requested_at, created_at, updated_at`

// GetBooking returns a booking; ENOTFOUND if absent.
func GetBooking(ctx context.Context, q Queryer, id string) (*Booking, error) {
	var b Booking
	if err := Get(ctx, q, &b, `SELECT `+bookingColumns+` FROM bookings WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get booking %s: %w", id, err)
	}
	return &b, nil
}

// Source says who caused a transition, for the booking's history.
type Source struct {
	// Kind is api, task, stripe, cron or reconcile.
	Kind string
	// Ref is the Stripe event ID, task ID or request ID behind the change.
	Ref string
	// ActorID is the user who acted, if any.
	ActorID string
}

// Sources of transitions.
const (
	SourceAPI       = "api"
	SourceTask      = "task"
	SourceStripe    = "stripe"
	SourceCron      = "cron"
	SourceReconcile = "reconcile"
)

// HistoryEntry is one applied transition.
type HistoryEntry struct {
	ID         string    `db:"id" json:"id"`
	BookingID  string    `db:"booking_id" json:"-"`
	FromStatus string    `db:"from_status" json:"from"`
	ToStatus   string    `db:"to_status" json:"to"`
	Cause      string    `db:"cause" json:"cause"`
	Source     string    `db:"source" json:"source"`
	SourceRef  string    `db:"source_ref" json:"source_ref,omitempty"`
	ActorID    *string   `db:"actor_id" json:"actor_id,omitempty"`
	CreatedAt  time.Time `db:"created_at" json:"at"`
}

// ErrStale is returned by ApplyBookingEvent when the booking changed between
// reading it and writing: the caller's view is stale (ECONFLICT).
var ErrStale = errors.New("booking changed concurrently")

// ApplyBookingEvent moves a booking through the state machine inside the
// caller's transaction: it reads the booking, asks booking.Next, writes the
// new status with a compare-and-set on the status it read, and writes the
// history row. A transition that concerns people (confirmed, cancelled,
// expired, refunded, disputed, dispute closed) also records its domain event
// with its notify outbox rows, in the same transaction: the returned
// booking's Outbox holds those messages for the caller to publish after
// commit. It returns the booking as written. Errors: ENOTFOUND (no such
// booking), ECONFLICT wrapping *booking.IllegalTransition (the event cannot
// happen in the current state) or ErrStale (a concurrent change), EOVERLAP
// (moving back to a date-holding state onto dates taken meanwhile).
func ApplyBookingEvent(ctx context.Context, q Queryer, id string, ev booking.Event, src Source) (*Booking, error) {
	b, err := GetBooking(ctx, q, id)
	if err != nil {
		return nil, err
	}
	before := booking.Status("")
	if b.BeforeDispute != nil {
		before = booking.Status(*b.BeforeDispute)
	}
	to, err := booking.Next(b.Status, ev, before)
	if err != nil {
		return b, portal.WrapError(portal.ECONFLICT, err, "%s", err.Error())
	}
	now := Now()
	var beforeDispute *string
	if to == booking.Disputed {
		s := string(b.Status)
		beforeDispute = &s
	}
	n, err := Exec(ctx, q, `UPDATE bookings SET status = ?, status_before_dispute = ?, updated_at = ?
		WHERE id = ? AND status = ?`, to, beforeDispute, now, id, b.Status)
	if err != nil {
		return b, fmt.Errorf("booking %s %s: %w", id, ev, err)
	}
	if n == 0 {
		return b, portal.WrapError(portal.ECONFLICT, ErrStale, "booking %s changed concurrently", id)
	}
	if err := addHistory(ctx, q, id, b.Status, to, string(ev), src, now); err != nil {
		return b, err
	}
	from := b.Status
	b.Status, b.BeforeDispute, b.UpdatedAt = to, beforeDispute, now
	msgs, err := recordBookingEvent(ctx, q, b, from, ev, src)
	if err != nil {
		return b, err
	}
	b.Outbox = msgs
	return b, nil
}

// addHistory writes one history row.
func addHistory(ctx context.Context, q Queryer, bookingID string, from, to booking.Status, cause string, src Source, at time.Time) error {
	var actor *string
	if src.ActorID != "" {
		actor = &src.ActorID
	}
	_, err := Exec(ctx, q, `INSERT INTO booking_history (id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, NewID(), bookingID, string(from), string(to), cause, src.Kind, src.Ref, actor, at)
	if err != nil {
		return fmt.Errorf("booking %s history: %w", bookingID, err)
	}
	return nil
}

// BookingHistory returns a booking's transitions, oldest first.
func BookingHistory(ctx context.Context, q Queryer, bookingID string) ([]HistoryEntry, error) {
	var h []HistoryEntry
	err := Select(ctx, q, &h, `SELECT id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at
		FROM booking_history WHERE booking_id = ? ORDER BY created_at, id`, bookingID)
	if err != nil {
		return nil, fmt.Errorf("booking %s history: %w", bookingID, err)
	}
	return h, nil
}
