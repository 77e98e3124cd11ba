// Package event names the platform's domain events — what happened, to
// what, with the facts a message about it needs — and who each one
// concerns, on which channels. Pure: no I/O. The store records an event in
// the transaction of the change it describes (with one outbox row per
// recipient and channel); notify renders it; the worker delivers it.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/google/uuid"
)

// Type names a domain event. It is a wire format (stored in domain_events,
// shown to API clients as a notification's type): never rename one.
type Type string

// The domain events.
const (
	BookingCreated       Type = "booking.created"        // a booking waits for its payment
	BookingConfirmed     Type = "booking.confirmed"      // the payment arrived
	BookingCancelled     Type = "booking.cancelled"      // the renter or the owner cancelled
	BookingExpired       Type = "booking.expired"        // unpaid at its deadline
	BookingRefunded      Type = "booking.refunded"       // the money went back to the renter
	BookingDisputed      Type = "booking.disputed"       // the renter's bank disputes the charge
	BookingDisputeClosed Type = "booking.dispute_closed" // won (back to its state) or lost (refunded)
	PaymentFailed        Type = "payment.failed"         // a payment attempt failed; the renter may retry
	UploadReady          Type = "upload.ready"           // an upload is processed and usable
	UploadFailed         Type = "upload.failed"          // an upload could not be processed
	PayoutFailed         Type = "payout.failed"          // Stripe could not pay an owner out
	AccountRestricted    Type = "account.restricted"     // an owner's Connect account lost charges or payouts
)

// Types lists every event type.
var Types = []Type{BookingCreated, BookingConfirmed, BookingCancelled, BookingExpired, BookingRefunded,
	BookingDisputed, BookingDisputeClosed, PaymentFailed, UploadReady, UploadFailed, PayoutFailed, AccountRestricted}

// Subject types: what an event is about (domain_events.subject_type).
const (
	SubjectBooking = "booking"
	SubjectUpload  = "upload"
	SubjectPayout  = "payout"
	SubjectAccount = "account" // the owner's user ID
)

// Role is how a recipient is concerned by an event.
type Role string

// The roles. Renter and owner are users (notified by email and in the app);
// operators are the addresses of OPERATOR_NOTIFY_EMAILS (email only).
const (
	Renter    Role = "renter"
	Owner     Role = "owner" // of the listing, the upload, the payout or the account
	Operators Role = "operators"
)

// Channel is how a message reaches its recipient.
type Channel string

// The channels.
const (
	Email Channel = "email"
	InApp Channel = "inapp"
)

// Delivery is one role reached on one channel.
type Delivery struct {
	Role    Role
	Channel Channel
}

var (
	both      = []Channel{Email, InApp}
	inAppOnly = []Channel{InApp}
	emailOnly = []Channel{Email}
)

// audiences says who each event concerns and how. Renters hear about their
// bookings and payments; owners about bookings of their listings (by email
// once money is involved), their uploads, payouts and account; operators
// about what needs a person: disputes, failed payouts, restricted accounts.
var audiences = map[Type][]struct {
	role     Role
	channels []Channel
}{
	BookingCreated:       {{Renter, both}, {Owner, inAppOnly}},
	BookingConfirmed:     {{Renter, both}, {Owner, both}},
	BookingCancelled:     {{Renter, both}, {Owner, both}},
	BookingExpired:       {{Renter, both}, {Owner, inAppOnly}},
	BookingRefunded:      {{Renter, both}, {Owner, both}},
	BookingDisputed:      {{Owner, both}, {Operators, emailOnly}},
	BookingDisputeClosed: {{Owner, both}, {Operators, emailOnly}},
	PaymentFailed:        {{Renter, both}},
	UploadReady:          {{Owner, inAppOnly}},
	UploadFailed:         {{Owner, both}},
	PayoutFailed:         {{Owner, both}, {Operators, emailOnly}},
	AccountRestricted:    {{Owner, both}, {Operators, emailOnly}},
}

// Audience returns the deliveries an event of type t asks for, in a fixed
// order; nil for an unknown type.
func Audience(t Type) []Delivery {
	var out []Delivery
	for _, a := range audiences[t] {
		for _, c := range a.channels {
			out = append(out, Delivery{Role: a.role, Channel: c})
		}
	}
	return out
}

// Addressee is one delivery of an event to a recipient: the role's
// recipient ID in the event's data (a user ID, or OperatorsRecipient).
type Addressee struct {
	Delivery
	RecipientID string
}

// Addressees returns the deliveries this event asks for, in Audience
// order: each role of its audience that its data names, on each channel,
// once per recipient and channel (a user in two roles hears once).
func (ev Event) Addressees() []Addressee {
	var out []Addressee
	seen := map[Addressee]bool{}
	for _, d := range Audience(ev.Type) {
		a := Addressee{Delivery: d, RecipientID: ev.Data.Recipient(d.Role)}
		a.Role = "" // the key is recipient and channel
		if a.RecipientID == "" || seen[a] {
			continue
		}
		seen[a] = true
		a.Role = d.Role
		out = append(out, a)
	}
	return out
}

// Known reports whether t is a type of this package.
func (t Type) Known() bool { _, ok := audiences[t]; return ok }

// Event is one domain event.
type Event struct {
	// ID is the event's identifier: empty → the store assigns a new one;
	// set (see IDFor) → recording the same event twice records it once.
	ID          string
	Type        Type
	SubjectType string
	SubjectID   string
	Data        Data
	OccurredAt  time.Time
}

// Data is what the messages about an event need, and no more: identifiers,
// amounts, dates, the listing's title and time zone. Never names, email
// addresses or free text from users other than the listing title (the
// greeting's name is read at delivery, from the recipient's own account).
type Data struct {
	// RenterID and OwnerID are the users the event concerns (see Role).
	RenterID string `json:"renter_id,omitempty"`
	OwnerID  string `json:"owner_id,omitempty"`

	BookingID    string `json:"booking_id,omitempty"`
	ListingID    string `json:"listing_id,omitempty"`
	ListingTitle string `json:"listing_title,omitempty"`
	// TimeZone is the listing's IANA zone; times are shown in it ("" → UTC).
	TimeZone  string `json:"timezone,omitempty"`
	StartDate string `json:"start_date,omitempty"` // YYYY-MM-DD, first night
	EndDate   string `json:"end_date,omitempty"`   // YYYY-MM-DD, exclusive: the morning of departure

	// Amount is in minor units of Currency.
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	// PayBy is a pending booking's payment deadline.
	PayBy *time.Time `json:"pay_by,omitempty"`

	// FromStatus is the booking's state before the change.
	FromStatus string `json:"from_status,omitempty"`
	// CancelledBy is renter or owner ("" when the system cancelled).
	CancelledBy string `json:"cancelled_by,omitempty"`
	// RefundPending says a refund follows (a paid booking was cancelled).
	RefundPending bool `json:"refund_pending,omitempty"`
	// Outcome of a closed dispute: won or lost.
	Outcome string `json:"outcome,omitempty"`
	// Reason is a machine reason: a dispute's reason, a payment's or
	// payout's failure code, an upload's failure reason.
	Reason string `json:"reason,omitempty"`

	UploadID   string `json:"upload_id,omitempty"`
	UploadKind string `json:"upload_kind,omitempty"` // image or document

	PayoutID    string     `json:"payout_id,omitempty"`
	ArrivalDate *time.Time `json:"arrival_date,omitempty"`

	// StripeAccountID and the capabilities of a restricted account.
	StripeAccountID string `json:"stripe_account_id,omitempty"`
	ChargesEnabled  *bool  `json:"charges_enabled,omitempty"`
	PayoutsEnabled  *bool  `json:"payouts_enabled,omitempty"`
}

// Outcomes of a closed dispute.
const (
	DisputeWon  = "won"
	DisputeLost = "lost"
)

// OperatorsRecipient is the recipient ID of the operators' email task: the
// worker sends it to each address of OPERATOR_NOTIFY_EMAILS, each with its
// own delivery record (OperatorRecipient).
const OperatorsRecipient = "operators"

// OperatorRecipient is the delivery record's recipient ID of one operator address.
func OperatorRecipient(email string) string { return "operator:" + email }

// Recipient returns the recipient ID of a role for this event's data: the
// user's ID, OperatorsRecipient, or "" when the event concerns no one in it.
func (d Data) Recipient(r Role) string {
	switch r {
	case Renter:
		return d.RenterID
	case Owner:
		return d.OwnerID
	case Operators:
		return OperatorsRecipient
	}
	return ""
}

// RoleOf returns the role a recipient ID plays in this event's data.
func (d Data) RoleOf(recipientID string) (Role, bool) {
	switch {
	case recipientID == "":
		return "", false
	case recipientID == OperatorsRecipient:
		return Operators, true
	case recipientID == d.RenterID:
		return Renter, true
	case recipientID == d.OwnerID:
		return Owner, true
	}
	return "", false
}

// namespace of deterministic event IDs.
var namespace = uuid.MustParse("6f1c2f55-8d0b-4c8e-9a55-3c9a3e0d3b71")

// IDFor returns a deterministic event ID for a key that names the cause
// once and for all (e.g. "stripe:evt_123:payout.failed"): an event recorded
// twice under the same key is one event, one message per recipient.
func IDFor(key string) string { return uuid.NewSHA1(namespace, []byte(key)).String() }

// MessageKey is a short, stable digest of an event and a recipient: the
// basis of an email's Message-ID, so receivers can drop a copy sent twice.
func MessageKey(eventID, recipientID string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + recipientID))
	return hex.EncodeToString(h[:12])
}
