package store

import (
	"context"
	"fmt"
	"time"
)

// Dispute is a charge dispute.
type Dispute struct {
	ID              string     `db:"id"`
	BookingID       *string    `db:"booking_id"`
	PaymentID       *string    `db:"payment_id"`
	ChargeID        string     `db:"charge_id"`
	Amount          int64      `db:"amount"`
	Currency        string     `db:"currency"`
	Reason          string     `db:"reason"`
	Status          string     `db:"status"`
	FundsWithdrawn  bool       `db:"funds_withdrawn"`
	FundsReinstated bool       `db:"funds_reinstated"`
	LastEventAt     *time.Time `db:"last_event_at"`
	CreatedAt       time.Time  `db:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at"`
	ClosedAt        *time.Time `db:"closed_at"`
}

// DisputeClosed reports whether a dispute status is final.
func DisputeClosed(status string) bool {
	switch status {
	case "won", "lost", "warning_closed":
		return true
	}
	return false
}

const disputeColumns = `id, booking_id, payment_id, charge_id, amount, currency, reason, status, funds_withdrawn,
	funds_reinstated, last_event_at, created_at, updated_at, closed_at`

// GetDispute returns a dispute; ENOTFOUND if absent.
func GetDispute(ctx context.Context, q Queryer, id string) (*Dispute, error) {
	var d Dispute
	if err := Get(ctx, q, &d, `SELECT `+disputeColumns+` FROM disputes WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get dispute %s: %w", id, err)
	}
	return &d, nil
}

// SaveDispute inserts or overwrites a dispute.
func SaveDispute(ctx context.Context, q Queryer, d *Dispute) error {
	now := Now()
	if d.CreatedAt.IsZero() {
		d.CreatedAt = now
	}
	d.UpdatedAt = now
	_, err := Exec(ctx, q, `INSERT INTO disputes (`+disputeColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET booking_id = excluded.booking_id, payment_id = excluded.payment_id,
		charge_id = excluded.charge_id, amount = excluded.amount, currency = excluded.currency, reason = excluded.reason,
		status = excluded.status, funds_withdrawn = excluded.funds_withdrawn, funds_reinstated = excluded.funds_reinstated,
		last_event_at = excluded.last_event_at, updated_at = excluded.updated_at, closed_at = excluded.closed_at`,
		d.ID, d.BookingID, d.PaymentID, d.ChargeID, d.Amount, d.Currency, d.Reason, d.Status, d.FundsWithdrawn,
		d.FundsReinstated, d.LastEventAt, d.CreatedAt, d.UpdatedAt, d.ClosedAt)
	if err != nil {
		return fmt.Errorf("save dispute %s: %w", d.ID, err)
	}
	return nil
}

// Payout is a payout to an owner's bank account (Connect).
type Payout struct {
	ID              string     `db:"id"`
	OwnerID         *string    `db:"owner_id"`
	StripeAccountID string     `db:"stripe_account_id"`
	Amount          int64      `db:"amount"`
	Currency        string     `db:"currency"`
	Status          string     `db:"status"`
	FailureCode     string     `db:"failure_code"`
	ArrivalDate     *time.Time `db:"arrival_date"`
	LastEventAt     *time.Time `db:"last_event_at"`
	CreatedAt       time.Time  `db:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at"`
}

const payoutColumns = `id, owner_id, stripe_account_id, amount, currency, status, failure_code, arrival_date,
	last_event_at, created_at, updated_at`

// GetPayout returns a payout; ENOTFOUND if absent.
func GetPayout(ctx context.Context, q Queryer, id string) (*Payout, error) {
	var p Payout
	if err := Get(ctx, q, &p, `SELECT `+payoutColumns+` FROM payouts WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get payout %s: %w", id, err)
	}
	return &p, nil
}

// SavePayout inserts or overwrites a payout.
func SavePayout(ctx context.Context, q Queryer, p *Payout) error {
	now := Now()
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now
	}
	p.UpdatedAt = now
	_, err := Exec(ctx, q, `INSERT INTO payouts (`+payoutColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET owner_id = excluded.owner_id, stripe_account_id = excluded.stripe_account_id,
		amount = excluded.amount, currency = excluded.currency, status = excluded.status, failure_code = excluded.failure_code,
		arrival_date = excluded.arrival_date, last_event_at = excluded.last_event_at, updated_at = excluded.updated_at`,
		p.ID, p.OwnerID, p.StripeAccountID, p.Amount, p.Currency, p.Status, p.FailureCode, p.ArrivalDate,
		p.LastEventAt, p.CreatedAt, p.UpdatedAt)
	if err != nil {
		return fmt.Errorf("save payout %s: %w", p.ID, err)
	}
	return nil
}

// Transfer is a transfer of a booking's money to its owner's account.
type Transfer struct {
	ID             string     `db:"id"`
	BookingID      *string    `db:"booking_id"`
	OwnerID        *string    `db:"owner_id"`
	Destination    string     `db:"destination"`
	Amount         int64      `db:"amount"`
	AmountReversed int64      `db:"amount_reversed"`
	Currency       string     `db:"currency"`
	Reversed       bool       `db:"reversed"`
	LastEventAt    *time.Time `db:"last_event_at"`
	CreatedAt      time.Time  `db:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at"`
}

const transferColumns = `id, booking_id, owner_id, destination, amount, amount_reversed, currency, reversed,
	last_event_at, created_at, updated_at`

// GetTransfer returns a transfer; ENOTFOUND if absent.
func GetTransfer(ctx context.Context, q Queryer, id string) (*Transfer, error) {
	var t Transfer
	if err := Get(ctx, q, &t, `SELECT `+transferColumns+` FROM transfers WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get transfer %s: %w", id, err)
	}
	return &t, nil
}

// SaveTransfer inserts or overwrites a transfer.
func SaveTransfer(ctx context.Context, q Queryer, t *Transfer) error {
	now := Now()
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	t.UpdatedAt = now
	_, err := Exec(ctx, q, `INSERT INTO transfers (`+transferColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET booking_id = excluded.booking_id, owner_id = excluded.owner_id,
		destination = excluded.destination, amount = excluded.amount, amount_reversed = excluded.amount_reversed,
		currency = excluded.currency, reversed = excluded.reversed, last_event_at = excluded.last_event_at,
		updated_at = excluded.updated_at`,
		t.ID, t.BookingID, t.OwnerID, t.Destination, t.Amount, t.AmountReversed, t.Currency, t.Reversed,
		t.LastEventAt, t.CreatedAt, t.UpdatedAt)
	if err != nil {
		return fmt.Errorf("save transfer %s: %w", t.ID, err)
	}
	return nil
}

// BookingExists reports whether a booking exists.
func BookingExists(ctx context.Context, q Queryer, id string) (bool, error) {
	var n int
	if err := Get(ctx, q, &n, `SELECT count(*) FROM bookings WHERE id = ?`, id); err != nil {
		return false, err
	}
	return n > 0, nil
}

// UserIDByStripeAccount returns the owner whose Connect account this is; ""
// if none.
func UserIDByStripeAccount(ctx context.Context, q Queryer, accountID string) (string, error) {
	return userIDWhere(ctx, q, `stripe_account_id = ?`, accountID)
}

// UserIDByStripeCustomer returns the user whose Stripe customer this is; ""
// if none.
func UserIDByStripeCustomer(ctx context.Context, q Queryer, customerID string) (string, error) {
	return userIDWhere(ctx, q, `stripe_customer_id = ?`, customerID)
}

func userIDWhere(ctx context.Context, q Queryer, where string, arg string) (string, error) {
	if arg == "" {
		return "", nil
	}
	var id string
	err := Get(ctx, q, &id, `SELECT id FROM users WHERE `+where, arg)
	if isNotFound(err) {
		return "", nil
	}
	return id, err
}

// SetConnectStatus records an owner's Connect capabilities.
func SetConnectStatus(ctx context.Context, q Queryer, userID string, chargesEnabled, payoutsEnabled bool) (changed bool, err error) {
	n, err := Exec(ctx, q, `UPDATE users SET charges_enabled = ?, payouts_enabled = ?, updated_at = ?
		WHERE id = ? AND (charges_enabled <> ? OR payouts_enabled <> ?)`,
		chargesEnabled, payoutsEnabled, Now(), userID, chargesEnabled, payoutsEnabled)
	return n > 0, err
}

// Subscription is an owner's plan as the users row keeps it.
type Subscription struct {
	ID     *string `db:"subscription_id"`
	Status *string `db:"subscription_status"`
	Plan   *string `db:"subscription_plan"`
}

// GetSubscription returns a user's subscription columns.
func GetSubscription(ctx context.Context, q Queryer, userID string) (Subscription, error) {
	var s Subscription
	err := Get(ctx, q, &s, `SELECT subscription_id, subscription_status, subscription_plan FROM users WHERE id = ?`, userID)
	return s, err
}

// SetSubscription records a user's subscription.
func SetSubscription(ctx context.Context, q Queryer, userID, subscriptionID, status, plan string) error {
	_, err := Exec(ctx, q, `UPDATE users SET subscription_id = ?, subscription_status = ?, subscription_plan = ?, updated_at = ?
		WHERE id = ?`, subscriptionID, status, plan, Now(), userID)
	return err
}
