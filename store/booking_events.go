package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/tasks"
)

// bookingEventTypes maps the booking events that concern people to the
// domain event they record. Start and end (active, completed) are the
// calendar at work and notify no one.
var bookingEventTypes = map[booking.Event]event.Type{
	booking.PaymentSucceeded: event.BookingConfirmed,
	booking.Cancel:           event.BookingCancelled,
	booking.Expire:           event.BookingExpired,
	booking.RefundSucceeded:  event.BookingRefunded,
	booking.DisputeOpened:    event.BookingDisputed,
	booking.DisputeWon:       event.BookingDisputeClosed,
	booking.DisputeLost:      event.BookingDisputeClosed,
}

// bookingEvent is the domain event of an applied transition of b (already
// in its new state), if the transition concerns anyone.
func bookingEvent(b *Booking, l listing, from booking.Status, ev booking.Event, src Source) (event.Event, bool) {
	typ, ok := bookingEventTypes[ev]
	if !ok {
		return event.Event{}, false
	}
	d := bookingData(b, l)
	d.FromStatus = string(from)
	switch ev {
	case booking.Cancel:
		switch src.ActorID {
		case "":
		case b.RenterID:
			d.CancelledBy = string(event.Renter)
		case b.OwnerID:
			d.CancelledBy = string(event.Owner)
		}
		d.RefundPending = from.Paid()
	case booking.DisputeWon:
		d.Outcome = event.DisputeWon
	case booking.DisputeLost:
		d.Outcome = event.DisputeLost
	}
	return event.Event{ID: NewID(), Type: typ, SubjectType: event.SubjectBooking, SubjectID: b.ID,
		Data: d, OccurredAt: b.UpdatedAt}, true
}

// listing is what a booking's event says of its listing.
type listing struct {
	Title    string `db:"title"`
	TimeZone string `db:"timezone"`
}

// listingFacts reads a listing's title and time zone, deleted or not (a
// booking outlives its listing's deletion).
func listingFacts(ctx context.Context, q Queryer, id string) (listing, error) {
	var l listing
	if err := Get(ctx, q, &l, `SELECT title, timezone FROM listings WHERE id = ?`, id); err != nil {
		return l, fmt.Errorf("listing %s of a booking event: %w", id, err)
	}
	return l, nil
}

func bookingData(b *Booking, l listing) event.Data {
	return event.Data{RenterID: b.RenterID, OwnerID: b.OwnerID, BookingID: b.ID, ListingID: b.ListingID,
		ListingTitle: l.Title, TimeZone: l.TimeZone, StartDate: b.StartDate.String(), EndDate: b.EndDate.String(),
		Amount: b.TotalAmount, Currency: b.Currency}
}

// newBookingEvent is the booking.created event of a booking being written.
func newBookingEvent(b *Booking, l listing) event.Event {
	d := bookingData(b, l)
	payBy := b.ExpiresAt.UTC()
	d.PayBy = &payBy
	return event.Event{ID: NewID(), Type: event.BookingCreated, SubjectType: event.SubjectBooking, SubjectID: b.ID,
		Data: d, OccurredAt: b.CreatedAt}
}

// RecordPaymentFailed records payment.failed for a booking whose payment
// attempt failed (the renter may try again until the booking expires). key
// names the cause once (e.g. the Stripe event ID), so a duplicate records
// nothing more; reason is the failure code (e.g. "card_declined"), never
// card data. Call it in the transaction that records the failure and
// publish the returned messages after commit.
func RecordPaymentFailed(ctx context.Context, q Queryer, b *Booking, key, reason string) ([]tasks.Message, error) {
	l, err := listingFacts(ctx, q, b.ListingID)
	if err != nil {
		return nil, err
	}
	d := bookingData(b, l)
	d.Reason = reason
	if b.Status == booking.PendingPayment || b.Status == booking.Expired {
		payBy := b.ExpiresAt.UTC()
		d.PayBy = &payBy
	}
	return RecordEvent(ctx, q, event.Event{ID: event.IDFor(key + ":" + string(event.PaymentFailed)),
		Type: event.PaymentFailed, SubjectType: event.SubjectBooking, SubjectID: b.ID, Data: d})
}

// UploadFacts is what RecordUploadEvent needs of an upload.
type UploadFacts struct {
	ID      string
	OwnerID string
	Kind    string // image or document
	// Reason is a failed upload's failure reason (user-readable).
	Reason string
}

// RecordUploadEvent records upload.ready or upload.failed for the
// uploader, in the transaction that moves the upload to that status (the
// status change is a compare-and-set, so it happens once; the event ID is
// derived from the upload and the type, so a re-run records nothing more).
func RecordUploadEvent(ctx context.Context, q Queryer, typ event.Type, u UploadFacts) ([]tasks.Message, error) {
	if typ != event.UploadReady && typ != event.UploadFailed {
		return nil, fmt.Errorf("record upload event: %q is not an upload event", typ)
	}
	d := event.Data{OwnerID: u.OwnerID, UploadID: u.ID, UploadKind: u.Kind}
	if typ == event.UploadFailed {
		d.Reason = u.Reason
	}
	return RecordEvent(ctx, q, event.Event{ID: event.IDFor("upload:" + u.ID + ":" + string(typ)), Type: typ,
		SubjectType: event.SubjectUpload, SubjectID: u.ID, Data: d})
}

// PayoutFacts is what RecordPayoutFailed needs of a payout.
type PayoutFacts struct {
	ID              string
	OwnerID         string
	StripeAccountID string
	Amount          int64
	Currency        string // as Stripe writes it (lowercase is fine)
	FailureCode     string
	ArrivalDate     *time.Time
}

// RecordPayoutFailed records payout.failed for the owner and the operators,
// in the transaction that stores the failed payout. key names the cause
// once (the Stripe event ID).
func RecordPayoutFailed(ctx context.Context, q Queryer, key string, p PayoutFacts) ([]tasks.Message, error) {
	d := event.Data{OwnerID: p.OwnerID, PayoutID: p.ID, StripeAccountID: p.StripeAccountID, Amount: p.Amount,
		Currency: strings.ToUpper(p.Currency), Reason: p.FailureCode, ArrivalDate: p.ArrivalDate}
	return RecordEvent(ctx, q, event.Event{ID: event.IDFor(key + ":" + string(event.PayoutFailed)), Type: event.PayoutFailed,
		SubjectType: event.SubjectPayout, SubjectID: p.ID, Data: d})
}

// RecordAccountRestricted records account.restricted for an owner whose
// Connect account lost charges or payouts, in the transaction that stores
// the new capabilities. key names the cause once (the Stripe event ID).
func RecordAccountRestricted(ctx context.Context, q Queryer, key, ownerID, stripeAccountID string, chargesEnabled, payoutsEnabled bool) ([]tasks.Message, error) {
	d := event.Data{OwnerID: ownerID, StripeAccountID: stripeAccountID, ChargesEnabled: &chargesEnabled,
		PayoutsEnabled: &payoutsEnabled}
	return RecordEvent(ctx, q, event.Event{ID: event.IDFor(key + ":" + string(event.AccountRestricted)),
		Type: event.AccountRestricted, SubjectType: event.SubjectAccount, SubjectID: ownerID, Data: d})
}
