// Package tasks is the contract between the API and the workers: the task
// type names (a wire format: never rename a deployed one), their payloads
// (identifiers and scalars only; handlers re-read state from the store), and
// the queue, retry budget, timeout and deterministic ID of each type.
package tasks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Task type names.
const (
	TypeImageThumbnail     = "image:thumbnail"
	TypeStripeEvent        = "stripe:event"
	TypeBookingExpire      = "booking:expire"
	TypeBookingRefund      = "booking:refund"
	TypePaymentIntent      = "payment:intent"
	TypePaymentsReconcile  = "payments:reconcile"
	TypeBookingsTick       = "bookings:tick"
	TypeMaintenanceSweep   = "maintenance:sweep"
	TypeMaintenanceCleanup = "maintenance:cleanup"
	TypeNotifyEvent        = "notify:event"
	// One delivery each: what notify:event did before it existed. Still
	// handled, for tasks of those types already queued.
	TypeNotifyEmail = "notify:email"
	TypeNotifyInApp = "notify:inapp"
)

// Queue names, highest weight first.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueImages   = "images"
	QueueLow      = "low"
)

// QueueWeights are the relative weights the workers give each queue: under
// load a worker takes critical work six times as often as low work, but no
// queue starves.
var QueueWeights = map[string]int{
	QueueCritical: 6,
	QueueDefault:  3,
	QueueImages:   2,
	QueueLow:      1,
}

// Spec is what the contract fixes for one task type.
type Spec struct {
	Type     string
	Queue    string
	MaxRetry int
	// Timeout bounds one attempt; the handler's context is cancelled after it.
	Timeout time.Duration
	// Retention keeps a completed task (and so its ID) in Redis for this long,
	// so a duplicate enqueue within the window is refused as a conflict.
	Retention time.Duration
}

var specs = map[string]Spec{
	TypeImageThumbnail:     {TypeImageThumbnail, QueueImages, 5, 2 * time.Minute, time.Hour},
	TypeStripeEvent:        {TypeStripeEvent, QueueCritical, 25, 30 * time.Second, time.Hour},
	TypeBookingExpire:      {TypeBookingExpire, QueueDefault, 10, 30 * time.Second, time.Hour},
	TypeBookingRefund:      {TypeBookingRefund, QueueCritical, 25, time.Minute, time.Hour},
	TypePaymentIntent:      {TypePaymentIntent, QueueCritical, 25, time.Minute, time.Hour},
	TypePaymentsReconcile:  {TypePaymentsReconcile, QueueLow, 3, 5 * time.Minute, 24 * time.Hour},
	TypeBookingsTick:       {TypeBookingsTick, QueueDefault, 3, 2 * time.Minute, 24 * time.Hour},
	TypeMaintenanceSweep:   {TypeMaintenanceSweep, QueueLow, 3, 2 * time.Minute, 24 * time.Hour},
	TypeMaintenanceCleanup: {TypeMaintenanceCleanup, QueueLow, 3, 10 * time.Minute, 24 * time.Hour},
	// 60 short retries (worker.retryDelay): over 4h of SMTP outage. An
	// event's attempt sends at most a few emails (renter, owner, operators).
	TypeNotifyEvent: {TypeNotifyEvent, QueueDefault, 60, 90 * time.Second, time.Hour},
	TypeNotifyEmail: {TypeNotifyEmail, QueueDefault, 60, time.Minute, time.Hour},
	TypeNotifyInApp: {TypeNotifyInApp, QueueDefault, 10, 30 * time.Second, time.Hour},
}

// Types returns every task type of the contract.
func Types() []string {
	out := make([]string, 0, len(specs))
	for t := range specs {
		out = append(out, t)
	}
	return out
}

// SpecOf returns the spec of a task type; ok is false for an unknown type.
func SpecOf(taskType string) (Spec, bool) {
	s, ok := specs[taskType]
	return s, ok
}

// Payload is implemented by every task payload.
type Payload interface {
	// TaskType is the type name the payload travels under.
	TaskType() string
	// TaskID is the deterministic ID of the work the payload describes: two
	// enqueues of the same work get the same ID, so Redis holds one task.
	TaskID() string
}

// Message is an encoded task ready for the outbox or for Redis.
type Message struct {
	ID        string
	Type      string
	Payload   []byte
	ProcessAt time.Time // zero: as soon as possible
}

// Encode turns a payload into a Message with its deterministic ID.
func Encode(p Payload) (Message, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return Message{}, fmt.Errorf("encode %s payload: %w", p.TaskType(), err)
	}
	return Message{ID: p.TaskID(), Type: p.TaskType(), Payload: b}, nil
}

// EncodeAt is Encode with a processing time.
func EncodeAt(p Payload, at time.Time) (Message, error) {
	m, err := Encode(p)
	m.ProcessAt = at
	return m, err
}

// Task builds the asynq task of a message with the options of its type's
// spec, its ID and its processing time.
func (m Message) Task() (*asynq.Task, error) {
	spec, ok := specs[m.Type]
	if !ok {
		return nil, fmt.Errorf("unknown task type %q", m.Type)
	}
	opts := []asynq.Option{
		asynq.Queue(spec.Queue),
		asynq.MaxRetry(spec.MaxRetry),
		asynq.Timeout(spec.Timeout),
		asynq.Retention(spec.Retention),
		asynq.TaskID(m.ID),
	}
	if !m.ProcessAt.IsZero() {
		opts = append(opts, asynq.ProcessAt(m.ProcessAt))
	}
	return asynq.NewTask(m.Type, m.Payload, opts...), nil
}

// Decode unmarshals a task's payload into T, reporting a malformed payload
// as an error that wraps asynq.SkipRetry (it will never decode).
func Decode[T Payload](t *asynq.Task) (T, error) {
	var p T
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return p, fmt.Errorf("decode %s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return p, nil
}
