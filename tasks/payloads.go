package tasks

import "time"

// Thumbnail asks for the variants of an image upload.
type Thumbnail struct {
	UploadID string `json:"upload_id"`
}

// TaskType implements Payload.
func (Thumbnail) TaskType() string { return TypeImageThumbnail }

// TaskID implements Payload: one thumbnail job per upload.
func (p Thumbnail) TaskID() string { return TypeImageThumbnail + ":" + p.UploadID }

// StripeEvent asks a worker to apply a stored Stripe event.
type StripeEvent struct {
	EventID string `json:"event_id"`
}

// TaskType implements Payload.
func (StripeEvent) TaskType() string { return TypeStripeEvent }

// TaskID implements Payload: the Stripe event ID, so a duplicate delivery is one task.
func (p StripeEvent) TaskID() string { return TypeStripeEvent + ":" + p.EventID }

// BookingExpire expires a booking that is still unpaid at its deadline.
type BookingExpire struct {
	BookingID string `json:"booking_id"`
}

// TaskType implements Payload.
func (BookingExpire) TaskType() string { return TypeBookingExpire }

// TaskID implements Payload.
func (p BookingExpire) TaskID() string { return TypeBookingExpire + ":" + p.BookingID }

// BookingRefund refunds a booking's payment through Stripe.
type BookingRefund struct {
	BookingID string `json:"booking_id"`
}

// TaskType implements Payload.
func (BookingRefund) TaskType() string { return TypeBookingRefund }

// TaskID implements Payload.
func (p BookingRefund) TaskID() string { return TypeBookingRefund + ":" + p.BookingID }

// PaymentIntent creates a booking's PaymentIntent when the API could not.
type PaymentIntent struct {
	BookingID string `json:"booking_id"`
}

// TaskType implements Payload.
func (PaymentIntent) TaskType() string { return TypePaymentIntent }

// TaskID implements Payload.
func (p PaymentIntent) TaskID() string { return TypePaymentIntent + ":" + p.BookingID }

// Tick is the payload of a cron entry: the schedule time it fires for.
type Tick struct {
	Type string    `json:"-"`
	At   time.Time `json:"tick"`
}

// TaskType implements Payload.
func (p Tick) TaskType() string { return p.Type }

// TaskID implements Payload: entry + tick, so N scheduler replicas enqueue one task per tick.
func (p Tick) TaskID() string { return p.Type + ":" + p.At.UTC().Format(time.RFC3339) }

// Reconcile asks for a reconciliation of PaymentIntents created in a window.
type Reconcile struct {
	At     time.Time     `json:"tick"`
	Window time.Duration `json:"window"`
}

// TaskType implements Payload.
func (Reconcile) TaskType() string { return TypePaymentsReconcile }

// TaskID implements Payload.
func (p Reconcile) TaskID() string {
	return TypePaymentsReconcile + ":" + p.At.UTC().Format(time.RFC3339)
}

// NotifyEvent delivers one domain event to everyone it concerns, on every
// channel its audience names (event.Audience): one task per event, however
// many deliveries. Each delivery is idempotent on its own (one in-app
// notification per event and user, one delivery record per event,
// recipient and channel), so a retry redoes only what did not happen.
type NotifyEvent struct {
	EventID string `json:"event_id"`
}

// TaskType implements Payload.
func (NotifyEvent) TaskType() string { return TypeNotifyEvent }

// TaskID implements Payload: one task per event.
func (p NotifyEvent) TaskID() string { return TypeNotifyEvent + ":" + p.EventID }

// Notify delivers one domain event to one recipient over one channel: the
// task of the types notify:event replaced, still handled.
type Notify struct {
	Channel     string `json:"-"` // TypeNotifyEmail or TypeNotifyInApp
	EventID     string `json:"event_id"`
	RecipientID string `json:"recipient_id"`
}

// TaskType implements Payload.
func (p Notify) TaskType() string { return p.Channel }

// TaskID implements Payload: one delivery per event, recipient and channel.
func (p Notify) TaskID() string { return p.Channel + ":" + p.EventID + ":" + p.RecipientID }
