// Package booking holds the pure rules of a booking: its states and the one
// function that moves between them, civil dates, and the price. No I/O: the
// store applies what Next decides with a compare-and-set on the status.
package booking

import "fmt"

// Status is a booking's state.
type Status string

// The states of DESIGN.md §3.
const (
	PendingPayment Status = "pending_payment"
	Confirmed      Status = "confirmed"
	Active         Status = "active"
	Completed      Status = "completed"
	Expired        Status = "expired"
	Cancelled      Status = "cancelled"
	Refunded       Status = "refunded"
	Disputed       Status = "disputed"
)

// Statuses lists every state.
var Statuses = []Status{PendingPayment, Confirmed, Active, Completed, Expired, Cancelled, Refunded, Disputed}

// Valid reports whether s is a known state.
func (s Status) Valid() bool {
	for _, x := range Statuses {
		if s == x {
			return true
		}
	}
	return false
}

// HoldsDates reports whether a booking in this state keeps its dates from
// other bookings of the listing (the overlap constraint uses the same set).
func (s Status) HoldsDates() bool {
	switch s {
	case PendingPayment, Confirmed, Active, Disputed, Completed:
		return true
	}
	return false
}

// Paid reports whether money was taken and not yet returned in this state.
func (s Status) Paid() bool {
	switch s {
	case Confirmed, Active, Completed, Disputed:
		return true
	}
	return false
}

// Event is something that happens to a booking.
type Event string

// The events that move a booking.
const (
	PaymentSucceeded Event = "payment_succeeded" // Stripe says the money arrived
	Expire           Event = "expire"            // unpaid at its deadline
	Cancel           Event = "cancel"            // the renter or the owner cancels
	Start            Event = "start"             // the first day has come
	End              Event = "end"               // the last day has passed
	RefundSucceeded  Event = "refund_succeeded"  // Stripe says the money went back in full
	DisputeOpened    Event = "dispute_opened"    // the renter's bank disputes the charge
	DisputeWon       Event = "dispute_won"       // the dispute closed in our favour
	DisputeLost      Event = "dispute_lost"      // the dispute closed against us: money gone
)

// Events lists every event.
var Events = []Event{PaymentSucceeded, Expire, Cancel, Start, End, RefundSucceeded, DisputeOpened, DisputeWon, DisputeLost}

// IllegalTransition is returned when an event cannot happen in a state.
type IllegalTransition struct {
	From  Status
	Event Event
}

func (e *IllegalTransition) Error() string {
	return fmt.Sprintf("a %s booking cannot %s", e.From, e.Event)
}

// table is the state machine. A dispute returns the booking to where it was
// (see Next); everything not listed is illegal.
//
// Decisions on the edge cases of DESIGN.md §3:
//   - A payment that succeeds after the booking expired re-confirms it
//     (expired → confirmed) if its dates are still free: the renter paid and
//     wants the booking. The store's overlap constraint decides; if the dates
//     were taken meanwhile, the booking stays expired and is refunded.
//   - A payment that succeeds after a cancellation does not revive it: the
//     cancellation was a decision; the payment is refunded.
//   - A refund that completes before the payment's success event (events out
//     of order) moves an unpaid booking straight to refunded, so the late
//     success cannot confirm it.
//   - A completed booking can be disputed; won, it is completed again.
var table = map[Status]map[Event]Status{
	PendingPayment: {PaymentSucceeded: Confirmed, Expire: Expired, Cancel: Cancelled, RefundSucceeded: Refunded},
	Confirmed:      {Start: Active, Cancel: Cancelled, DisputeOpened: Disputed, RefundSucceeded: Refunded},
	Active:         {End: Completed, DisputeOpened: Disputed, RefundSucceeded: Refunded},
	Completed:      {DisputeOpened: Disputed, RefundSucceeded: Refunded},
	Expired:        {PaymentSucceeded: Confirmed, RefundSucceeded: Refunded},
	Cancelled:      {RefundSucceeded: Refunded},
	Disputed:       {DisputeWon: "", DisputeLost: Refunded},
	Refunded:       {},
}

// Next returns the state a booking in from moves to on ev. beforeDispute is
// the state the booking held when its dispute opened; it is where a won
// dispute returns (confirmed, active or completed).
func Next(from Status, ev Event, beforeDispute Status) (Status, error) {
	to, ok := table[from][ev]
	if !ok {
		return from, &IllegalTransition{From: from, Event: ev}
	}
	if from == Disputed && ev == DisputeWon {
		switch beforeDispute {
		case Confirmed, Active, Completed:
			return beforeDispute, nil
		}
		return Confirmed, nil
	}
	return to, nil
}
