package worker

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestNotifyBackoff(t *testing.T) {
	w := New(Config{NotifyRetryBase: time.Second, NotifyRetryMax: 5 * time.Minute}, Deps{})
	notifyTask := asynq.NewTask("notify:email", nil)
	for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		for i := 0; i < 50; i++ {
			if d := w.retryDelay(n, nil, notifyTask); d < want*3/4 || d > want*5/4 {
				t.Fatalf("retry %d: %s, want %s ± 25%%", n, d, want)
			}
		}
	}
	for _, n := range []int{9, 20, 40, 1000} {
		if d := w.retryDelay(n, nil, notifyTask); d > 5*time.Minute || d < 5*time.Minute*3/4 {
			t.Fatalf("retry %d: %s, want at most the 5m cap and near it", n, d)
		}
	}
	// Other tasks keep asynq's default (seconds to minutes, growing fast).
	other := asynq.NewTask("booking:refund", nil)
	if d := w.retryDelay(0, nil, other); d < 10*time.Second {
		t.Fatalf("booking:refund retry 0: %s, want asynq's default (≥10s)", d)
	}
}
