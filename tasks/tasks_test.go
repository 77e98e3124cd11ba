package tasks

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// TestTypeNamesAreFrozen fails when a task type is renamed, added or removed
// without updating this list. Type names are a wire format: a renamed type
// strands every task of the old name in Redis. Add new types here; never
// change an existing line.
func TestTypeNamesAreFrozen(t *testing.T) {
	t.Parallel()
	frozen := map[string]string{
		"image:thumbnail":     QueueImages,
		"stripe:event":        QueueCritical,
		"booking:expire":      QueueDefault,
		"booking:refund":      QueueCritical,
		"payment:intent":      QueueCritical,
		"payments:reconcile":  QueueLow,
		"bookings:tick":       QueueDefault,
		"maintenance:sweep":   QueueLow,
		"maintenance:cleanup": QueueLow,
		"notify:event":        QueueDefault,
		"notify:email":        QueueDefault,
		"notify:inapp":        QueueDefault,
	}
	got := Types()
	sort.Strings(got)
	if len(got) != len(frozen) {
		t.Fatalf("contract has %d types, frozen list has %d: %v", len(got), len(frozen), got)
	}
	for _, typ := range got {
		q, ok := frozen[typ]
		if !ok {
			t.Errorf("type %q is not in the frozen list", typ)
			continue
		}
		spec, _ := SpecOf(typ)
		if spec.Queue != q {
			t.Errorf("%s: queue %q, frozen %q", typ, spec.Queue, q)
		}
		if spec.Timeout <= 0 || spec.MaxRetry <= 0 || spec.Retention <= 0 {
			t.Errorf("%s: timeout, retry budget and retention must be set: %+v", typ, spec)
		}
		if _, ok := QueueWeights[spec.Queue]; !ok {
			t.Errorf("%s: queue %q has no weight, no worker would serve it", typ, spec.Queue)
		}
	}
	if !(QueueWeights[QueueCritical] > QueueWeights[QueueDefault] && QueueWeights[QueueDefault] > QueueWeights[QueueImages] &&
		QueueWeights[QueueImages] > QueueWeights[QueueLow]) {
		t.Errorf("queue weights must order critical > default > images > low: %v", QueueWeights)
	}
}

// TestDeterministicIDs checks that the same work always gets the same ID and
// different work different IDs.
func TestDeterministicIDs(t *testing.T) {
	t.Parallel()
	tick := time.Date(2026, 11, 25, 10, 5, 0, 0, time.UTC)
	payloads := []Payload{
		Thumbnail{UploadID: "u1"}, Thumbnail{UploadID: "u2"},
		StripeEvent{EventID: "evt_1"},
		BookingExpire{BookingID: "b1"}, BookingRefund{BookingID: "b1"}, PaymentIntent{BookingID: "b1"},
		Tick{Type: TypeBookingsTick, At: tick}, Tick{Type: TypeMaintenanceSweep, At: tick},
		Tick{Type: TypeBookingsTick, At: tick.Add(time.Minute)},
		Reconcile{At: tick, Window: time.Hour},
		NotifyEvent{EventID: "e1"}, NotifyEvent{EventID: "e2"},
		Notify{Channel: TypeNotifyEmail, EventID: "e1", RecipientID: "r1"},
		Notify{Channel: TypeNotifyInApp, EventID: "e1", RecipientID: "r1"},
	}
	seen := map[string]bool{}
	for _, p := range payloads {
		m1, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := Encode(p)
		if m1.ID != m2.ID || string(m1.Payload) != string(m2.Payload) {
			t.Errorf("%T: encoding is not deterministic", p)
		}
		if seen[m1.ID] {
			t.Errorf("two different payloads share ID %s", m1.ID)
		}
		seen[m1.ID] = true
		if !strings.HasPrefix(m1.ID, p.TaskType()+":") {
			t.Errorf("ID %s should start with its type", m1.ID)
		}
		task, err := m1.Task()
		if err != nil {
			t.Fatalf("%T: %v", p, err)
		}
		if task.Type() != p.TaskType() {
			t.Errorf("task type %s, want %s", task.Type(), p.TaskType())
		}
	}
	// A tick's ID does not depend on the time zone it was computed in.
	local := tick.In(time.FixedZone("X", 3600))
	if (Tick{Type: TypeBookingsTick, At: local}).TaskID() != (Tick{Type: TypeBookingsTick, At: tick}).TaskID() {
		t.Error("tick IDs differ across time zones")
	}
}

func TestDecodeRejectsMalformedPayloadWithoutRetry(t *testing.T) {
	t.Parallel()
	_, err := Decode[BookingExpire](asynq.NewTask(TypeBookingExpire, []byte("{not json")))
	if err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(err, asynq.SkipRetry) {
		t.Error("a payload that cannot decode must not be retried")
	}
	p, err := Decode[BookingExpire](asynq.NewTask(TypeBookingExpire, []byte(`{"booking_id":"b9"}`)))
	if err != nil || p.BookingID != "b9" {
		t.Fatalf("decode = %+v, %v", p, err)
	}
}
