package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/store"
)

// lockObject serializes the events of one Stripe object that has no
// booking to lock (payouts, transfers, accounts, subscriptions) on
// PostgreSQL; SQLite's write transactions are serialized already.
func (a *applier) lockObject(ctx context.Context, id string) error {
	if a.w.deps.DB.Engine != store.Postgres {
		return nil
	}
	_, err := a.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "stripe:"+id)
	return store.Translate(err)
}

// newer reports whether the event is at least as new as last.
func (a *applier) newer(last *time.Time) bool { return last == nil || !a.created().Before(*last) }

func (a *applier) stamp(last **time.Time) {
	if *last == nil || a.created().After(**last) {
		at := a.created()
		*last = &at
	}
}

// dispute applies the charge.dispute.* family. The dispute row takes the
// newest status (a closed dispute never reopens: won, lost and
// warning_closed are final), funds flags only ever turn on, and the
// booking is then brought to what the dispute's status says: open →
// disputed, won → back where it was, lost → refunded (through disputed if
// the "created" event has not arrived yet).
func (a *applier) dispute(ctx context.Context) (string, string, error) {
	o := a.obj
	b, park, err := a.lockPaymentBooking(ctx, o.BookingID(), string(o.PaymentIntent), string(o.Charge))
	if err != nil {
		return "", "", err
	}
	if err := a.lockObject(ctx, o.ID); err != nil {
		return "", "", err
	}
	d, err := store.GetDispute(ctx, a.tx, o.ID)
	if store.ErrNoRows(err) {
		d, err = &store.Dispute{ID: o.ID}, nil
		a.changed = true
	}
	if err != nil {
		return "", "", err
	}
	if b != nil && d.BookingID == nil {
		d.BookingID = &b.ID
		if p, err := store.GetPaymentByBooking(ctx, a.tx, b.ID); err == nil {
			d.PaymentID = &p.ID
		}
	}
	stale := ""
	switch {
	case store.DisputeClosed(d.Status) && o.Status != d.Status:
		stale = "the dispute is closed (" + d.Status + ")"
	case !a.newer(d.LastEventAt):
		stale = "a newer event updated the dispute"
	}
	if stale == "" {
		if d.Status != o.Status || d.Amount != o.Amount || d.Reason != o.Reason {
			a.changed = true
		}
		d.ChargeID, d.Amount, d.Currency, d.Reason, d.Status = string(o.Charge), o.Amount, o.Currency, o.Reason, o.Status
		if store.DisputeClosed(d.Status) && d.ClosedAt == nil {
			at := a.created()
			d.ClosedAt = &at
		}
		a.stamp(&d.LastEventAt)
	}
	switch a.ev.Type {
	case "charge.dispute.funds_withdrawn":
		if !d.FundsWithdrawn {
			d.FundsWithdrawn, a.changed = true, true
		}
	case "charge.dispute.funds_reinstated":
		if !d.FundsReinstated {
			d.FundsReinstated, a.changed = true, true
		}
	}
	if d.ChargeID == "" {
		d.ChargeID = string(o.Charge)
	}
	if d.Currency == "" {
		d.Currency = o.Currency
	}
	if err := store.SaveDispute(ctx, a.tx, d); err != nil {
		return "", "", err
	}
	if b == nil {
		return store.OutcomeUnknownBooking, park, nil
	}
	if err := a.disputeBooking(ctx, b, d.Status); err != nil {
		return "", "", err
	}
	outcome, detail := a.result(stale)
	return outcome, detail, nil
}

// disputeBooking brings a booking to what its dispute's status says.
func (a *applier) disputeBooking(ctx context.Context, b *store.Booking, status string) error {
	switch status {
	case "won", "warning_closed":
		if b.Status == booking.Disputed {
			return a.move(ctx, b, booking.DisputeWon)
		}
	case "lost":
		if b.Status.Paid() && b.Status != booking.Disputed {
			if err := a.move(ctx, b, booking.DisputeOpened); err != nil {
				return err
			}
		}
		if b.Status == booking.Disputed {
			return a.move(ctx, b, booking.DisputeLost)
		}
	default: // warning_needs_response, warning_under_review, needs_response, under_review
		if b.Status.Paid() && b.Status != booking.Disputed {
			return a.move(ctx, b, booking.DisputeOpened)
		}
	}
	return nil
}

// payoutRank orders payout statuses: paid can still turn failed (Stripe
// reports a failure after "paid" when the bank returns the money).
func payoutRank(s string) int {
	switch s {
	case "pending":
		return 0
	case "in_transit":
		return 1
	case "paid":
		return 2
	case "failed", "canceled":
		return 3
	}
	return 0
}

// payout applies payout.paid|failed|canceled to the owner's payout.
func (a *applier) payout(ctx context.Context) (string, string, error) {
	o := a.obj
	if err := a.lockObject(ctx, o.ID); err != nil {
		return "", "", err
	}
	account := a.env.Account
	p, err := store.GetPayout(ctx, a.tx, o.ID)
	if store.ErrNoRows(err) {
		p, err = &store.Payout{ID: o.ID, StripeAccountID: account}, nil
		a.changed = true
	}
	if err != nil {
		return "", "", err
	}
	owner, err := store.UserIDByStripeAccount(ctx, a.tx, account)
	if err != nil {
		return "", "", err
	}
	if owner != "" && p.OwnerID == nil {
		p.OwnerID, a.changed = &owner, true
	}
	stale := ""
	switch {
	case payoutRank(o.Status) < payoutRank(p.Status):
		stale = "payout is " + p.Status
	case payoutRank(o.Status) == payoutRank(p.Status) && o.Status != p.Status && !a.newer(p.LastEventAt):
		stale = "a newer event updated the payout"
	}
	if stale == "" {
		if p.Status != o.Status {
			a.changed = true
		}
		failedNow := o.Status == "failed" && p.Status != "failed"
		p.Amount, p.Currency, p.Status, p.FailureCode = o.Amount, o.Currency, o.Status, o.FailureCode
		if o.ArrivalDate > 0 {
			at := time.Unix(o.ArrivalDate, 0).UTC()
			p.ArrivalDate = &at
		}
		a.stamp(&p.LastEventAt)
		if failedNow && p.OwnerID != nil {
			// The owner (and the operators) are told their money did not arrive.
			msgs, err := store.RecordPayoutFailed(ctx, a.tx, "stripe:"+a.ev.ID, store.PayoutFacts{ID: p.ID, OwnerID: *p.OwnerID,
				StripeAccountID: account, Amount: p.Amount, Currency: p.Currency, FailureCode: p.FailureCode, ArrivalDate: p.ArrivalDate})
			if err != nil {
				return "", "", err
			}
			a.msgs = append(a.msgs, msgs...)
		}
	}
	if err := store.SavePayout(ctx, a.tx, p); err != nil {
		return "", "", err
	}
	if p.OwnerID == nil {
		return store.OutcomeUnknownObject, fmt.Sprintf("payout %s of account %q: no owner has it", o.ID, account), nil
	}
	outcome, detail := a.result(stale)
	return outcome, detail, nil
}

// transfer applies transfer.created|reversed: reversals only grow.
func (a *applier) transfer(ctx context.Context) (string, string, error) {
	o := a.obj
	if err := a.lockObject(ctx, o.ID); err != nil {
		return "", "", err
	}
	t, err := store.GetTransfer(ctx, a.tx, o.ID)
	if store.ErrNoRows(err) {
		t, err = &store.Transfer{ID: o.ID, Amount: o.Amount, Currency: o.Currency}, nil
		a.changed = true
	}
	if err != nil {
		return "", "", err
	}
	t.Destination = string(o.Destination)
	if owner, err := store.UserIDByStripeAccount(ctx, a.tx, t.Destination); err != nil {
		return "", "", err
	} else if owner != "" {
		t.OwnerID = &owner
	}
	if id := o.BookingID(); id != "" && t.BookingID == nil {
		ok, err := store.BookingExists(ctx, a.tx, id)
		if err != nil {
			return "", "", err
		}
		if ok {
			t.BookingID = &id
		}
	}
	if o.AmountReversed > t.AmountReversed {
		t.AmountReversed, a.changed = o.AmountReversed, true
	}
	if (o.Reversed || (t.Amount > 0 && t.AmountReversed >= t.Amount)) && !t.Reversed {
		t.Reversed, a.changed = true, true
	}
	a.stamp(&t.LastEventAt)
	if err := store.SaveTransfer(ctx, a.tx, t); err != nil {
		return "", "", err
	}
	if t.OwnerID == nil && t.BookingID == nil {
		return store.OutcomeUnknownObject, "transfer " + o.ID + " names no known owner or booking", nil
	}
	outcome, detail := a.result("")
	return outcome, detail, nil
}

// account applies account.updated: the owner's Connect capabilities. The
// newest applied account.updated of the account wins (stripe_events keeps
// the order: there is no column for it on users).
func (a *applier) account(ctx context.Context) (string, string, error) {
	o := a.obj
	if err := a.lockObject(ctx, o.ID); err != nil {
		return "", "", err
	}
	owner, err := store.UserIDByStripeAccount(ctx, a.tx, o.ID)
	if err != nil {
		return "", "", err
	}
	if owner == "" {
		return store.OutcomeUnknownObject, "no owner has account " + o.ID, nil
	}
	newest, err := store.NewestAppliedEventAt(ctx, a.tx, o.ID, []string{"account.updated"})
	if err != nil {
		return "", "", err
	}
	if a.created().Before(newest) {
		return store.OutcomeStale, "a newer account.updated was applied", nil
	}
	changed, err := store.SetConnectStatus(ctx, a.tx, owner, o.ChargesEnabled, o.PayoutsEnabled)
	if err != nil {
		return "", "", err
	}
	if changed && (!o.ChargesEnabled || !o.PayoutsEnabled) {
		// The owner (and the operators) are told the account is restricted.
		msgs, err := store.RecordAccountRestricted(ctx, a.tx, "stripe:"+a.ev.ID, owner, o.ID, o.ChargesEnabled, o.PayoutsEnabled)
		if err != nil {
			return "", "", err
		}
		a.msgs = append(a.msgs, msgs...)
	}
	// Applied even when unchanged: it is the newest word on the account, and
	// older events must now compare against it.
	return store.OutcomeApplied, "", nil
}

var subscriptionTypes = []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}

// subscription applies customer.subscription.*: the owner's plan. The
// newest applied event of the subscription wins; an event of a
// subscription that is not the user's current one may not end the current
// one (a late "deleted" of an old plan after an upgrade).
func (a *applier) subscription(ctx context.Context) (string, string, error) {
	o := a.obj
	customer := string(o.Customer)
	if err := a.lockObject(ctx, customer); err != nil {
		return "", "", err
	}
	user, err := store.UserIDByStripeCustomer(ctx, a.tx, customer)
	if err != nil {
		return "", "", err
	}
	if user == "" {
		return store.OutcomeUnknownObject, "no user has customer " + customer, nil
	}
	newest, err := store.NewestAppliedEventAt(ctx, a.tx, o.ID, subscriptionTypes)
	if err != nil {
		return "", "", err
	}
	if a.created().Before(newest) {
		return store.OutcomeStale, "a newer event of the subscription was applied", nil
	}
	status := o.Status
	if a.ev.Type == "customer.subscription.deleted" {
		status = "canceled"
	}
	cur, err := store.GetSubscription(ctx, a.tx, user)
	if err != nil {
		return "", "", err
	}
	if cur.ID != nil && *cur.ID != o.ID && subscriptionEnded(status) && cur.Status != nil && !subscriptionEnded(*cur.Status) {
		return store.OutcomeStale, "subscription " + o.ID + " is not the user's current one", nil
	}
	if err := store.SetSubscription(ctx, a.tx, user, o.ID, status, o.PlanID()); err != nil {
		return "", "", err
	}
	return store.OutcomeApplied, "", nil
}

func subscriptionEnded(status string) bool {
	return status == "canceled" || status == "incomplete_expired"
}
