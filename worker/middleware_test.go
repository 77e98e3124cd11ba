package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal"
)

type recordingObserver struct {
	mu    sync.Mutex
	calls []string
}

func (o *recordingObserver) TaskDone(taskType, queue string, _ time.Duration, err error, retried, archived bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("%s err=%v retried=%v archived=%v", taskType, err != nil, retried, archived))
}

func TestMiddlewareClassifiesErrors(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	obs := &recordingObserver{}
	w := New(Config{}, Deps{Log: slog.New(slog.NewTextHandler(&logs, nil)), Observer: obs})
	cases := []struct {
		name      string
		err       error
		panics    bool
		skipRetry bool
	}{
		{"success", nil, false, false},
		{"not found is permanent", portal.Errorf(portal.ENOTFOUND, "no booking"), false, true},
		{"invalid is permanent", fmt.Errorf("wrapped: %w", portal.Errorf(portal.EINVALID, "bad")), false, true},
		{"unavailable is retried", portal.Errorf(portal.EUNAVAILABLE, "db down"), false, false},
		{"plain error is retried", errors.New("connection reset"), false, false},
		{"panic becomes a retried error", nil, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
				if c.panics {
					panic("boom")
				}
				return c.err
			})
			err := w.observe(w.recoverPanic(w.classify(h))).ProcessTask(context.Background(), asynq.NewTask("test:type", nil))
			if (err != nil) != (c.err != nil || c.panics) {
				t.Fatalf("err = %v", err)
			}
			if got := errors.Is(err, asynq.SkipRetry); got != c.skipRetry {
				t.Fatalf("SkipRetry = %v, want %v (err %v)", got, c.skipRetry, err)
			}
		})
	}
	if !strings.Contains(logs.String(), "panic in task handler") || !strings.Contains(logs.String(), "stack=") {
		t.Errorf("panic not logged with its stack: %s", logs.String())
	}
	if len(obs.calls) != len(cases) {
		t.Errorf("observer saw %d tasks, want %d: %v", len(obs.calls), len(cases), obs.calls)
	}
}
