package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
)

// Payment is a booking's payment: one PaymentIntent.
type Payment struct {
	ID              string     `db:"id"`
	BookingID       string     `db:"booking_id"`
	PaymentIntentID *string    `db:"payment_intent_id"`
	ClientSecret    *string    `db:"client_secret"`
	ChargeID        *string    `db:"charge_id"`
	Amount          int64      `db:"amount"`
	AmountReceived  int64      `db:"amount_received"`
	AmountRefunded  int64      `db:"amount_refunded"`
	Currency        string     `db:"currency"`
	Status          string     `db:"status"`
	LastEventAt     *time.Time `db:"last_event_at"`
	CreatedAt       time.Time  `db:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at"`
}

// Payment statuses: Stripe's PaymentIntent statuses, collapsed, plus refunds.
const (
	PaymentPending    = "pending"    // no intent yet, or waiting for the renter
	PaymentFailed     = "failed"     // the last attempt failed; the renter may retry
	PaymentProcessing = "processing" // Stripe is waiting for the bank
	PaymentCanceled   = "canceled"   // the intent was cancelled: no money will come
	PaymentSucceeded  = "succeeded"  // the money arrived
	PaymentRefunded   = "refunded"   // all of it went back
)

// PaymentRank orders payment statuses: a payment never moves to a status of
// lower rank (a late "processing" cannot undo "succeeded"). failed and
// processing share a rank: a retried payment moves between them, and the
// events' creation times order those moves.
func PaymentRank(status string) int {
	switch status {
	case PaymentPending:
		return 0
	case PaymentFailed, PaymentProcessing:
		return 1
	case PaymentCanceled:
		return 2
	case PaymentSucceeded:
		return 3
	case PaymentRefunded:
		return 4
	}
	return 0
}

const paymentColumns = `id, booking_id, payment_intent_id, client_secret, charge_id, amount, amount_received,
	amount_refunded, currency, status, last_event_at, created_at, updated_at`

// GetPaymentByBooking returns a booking's payment; ENOTFOUND if none.
func GetPaymentByBooking(ctx context.Context, q Queryer, bookingID string) (*Payment, error) {
	return getPayment(ctx, q, `booking_id = ?`, bookingID)
}

// GetPaymentByIntent returns the payment of a PaymentIntent; ENOTFOUND if none.
func GetPaymentByIntent(ctx context.Context, q Queryer, intentID string) (*Payment, error) {
	return getPayment(ctx, q, `payment_intent_id = ?`, intentID)
}

// GetPaymentByCharge returns the payment of a charge; ENOTFOUND if none.
func GetPaymentByCharge(ctx context.Context, q Queryer, chargeID string) (*Payment, error) {
	return getPayment(ctx, q, `charge_id = ?`, chargeID)
}

// PaymentsByBooking returns the payments of bookings, by booking ID.
func PaymentsByBooking(ctx context.Context, q Queryer, bookingIDs ...string) (map[string]*Payment, error) {
	out := make(map[string]*Payment, len(bookingIDs))
	if len(bookingIDs) == 0 {
		return out, nil
	}
	query, args, err := In(q, `SELECT `+paymentColumns+` FROM payments WHERE booking_id IN (?)`, bookingIDs)
	if err != nil {
		return nil, err
	}
	var rows []Payment
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("payments of bookings: %w", Translate(err))
	}
	for i := range rows {
		out[rows[i].BookingID] = &rows[i]
	}
	return out, nil
}

func getPayment(ctx context.Context, q Queryer, where string, arg any) (*Payment, error) {
	var p Payment
	if err := Get(ctx, q, &p, `SELECT `+paymentColumns+` FROM payments WHERE `+where, arg); err != nil {
		return nil, fmt.Errorf("get payment: %w", err)
	}
	return &p, nil
}

// EnsurePayment returns a booking's payment, creating it (status pending,
// the booking's amount) if it has none. intentID, if not empty, is recorded
// on a payment that has no intent yet.
func EnsurePayment(ctx context.Context, q Queryer, b *Booking, intentID string) (*Payment, error) {
	now := Now()
	var pi *string
	if intentID != "" {
		pi = &intentID
	}
	_, err := Exec(ctx, q, `INSERT INTO payments (id, booking_id, payment_intent_id, amount, currency, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (booking_id) DO NOTHING`,
		NewID(), b.ID, pi, b.TotalAmount, b.Currency, PaymentPending, now, now)
	if err != nil {
		return nil, fmt.Errorf("ensure payment of %s: %w", b.ID, err)
	}
	p, err := GetPaymentByBooking(ctx, q, b.ID)
	if err != nil {
		return nil, err
	}
	if p.PaymentIntentID == nil && intentID != "" {
		if _, err := Exec(ctx, q, `UPDATE payments SET payment_intent_id = ?, updated_at = ? WHERE id = ? AND payment_intent_id IS NULL`,
			intentID, now, p.ID); err != nil {
			return nil, fmt.Errorf("payment of %s: record intent: %w", b.ID, err)
		}
		p.PaymentIntentID = &intentID
	}
	return p, nil
}

// SetPaymentIntent records the PaymentIntent created for a payment.
func SetPaymentIntent(ctx context.Context, q Queryer, paymentID, intentID, clientSecret string) error {
	_, err := Exec(ctx, q, `UPDATE payments SET payment_intent_id = ?, client_secret = ?, updated_at = ?
		WHERE id = ? AND (payment_intent_id IS NULL OR payment_intent_id = ?)`, intentID, clientSecret, Now(), paymentID, intentID)
	if err != nil {
		return fmt.Errorf("payment %s: set intent: %w", paymentID, err)
	}
	return nil
}

// SavePayment writes a payment's mutable fields.
func SavePayment(ctx context.Context, q Queryer, p *Payment) error {
	p.UpdatedAt = Now()
	_, err := Exec(ctx, q, `UPDATE payments SET payment_intent_id = ?, charge_id = ?, amount_received = ?, amount_refunded = ?,
		status = ?, last_event_at = ?, updated_at = ? WHERE id = ?`,
		p.PaymentIntentID, p.ChargeID, p.AmountReceived, p.AmountRefunded, p.Status, p.LastEventAt, p.UpdatedAt, p.ID)
	if err != nil {
		return fmt.Errorf("save payment %s: %w", p.ID, err)
	}
	return nil
}

// LockBooking reads a booking and, on PostgreSQL, locks its row for the
// caller's transaction: everything that changes a booking's money goes
// through it, so concurrent events of one booking apply one after the
// other instead of failing each other's compare-and-set.
func LockBooking(ctx context.Context, q Queryer, engine Engine, id string) (*Booking, error) {
	var b Booking
	if err := Get(ctx, q, &b, `SELECT `+bookingColumns+` FROM bookings WHERE id = ?`+forUpdate(engine), id); err != nil {
		return nil, fmt.Errorf("lock booking %s: %w", id, err)
	}
	return &b, nil
}

// MarkRefundRequested records when a booking's refund was first asked for.
func MarkRefundRequested(ctx context.Context, q Queryer, bookingID string) error {
	_, err := Exec(ctx, q, `UPDATE bookings SET refund_requested_at = ? WHERE id = ? AND refund_requested_at IS NULL`,
		Now(), bookingID)
	return err
}

// Refund is a refund of a payment.
type Refund struct {
	ID        string    `db:"id"`
	PaymentID string    `db:"payment_id"`
	Amount    int64     `db:"amount"`
	Currency  string    `db:"currency"`
	Status    string    `db:"status"`
	Reason    string    `db:"reason"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// refundRank orders refund statuses so a late "pending" never undoes a
// final status.
func refundRank(s string) int {
	switch s {
	case "succeeded", "failed", "canceled":
		return 2
	case "requires_action":
		return 1
	}
	return 0
}

// UpsertRefund writes a refund, keeping the higher-ranked status.
func UpsertRefund(ctx context.Context, q Queryer, r Refund) error {
	now := Now()
	var cur Refund
	err := Get(ctx, q, &cur, `SELECT id, payment_id, amount, currency, status, reason, created_at, updated_at FROM refunds WHERE id = ?`, r.ID)
	switch {
	case isNotFound(err):
		_, err = Exec(ctx, q, `INSERT INTO refunds (id, payment_id, amount, currency, status, reason, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, r.ID, r.PaymentID, r.Amount, r.Currency, r.Status, r.Reason, now, now)
	case err != nil:
	case refundRank(r.Status) >= refundRank(cur.Status) && r.Status != cur.Status:
		_, err = Exec(ctx, q, `UPDATE refunds SET status = ?, updated_at = ? WHERE id = ?`, r.Status, now, r.ID)
	}
	if err != nil {
		return fmt.Errorf("refund %s: %w", r.ID, err)
	}
	return nil
}

// ListRefunds returns a payment's refunds.
func ListRefunds(ctx context.Context, q Queryer, paymentID string) ([]Refund, error) {
	var rs []Refund
	err := Select(ctx, q, &rs, `SELECT id, payment_id, amount, currency, status, reason, created_at, updated_at
		FROM refunds WHERE payment_id = ? ORDER BY created_at, id`, paymentID)
	return rs, err
}

// ErrNoRows reports whether err is the store's "not found".
func ErrNoRows(err error) bool { return portal.ErrorCode(err) == portal.ENOTFOUND }
