// Package worker does the platform's work: an asynq server with weighted
// queues, one handler per task type (bound in mux.go), the cron scheduler
// (entries in schedule.go) and the sweeper that re-derives outstanding work
// from the database.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/imaging"
	"github.com/rentalportal/portal/notify"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// Config is what the worker takes from the platform's configuration.
type Config struct {
	Concurrency int
	// TaskCheckInterval is how long an idle worker waits before polling its
	// queues again: the floor of a task's pickup latency when queues are
	// empty, and the rate of idle Redis commands (one dequeue script per
	// interval per worker process).
	TaskCheckInterval time.Duration
	ShutdownTimeout   time.Duration
	// OutboxGrace is how old an unsent outbox row must be before the sweeper
	// relays it (younger ones are still being relayed by their writer).
	OutboxGrace time.Duration
	// Images tunes the thumbnail worker and its queue.
	Images ImageConfig
	// OperatorEmails receive the operator-facing events (notify.go).
	OperatorEmails []string
	// NotifyRetryBase and NotifyRetryMax shape the retry backoff of notify
	// tasks (0: 1s and 5m).
	NotifyRetryBase time.Duration
	NotifyRetryMax  time.Duration
}

// Publisher relays committed outbox messages to the queue.
type Publisher interface {
	Publish(ctx context.Context, msgs ...tasks.Message)
	Pending(ctx context.Context, grace time.Duration, limit int) (int, error)
}

// Deps are the worker's collaborators.
type Deps struct {
	Log   *slog.Logger
	DB    *store.DB
	Relay Publisher
	// Stripe is the Stripe API; nil when no key is configured (bookings
	// then wait for payment webhooks, refunds for charge.refunded).
	Stripe StripeAPI
	// Observer, if set, sees every task's outcome (metrics).
	Observer Observer
	// Blobs holds uploads and their variants.
	Blobs BlobStore
	// Mailer sends notify:email messages; Notify renders them.
	Mailer Mailer
	Notify *notify.Renderer
}

// Observer is told about each processed task.
type Observer interface {
	TaskDone(taskType, queue string, d time.Duration, err error, retried, archived bool)
}

// Worker processes tasks.
type Worker struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// images bounds the memory image tasks hold at once.
	images *imaging.Limiter
	// transitions batches the booking transitions of concurrent tasks.
	transitions *store.Transitions
}

// New returns a Worker.
func New(cfg Config, deps Deps) *Worker {
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Notify == nil {
		// Links to a local API: for tests and tools that do not configure it.
		deps.Notify, _ = notify.New("http://localhost:8080")
	}
	cfg.Images.defaults()
	w := &Worker{cfg: cfg, deps: deps, log: deps.Log, images: imaging.NewLimiter(cfg.Images.MemoryBudget)}
	if deps.DB != nil {
		w.transitions = store.NewTransitions(deps.DB)
	}
	return w
}

// Run serves tasks from Redis until ctx ends, then shuts down gracefully:
// asynq stops fetching, waits up to ShutdownTimeout for running tasks, and
// puts any still running back in their queue for another worker.
func (w *Worker) Run(ctx context.Context, redis redis.UniversalClient) error {
	base := asynq.Config{
		Concurrency:              w.cfg.Concurrency,
		Queues:                   mainQueues(),
		TaskCheckInterval:        w.cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          w.cfg.ShutdownTimeout,
		Logger:                   asynqLogger{w.log},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.taskFailed),
		RetryDelayFunc:           w.retryDelay,
		BaseContext:              func() context.Context { return context.WithoutCancel(ctx) },
	}
	srv := asynq.NewServerFromRedisClient(redis, base)
	if err := srv.Start(w.Mux()); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	imgSrv := w.imageServer(redis, base)
	if err := imgSrv.Start(w.Mux()); err != nil {
		srv.Shutdown()
		return fmt.Errorf("start image worker: %w", err)
	}
	w.log.Info("image worker started", "concurrency", w.cfg.Images.Concurrency,
		"memory_budget_mb", w.cfg.Images.MemoryBudget>>20, "max_pixels", w.cfg.Images.MaxPixels)
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "task_check_interval", w.cfg.TaskCheckInterval.String(),
		"queues", tasks.QueueWeights)
	<-ctx.Done()
	imgSrv.Shutdown()
	srv.Shutdown()
	w.log.Info("worker stopped")
	return nil
}

// taskFailed runs after a failed attempt; it logs an error line when the
// task is archived (out of retries, or a permanent failure) so an alert can
// fire on it.
func (w *Worker) taskFailed(ctx context.Context, task *asynq.Task, err error) {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	id, _ := asynq.GetTaskID(ctx)
	if _, archived := outcome(err, retried, maxRetry); archived {
		w.log.ErrorContext(ctx, "task archived: it will not be retried", "task_id", id, "task_type", task.Type(),
			"retried", retried, "max_retry", maxRetry, "err", err)
	}
}

// asynqLogger routes asynq's own log lines through slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}
