package worker

import (
	"context"
	"encoding/json"
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

// StripeAPI is what the worker needs from Stripe (payments.Client). Every
// method returns errors wrapping payments.ErrTemporary or
// payments.ErrRejected.
type StripeAPI interface {
	CreateIntent(ctx context.Context, bookingID string, amount int64, currency string) (payments.Intent, error)
	GetIntent(ctx context.Context, id string) (payments.Intent, error)
	Refund(ctx context.Context, paymentIntentID, bookingID string) (payments.Refund, error)
	ListRecentIntents(ctx context.Context, since time.Time) ([]payments.Intent, error)
	ListUndeliveredEvents(ctx context.Context, since time.Time) ([][]byte, error)
}

// stripeError gives a Stripe failure the code that decides its retry:
// rejected requests are permanent (archived for an operator), anything else
// is retried.
func stripeError(err error) error {
	if errors.Is(err, payments.ErrRejected) {
		return portal.WrapError(portal.EUNPROCESSABLE, err, "stripe rejected the request")
	}
	return portal.WrapError(portal.EUNAVAILABLE, err, "stripe unavailable")
}

// handlePaymentIntent creates a booking's PaymentIntent when the API could
// not (payment:intent). The idempotency key derived from the booking makes
// the API's attempt and every retry one intent.
func (w *Worker) handlePaymentIntent(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.PaymentIntent](t)
	if err != nil {
		return err
	}
	b, err := store.GetBooking(ctx, w.deps.DB, p.BookingID)
	if err != nil {
		return err
	}
	if b.Status != booking.PendingPayment {
		return nil
	}
	pay, err := store.EnsurePayment(ctx, w.deps.DB, b, "")
	if err != nil {
		return err
	}
	if pay.PaymentIntentID != nil && pay.ClientSecret != nil {
		return nil
	}
	if w.deps.Stripe == nil {
		// No Stripe key (development): the booking waits for a payment
		// webhook, e.g. from `rentalportal stripe-trigger`.
		w.log.InfoContext(ctx, "no Stripe key: booking waits for a payment webhook", "booking_id", b.ID)
		return nil
	}
	in, err := w.deps.Stripe.CreateIntent(ctx, b.ID, b.TotalAmount, b.Currency)
	if err != nil {
		return fmt.Errorf("booking %s: %w", b.ID, stripeError(err))
	}
	if err := store.SetPaymentIntent(ctx, w.deps.DB, pay.ID, in.ID, in.ClientSecret); err != nil {
		return err
	}
	w.log.InfoContext(ctx, "payment intent created", "booking_id", b.ID, "payment_intent_id", in.ID)
	return nil
}

// handleBookingRefund refunds a booking's payment through Stripe
// (booking:refund). The booking becomes refunded only when Stripe confirms:
// a refund that succeeds in the response, or the charge.refunded event.
func (w *Worker) handleBookingRefund(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.BookingRefund](t)
	if err != nil {
		return err
	}
	id, _ := asynq.GetTaskID(ctx)
	src := store.Source{Kind: store.SourceTask, Ref: id}
	b, err := store.GetBooking(ctx, w.deps.DB, p.BookingID)
	if err != nil {
		return err
	}
	switch b.Status {
	case booking.Cancelled, booking.Expired:
	default:
		// Refunded already, or a booking that holds its dates and keeps its
		// money (re-confirmed meanwhile): nothing to refund.
		w.log.InfoContext(ctx, "refund not needed", "booking_id", b.ID, "status", b.Status)
		return nil
	}
	pay, err := store.GetPaymentByBooking(ctx, w.deps.DB, b.ID)
	if store.ErrNoRows(err) {
		return nil // never paid
	} else if err != nil {
		return err
	}
	switch {
	case pay.Status == store.PaymentRefunded:
		return w.confirmRefund(ctx, b.ID, nil, src)
	case pay.Status == store.PaymentProcessing:
		return portal.Errorf(portal.EUNAVAILABLE, "payment of %s still processing: refund later", b.ID)
	case pay.Status != store.PaymentSucceeded || pay.PaymentIntentID == nil:
		return nil // no money to return
	}
	if w.deps.Stripe == nil {
		w.log.InfoContext(ctx, "no Stripe key: refund waits for a charge.refunded webhook", "booking_id", b.ID)
		return nil
	}
	r, err := w.deps.Stripe.Refund(ctx, *pay.PaymentIntentID, b.ID)
	if err != nil {
		return fmt.Errorf("refund booking %s: %w", b.ID, stripeError(err))
	}
	if r.Status != "succeeded" {
		// pending or requires_action: charge.refunded will finish it.
		return w.recordRefund(ctx, pay.ID, r)
	}
	return w.confirmRefund(ctx, b.ID, &r, src)
}

func (w *Worker) recordRefund(ctx context.Context, paymentID string, r payments.Refund) error {
	return store.UpsertRefund(ctx, w.deps.DB, store.Refund{ID: r.ID, PaymentID: paymentID, Amount: r.Amount,
		Currency: r.Currency, Status: r.Status, Reason: "requested_by_customer"})
}

// confirmRefund records a confirmed full refund and refunds the booking.
func (w *Worker) confirmRefund(ctx context.Context, bookingID string, r *payments.Refund, src store.Source) error {
	var msgs []tasks.Message
	err := w.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		msgs = nil
		b, err := store.LockBooking(ctx, tx, w.deps.DB.Engine, bookingID)
		if err != nil {
			return err
		}
		pay, err := store.GetPaymentByBooking(ctx, tx, bookingID)
		if err != nil {
			return err
		}
		if r != nil {
			if err := store.UpsertRefund(ctx, tx, store.Refund{ID: r.ID, PaymentID: pay.ID, Amount: r.Amount,
				Currency: r.Currency, Status: r.Status, Reason: "requested_by_customer"}); err != nil {
				return err
			}
			if amt := max(r.Amount, pay.AmountReceived); amt > pay.AmountRefunded {
				pay.AmountRefunded = amt
			}
			pay.Status = store.PaymentRefunded
			if err := store.SavePayment(ctx, tx, pay); err != nil {
				return err
			}
		}
		if _, err := booking.Next(b.Status, booking.RefundSucceeded, ""); err != nil {
			return nil
		}
		nb, err := store.ApplyBookingEvent(ctx, tx, b.ID, booking.RefundSucceeded, src)
		if err != nil {
			return err
		}
		msgs = nb.Outbox
		return nil
	})
	if err == nil && len(msgs) > 0 {
		w.deps.Relay.Publish(ctx, msgs...)
	}
	return err
}

// reconcileSynthPrefix starts the ID of an event reconciliation derives
// from a PaymentIntent's state.
const reconcileSynthPrefix = "reconcile_"

// handleReconcile repairs drift between Stripe and our payments
// (payments:reconcile): events Stripe failed to deliver are stored and
// applied like webhooks, and a PaymentIntent whose state we do not reflect
// becomes a synthetic event (source reconcile) applied through the same
// code path. Everything is stored before it is applied, so an operator sees
// what reconciliation did.
func (w *Worker) handleReconcile(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.Reconcile](t)
	if err != nil {
		return err
	}
	if w.deps.Stripe == nil {
		return nil
	}
	window := p.Window
	if window <= 0 {
		window = 24 * time.Hour
	}
	at := p.At
	if at.IsZero() {
		at = time.Now()
	}
	rep, err := w.Reconcile(ctx, at.Add(-window))
	w.log.InfoContext(ctx, "payments reconciled", "undelivered_events", rep.Undelivered, "intents", rep.Intents,
		"drifted", rep.Drifted, "applied", rep.Applied)
	return err
}

// ReconcileReport counts what a reconciliation did.
type ReconcileReport struct {
	Undelivered, Intents, Drifted, Applied int
}

// Reconcile lists undelivered events and PaymentIntents created since
// `since` and applies what we missed.
func (w *Worker) Reconcile(ctx context.Context, since time.Time) (ReconcileReport, error) {
	var rep ReconcileReport
	raws, err := w.deps.Stripe.ListUndeliveredEvents(ctx, since)
	if err != nil {
		return rep, stripeError(err)
	}
	for _, raw := range raws {
		ev, err := payments.ParseEvent(raw)
		if err != nil {
			w.log.WarnContext(ctx, "reconcile: unreadable event", "err", err)
			continue
		}
		rep.Undelivered++
		if err := w.storeAndApply(ctx, ev, &rep); err != nil {
			return rep, err
		}
	}
	intents, err := w.deps.Stripe.ListRecentIntents(ctx, since)
	if err != nil {
		return rep, stripeError(err)
	}
	for _, in := range intents {
		rep.Intents++
		ev, ok, err := w.driftEvent(ctx, in)
		if err != nil {
			return rep, err
		}
		if !ok {
			continue
		}
		rep.Drifted++
		if err := w.storeAndApply(ctx, ev, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// intentEventType is the event that reports a PaymentIntent status.
var intentEventType = map[string]string{
	"succeeded":  "payment_intent.succeeded",
	"processing": "payment_intent.processing",
	"canceled":   "payment_intent.canceled",
}

// driftEvent returns the synthetic event that brings our payment to the
// PaymentIntent's state, if ours lags behind it. Its ID is derived from the
// intent and status, so reconciliations that overlap store it once.
func (w *Worker) driftEvent(ctx context.Context, in payments.Intent) (payments.Event, bool, error) {
	typ, ok := intentEventType[in.Status]
	if !ok {
		return payments.Event{}, false, nil
	}
	pay, err := store.GetPaymentByIntent(ctx, w.deps.DB, in.ID)
	if store.ErrNoRows(err) && in.BookingID != "" {
		pay, err = store.GetPaymentByBooking(ctx, w.deps.DB, in.BookingID)
		if err == nil && pay.PaymentIntentID != nil && *pay.PaymentIntentID != in.ID {
			return payments.Event{}, false, nil
		}
	}
	switch {
	case store.ErrNoRows(err):
		if in.BookingID == "" {
			return payments.Event{}, false, nil // not one of ours
		}
		ok, err := store.BookingExists(ctx, w.deps.DB, in.BookingID)
		if err != nil || !ok {
			return payments.Event{}, false, err // not a booking of this deployment
		}
	case err != nil:
		return payments.Event{}, false, err
	default:
		want := map[string]string{"succeeded": store.PaymentSucceeded, "processing": store.PaymentProcessing,
			"canceled": store.PaymentCanceled}[in.Status]
		if store.PaymentRank(pay.Status) >= store.PaymentRank(want) {
			return payments.Event{}, false, nil
		}
	}
	obj := in.Raw
	if len(obj) == 0 {
		obj, _ = json.Marshal(map[string]any{"id": in.ID, "object": "payment_intent", "status": in.Status,
			"amount": in.Amount, "amount_received": in.AmountReceived, "currency": in.Currency,
			"metadata": map[string]string{"booking_id": in.BookingID}})
	}
	now := time.Now().UTC()
	id := reconcileSynthPrefix + in.ID + "_" + in.Status
	payload, err := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": payments.APIVersion,
		"created": now.Unix(), "livemode": false, "data": map[string]json.RawMessage{"object": obj}})
	if err != nil {
		return payments.Event{}, false, err
	}
	ev, err := payments.ParseEvent(payload)
	if err != nil {
		return payments.Event{}, false, err
	}
	return ev, true, nil
}

// storeAndApply stores an event (source reconcile) with its outbox row in
// one transaction, then applies it at once; its task, which the outbox poll
// relays, finds it processed.
func (w *Worker) storeAndApply(ctx context.Context, ev payments.Event, rep *ReconcileReport) error {
	en, err := eventEntry(ev, store.EventSourceReconcile, store.Now())
	if err != nil {
		return err
	}
	var inserted bool
	err = w.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		inserted, err = store.InsertStripeEvent(ctx, tx, en.Event, en.Task)
		return err
	})
	if err != nil {
		return err
	}
	if en.Task == nil {
		return nil // stored as unsupported_api_version
	}
	if !inserted {
		// Stored before (a webhook or an earlier run): process it in case
		// its task was lost; a processed event is a no-op.
		return w.ProcessStripeEvent(ctx, ev.ID)
	}
	if err := w.ProcessStripeEvent(ctx, ev.ID); err != nil {
		return err
	}
	rep.Applied++
	return nil
}

// eventEntry is the inbox entry of an event fetched from Stripe.
func eventEntry(ev payments.Event, source string, now time.Time) (store.InboxEntry, error) {
	msg, err := tasks.Encode(tasks.StripeEvent{EventID: ev.ID})
	if err != nil {
		return store.InboxEntry{}, err
	}
	row := store.StripeEvent{
		ID: ev.ID, Type: ev.Type, APIVersion: ev.APIVersion, Livemode: ev.Livemode, ObjectID: ev.ObjectID,
		EventCreated: ev.Created, Payload: string(ev.Payload), Source: source, ReceivedAt: now,
	}
	return store.NewInboxEntry(row, payments.APIVersion, store.OutboxMessage(msg)), nil
}
