package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// handleStripeEvent applies one stored Stripe event (stripe:event).
func (w *Worker) handleStripeEvent(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.StripeEvent](t)
	if err != nil {
		return err
	}
	return w.ProcessStripeEvent(ctx, p.EventID)
}

// ProcessStripeEvent applies a stored event in one transaction: it locks the
// event row, dispatches by type, applies the effects (payments, bookings
// through the state machine, disputes, payouts, transfers, users), and marks
// the event processed with its outcome. An event already processed is a
// no-op, so a duplicate task, a redelivery or a reconciliation racing a
// webhook applies nothing twice. Only transient failures return an error
// (the task is retried); everything that would fail the same way again is
// an outcome (unknown_booking, stale, ...), never an endless retry.
func (w *Worker) ProcessStripeEvent(ctx context.Context, eventID string) error {
	var msgs []tasks.Message
	var outcome, detail string
	err := w.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		msgs, outcome, detail = nil, "", ""
		ev, err := store.LockStripeEvent(ctx, tx, w.deps.DB.Engine, eventID)
		if err != nil {
			return err
		}
		if ev.ProcessedAt != nil {
			outcome = "already_processed"
			return nil
		}
		a := &applier{w: w, tx: tx, ev: ev}
		outcome, detail, err = a.apply(ctx)
		if err != nil {
			return err
		}
		msgs = a.msgs
		return store.MarkStripeEvent(ctx, tx, ev.ID, outcome, detail)
	})
	if err != nil {
		if portal.ErrorCode(err) == portal.ENOTFOUND {
			// The event row is written in the transaction of its outbox row,
			// so it was purged since: nothing to do.
			w.log.WarnContext(ctx, "stripe event not found", "event_id", eventID)
			return nil
		}
		if cErr := store.CountStripeEventAttempt(context.WithoutCancel(ctx), w.deps.DB, eventID, err.Error()); cErr != nil {
			w.log.WarnContext(ctx, "could not count the event's failed attempt", "event_id", eventID, "err", cErr)
		}
		return fmt.Errorf("stripe event %s: %w", eventID, err)
	}
	if len(msgs) > 0 {
		w.deps.Relay.Publish(ctx, msgs...)
	}
	w.log.DebugContext(ctx, "stripe event processed", "event_id", eventID, "outcome", outcome, "detail", detail)
	return nil
}

// stripeEventGrace is how old an unprocessed event must be before the
// sweeper enqueues it again.
const stripeEventGrace = 2 * time.Minute

// sweepStripeEvents enqueues stripe:event again for events still
// unprocessed after a grace period, whose task was lost after its outbox row
// was relayed (a flushed or embedded Redis that restarted). A task still in
// Redis keeps its ID, so this enqueues nothing twice.
func (w *Worker) sweepStripeEvents(ctx context.Context) error {
	ids, err := store.UnprocessedStripeEvents(ctx, w.deps.DB, time.Now().Add(-stripeEventGrace), 1000)
	if err != nil {
		return fmt.Errorf("sweep stripe events: %w", err)
	}
	msgs := make([]tasks.Message, 0, len(ids))
	for _, id := range ids {
		m, err := tasks.Encode(tasks.StripeEvent{EventID: id})
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		w.deps.Relay.Publish(ctx, msgs...)
	}
	return nil
}

// applier applies one event inside its transaction.
type applier struct {
	w    *Worker
	tx   *sqlx.Tx
	ev   *store.StripeEvent
	obj  payments.Object
	env  payments.Event
	msgs []tasks.Message
	// changed is set by every write that changed our state.
	changed bool
	// payment is the payment the event resolved to, if any.
	payment *store.Payment
	// nested is set on the applier of a parked event drained by another.
	nested bool
}

// result is what one family handler decided.
func (a *applier) result(staleDetail string) (string, string) {
	if a.changed {
		return store.OutcomeApplied, ""
	}
	if staleDetail != "" {
		return store.OutcomeStale, staleDetail
	}
	return store.OutcomeDuplicateEffect, ""
}

func (a *applier) apply(ctx context.Context) (outcome, detail string, err error) {
	if a.ev.APIVersion != payments.APIVersion {
		return store.OutcomeUnsupportedAPIVersion, "api_version " + a.ev.APIVersion, nil
	}
	env, err := payments.ParseEvent([]byte(a.ev.Payload))
	if err != nil {
		return store.OutcomeIgnored, err.Error(), nil
	}
	obj, err := payments.ParseObject(env.Object)
	if err != nil {
		return store.OutcomeIgnored, err.Error(), nil
	}
	a.env, a.obj = env, obj
	outcome, detail, err = a.dispatch(ctx)
	if err != nil {
		return "", "", err
	}
	if outcome != store.OutcomeUnknownBooking {
		if err := a.drainParked(ctx); err != nil {
			return "", "", err
		}
	}
	return outcome, detail, nil
}

func (a *applier) dispatch(ctx context.Context) (outcome, detail string, err error) {
	switch a.ev.Type {
	case "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "payment_intent.processing":
		return a.paymentIntent(ctx)
	case "charge.succeeded", "charge.failed", "charge.refunded":
		return a.charge(ctx)
	case "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
		"charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated":
		return a.dispute(ctx)
	case "payout.paid", "payout.failed", "payout.canceled":
		return a.payout(ctx)
	case "transfer.created", "transfer.reversed":
		return a.transfer(ctx)
	case "account.updated":
		return a.account(ctx)
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		return a.subscription(ctx)
	}
	return store.OutcomeIgnored, "type " + a.ev.Type + " is not handled", nil
}

// source is the booking history's record of this event.
func (a *applier) source() store.Source {
	kind := store.SourceStripe
	if a.ev.Source == store.EventSourceReconcile {
		kind = store.SourceReconcile
	}
	return store.Source{Kind: kind, Ref: a.ev.ID}
}

// created is the event's creation time: what orders events of one object.
func (a *applier) created() time.Time { return a.ev.EventCreated.UTC() }

// lockPaymentBooking finds the booking an event's payment object belongs to
// (metadata.booking_id, else the stored payment of its PaymentIntent or
// charge) and locks it. A nil booking means the event names none we know
// yet; park is then the outcome detail that parks the event until its
// PaymentIntent or charge becomes known (see drainParked).
//
// The PaymentIntent and charge are locked first (PostgreSQL advisory locks,
// always in that order), so an event that parks itself and the event that
// makes its payment known never miss each other.
func (a *applier) lockPaymentBooking(ctx context.Context, bookingID, intentID, chargeID string) (b *store.Booking, park string, err error) {
	q := a.tx
	for _, ref := range []string{intentID, chargeID} {
		if ref != "" {
			if err := a.lockObject(ctx, ref); err != nil {
				return nil, "", err
			}
		}
	}
	park = parkedOn(intentID, chargeID)
	if bookingID == "" && intentID != "" {
		if p, err := store.GetPaymentByIntent(ctx, q, intentID); err == nil {
			bookingID = p.BookingID
		} else if !store.ErrNoRows(err) {
			return nil, "", err
		}
	}
	if bookingID == "" && chargeID != "" {
		if p, err := store.GetPaymentByCharge(ctx, q, chargeID); err == nil {
			bookingID = p.BookingID
		} else if !store.ErrNoRows(err) {
			return nil, "", err
		}
	}
	if bookingID == "" {
		return nil, park, nil
	}
	b, err = store.LockBooking(ctx, q, a.w.deps.DB.Engine, bookingID)
	if store.ErrNoRows(err) {
		return nil, park, nil
	}
	return b, "", err
}

// parkedOn is the outcome detail of an event waiting for its PaymentIntent
// (or charge) to be linked to a booking.
func parkedOn(intentID, chargeID string) string {
	switch {
	case intentID != "":
		return "awaiting payment_intent " + intentID
	case chargeID != "":
		return "awaiting charge " + chargeID
	}
	return "names no booking"
}

// drainParked applies, in this transaction, the events that were parked
// as unknown_booking waiting for this payment's PaymentIntent or charge:
// a dispute or refund delivered before the payment it belongs to. They keep
// their own IDs as history source.
func (a *applier) drainParked(ctx context.Context) error {
	if a.nested || a.payment == nil {
		return nil
	}
	var keys []string
	if a.payment.PaymentIntentID != nil {
		keys = append(keys, parkedOn(*a.payment.PaymentIntentID, ""))
	}
	if a.payment.ChargeID != nil {
		keys = append(keys, parkedOn("", *a.payment.ChargeID))
	}
	if len(keys) == 0 {
		return nil
	}
	ids, err := store.ParkedStripeEvents(ctx, a.tx, keys)
	if err != nil {
		return err
	}
	for _, id := range ids {
		ev, err := store.LockStripeEvent(ctx, a.tx, a.w.deps.DB.Engine, id)
		if err != nil {
			return err
		}
		if ev.Outcome != store.OutcomeUnknownBooking {
			continue // drained meanwhile by another transaction
		}
		sub := &applier{w: a.w, tx: a.tx, ev: ev, nested: true}
		outcome, detail, err := sub.apply(ctx)
		if err != nil {
			return err
		}
		if outcome == store.OutcomeUnknownBooking {
			continue
		}
		if err := store.MarkStripeEvent(ctx, a.tx, ev.ID, outcome, detail); err != nil {
			return err
		}
		a.msgs = append(a.msgs, sub.msgs...)
	}
	return nil
}

// paymentStatusOf maps a payment event to the payment status it reports.
var paymentStatusOf = map[string]string{
	"payment_intent.succeeded":      store.PaymentSucceeded,
	"payment_intent.payment_failed": store.PaymentFailed,
	"payment_intent.canceled":       store.PaymentCanceled,
	"payment_intent.processing":     store.PaymentProcessing,
	"charge.succeeded":              store.PaymentSucceeded,
	"charge.failed":                 store.PaymentFailed,
}

func (a *applier) paymentIntent(ctx context.Context) (string, string, error) {
	o := a.obj
	b, park, err := a.lockPaymentBooking(ctx, o.BookingID(), o.ID, string(o.LatestCharge))
	if err != nil || b == nil {
		return store.OutcomeUnknownBooking, park, err
	}
	p, err := store.EnsurePayment(ctx, a.tx, b, o.ID)
	if err != nil {
		return "", "", err
	}
	a.payment = p
	if p.PaymentIntentID != nil && *p.PaymentIntentID != o.ID {
		return store.OutcomeIgnored, fmt.Sprintf("payment intent %s is not the booking's (%s)", o.ID, *p.PaymentIntentID), nil
	}
	if lc := string(o.LatestCharge); lc != "" && p.ChargeID == nil {
		p.ChargeID = &lc
		a.changed = true
	}
	received := o.AmountReceived
	return a.paymentStatus(ctx, b, p, paymentStatusOf[a.ev.Type], received)
}

// paymentStatus moves a payment to status unless that would move it
// backwards, then applies what the move means for the booking.
func (a *applier) paymentStatus(ctx context.Context, b *store.Booking, p *store.Payment, status string, received int64) (string, string, error) {
	stale := ""
	switch cur := p.Status; {
	case store.PaymentRank(status) < store.PaymentRank(cur):
		stale = fmt.Sprintf("payment is %s; %s is older news", cur, status)
	case store.PaymentRank(status) == store.PaymentRank(cur) && status != cur &&
		p.LastEventAt != nil && a.created().Before(*p.LastEventAt):
		stale = fmt.Sprintf("payment moved to %s by a newer event", cur)
	}
	if stale != "" {
		if a.changed {
			if err := store.SavePayment(ctx, a.tx, p); err != nil {
				return "", "", err
			}
		}
		outcome, detail := a.result(stale)
		return outcome, detail, nil
	}
	if status != p.Status {
		if status == store.PaymentFailed {
			// The renter is told (the payment may be retried).
			reason := a.obj.FailureCode                // charge.failed
			if e := a.obj.LastPaymentError; e != nil { // payment_intent.payment_failed
				reason = e.Code
			}
			msgs, err := store.RecordPaymentFailed(ctx, a.tx, b, "stripe:"+a.ev.ID, reason)
			if err != nil {
				return "", "", err
			}
			a.msgs = append(a.msgs, msgs...)
		}
		p.Status = status
		a.changed = true
	}
	if received > p.AmountReceived {
		p.AmountReceived = received
		a.changed = true
	}
	if status == store.PaymentSucceeded && p.AmountReceived == 0 {
		p.AmountReceived = p.Amount
	}
	if p.LastEventAt == nil || a.created().After(*p.LastEventAt) {
		at := a.created()
		p.LastEventAt = &at
	}
	if err := store.SavePayment(ctx, a.tx, p); err != nil {
		return "", "", err
	}
	switch status {
	case store.PaymentSucceeded:
		return a.paymentArrived(ctx, b)
	case store.PaymentCanceled:
		if b.Status == booking.PendingPayment {
			if err := a.move(ctx, b, booking.Cancel); err != nil {
				return "", "", err
			}
		}
	}
	outcome, detail := a.result("")
	return outcome, detail, nil
}

// paymentArrived confirms the booking the money is for. Decisions (see
// booking.table): a pending booking is confirmed; an expired one is
// re-confirmed if its dates are still free, and refunded if they were taken
// meanwhile; a cancelled one is refunded (the cancellation stands); a
// booking already paid or refunded is left alone.
func (a *applier) paymentArrived(ctx context.Context, b *store.Booking) (string, string, error) {
	switch b.Status {
	case booking.PendingPayment:
		if err := a.move(ctx, b, booking.PaymentSucceeded); err != nil {
			return "", "", err
		}
	case booking.Expired:
		err := savepoint(ctx, a.tx, "reconfirm", func() error { return a.move(ctx, b, booking.PaymentSucceeded) })
		if portal.ErrorCode(err) == portal.EOVERLAP {
			if err := a.requestRefund(ctx, b); err != nil {
				return "", "", err
			}
			return store.OutcomeRefundRequested, "paid after expiry; the dates were taken meanwhile", nil
		}
		if err != nil {
			return "", "", err
		}
	case booking.Cancelled:
		if err := a.requestRefund(ctx, b); err != nil {
			return "", "", err
		}
		return store.OutcomeRefundRequested, "paid after cancellation", nil
	}
	outcome, detail := a.result("")
	return outcome, detail, nil
}

// move applies a booking event with this event as its source.
func (a *applier) move(ctx context.Context, b *store.Booking, ev booking.Event) error {
	nb, err := store.ApplyBookingEvent(ctx, a.tx, b.ID, ev, a.source())
	if err != nil {
		return err
	}
	a.msgs = append(a.msgs, nb.Outbox...) // the transition's notify tasks
	*b = *nb
	a.changed = true
	return nil
}

// moveIfLegal is move for effects that are fine to skip when the state
// machine says the booking is past them.
func (a *applier) moveIfLegal(ctx context.Context, b *store.Booking, ev booking.Event) error {
	before := booking.Status("")
	if b.BeforeDispute != nil {
		before = booking.Status(*b.BeforeDispute)
	}
	if _, err := booking.Next(b.Status, ev, before); err != nil {
		return nil
	}
	return a.move(ctx, b, ev)
}

// requestRefund enqueues booking:refund through the outbox, in the event's
// transaction.
func (a *applier) requestRefund(ctx context.Context, b *store.Booking) error {
	if err := store.MarkRefundRequested(ctx, a.tx, b.ID); err != nil {
		return err
	}
	msg, err := tasks.Encode(tasks.BookingRefund{BookingID: b.ID})
	if err != nil {
		return err
	}
	if err := store.AddOutbox(ctx, a.tx, store.OutboxMessage(msg)); err != nil {
		return err
	}
	a.msgs = append(a.msgs, msg)
	a.changed = true
	return nil
}

func (a *applier) charge(ctx context.Context) (string, string, error) {
	o := a.obj
	intentID := string(o.PaymentIntent)
	b, park, err := a.lockPaymentBooking(ctx, o.BookingID(), intentID, o.ID)
	if err != nil || b == nil {
		return store.OutcomeUnknownBooking, park, err
	}
	p, err := store.EnsurePayment(ctx, a.tx, b, intentID)
	if err != nil {
		return "", "", err
	}
	a.payment = p
	if intentID != "" && p.PaymentIntentID != nil && *p.PaymentIntentID != intentID {
		return store.OutcomeIgnored, fmt.Sprintf("charge of intent %s, not the booking's (%s)", intentID, *p.PaymentIntentID), nil
	}
	if p.ChargeID == nil {
		id := o.ID
		p.ChargeID = &id
		a.changed = true
	}
	if a.ev.Type != "charge.refunded" {
		received := int64(0)
		if o.Paid && a.ev.Type == "charge.succeeded" {
			received = o.Amount
		}
		return a.paymentStatus(ctx, b, p, paymentStatusOf[a.ev.Type], received)
	}
	return a.refunded(ctx, b, p)
}

// refunded applies charge.refunded: amounts only grow, so any order of
// partial refunds converges; a full refund refunds the booking.
func (a *applier) refunded(ctx context.Context, b *store.Booking, p *store.Payment) (string, string, error) {
	o := a.obj
	if o.Refunds != nil {
		for _, r := range o.Refunds.Data {
			if err := store.UpsertRefund(ctx, a.tx, store.Refund{ID: r.ID, PaymentID: p.ID, Amount: r.Amount,
				Currency: r.Currency, Status: r.Status, Reason: r.Reason}); err != nil {
				return "", "", err
			}
		}
	}
	if o.AmountRefunded > p.AmountRefunded {
		p.AmountRefunded = o.AmountRefunded
		a.changed = true
	}
	if o.Amount > p.AmountReceived && p.Status != store.PaymentSucceeded {
		// The refund is the first news of the payment (events out of order).
		p.AmountReceived = o.Amount
	}
	full := o.Refunded || (o.Amount > 0 && o.AmountRefunded >= o.Amount)
	if full && p.Status != store.PaymentRefunded {
		p.Status = store.PaymentRefunded
		a.changed = true
	}
	if p.LastEventAt == nil || a.created().After(*p.LastEventAt) {
		at := a.created()
		p.LastEventAt = &at
	}
	if err := store.SavePayment(ctx, a.tx, p); err != nil {
		return "", "", err
	}
	if full {
		if err := a.moveIfLegal(ctx, b, booking.RefundSucceeded); err != nil {
			return "", "", err
		}
	}
	outcome, detail := a.result("")
	return outcome, detail, nil
}

// savepoint runs fn so that its failure rolls back only its own writes
// (PostgreSQL aborts the whole transaction on an error otherwise).
func savepoint(ctx context.Context, tx *sqlx.Tx, name string, fn func() error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return store.Translate(err)
	}
	if err := fn(); err != nil {
		if _, rbErr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); rbErr != nil {
			return errors.Join(err, store.Translate(rbErr))
		}
		return err
	}
	_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name)
	return store.Translate(err)
}
