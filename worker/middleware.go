package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/logging"
)

// observe gives the task's context the task's identity for every log line,
// logs the outcome with its duration, and tells the observer.
func (w *Worker) observe(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		ctx = logging.With(ctx, slog.String("task_id", id), slog.String("task_type", t.Type()),
			slog.Int("retry", retried))
		start := time.Now()
		err := next.ProcessTask(ctx, t)
		d := time.Since(start)
		willRetry, archived := outcome(err, retried, maxRetry)
		switch {
		case err == nil:
			w.log.DebugContext(ctx, "task done", "queue", queue, "duration_ms", ms(d))
		case archived:
			// taskFailed logs the archive at error level.
		case willRetry:
			w.log.WarnContext(ctx, "task failed, will retry", "queue", queue, "duration_ms", ms(d),
				"max_retry", maxRetry, "err", err)
		default:
			w.log.InfoContext(ctx, "task revoked: dropped without retry", "queue", queue, "err", err)
		}
		if w.deps.Observer != nil {
			w.deps.Observer.TaskDone(t.Type(), queue, d, err, willRetry, archived)
		}
		return err
	})
}

// recoverPanic turns a handler panic into an error (retried like any other),
// with the stack in the log.
func (w *Worker) recoverPanic(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
		defer func() {
			if rec := recover(); rec != nil {
				w.log.ErrorContext(ctx, "panic in task handler", "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", rec)
			}
		}()
		return next.ProcessTask(ctx, t)
	})
}

// classify marks errors that will fail the same way on every attempt (bad
// payload, missing rows, forbidden moves) with asynq.SkipRetry, so they are
// archived for an operator at once instead of burning the retry budget.
func (w *Worker) classify(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		if err == nil || errors.Is(err, asynq.SkipRetry) {
			return err
		}
		var pe *portal.Error
		if errors.As(err, &pe) && portal.IsPermanent(pe.Code) {
			return fmt.Errorf("%w (%w)", err, asynq.SkipRetry)
		}
		return err
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
