// Package worker does the platform's work: an asynq server with weighted
// queues, one handler per task type (bound in mux.go), the cron scheduler
// (entries in schedule.go) and the sweeper that re-derives outstanding work
// from the database.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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
	// Concurrency is how many tasks of the main queues run at once.
	Concurrency int
	// Fetchers is how many asynq servers share Concurrency on the main
	// queues (default 1; see mainServers).
	Fetchers int
	// TaskCheckInterval is how long an idle worker waits before polling its
	// queues again: the floor of a task's pickup latency when queues are
	// empty, and the rate of idle Redis commands (one dequeue script per
	// interval per worker process).
	TaskCheckInterval time.Duration
	ShutdownTimeout   time.Duration
	// OutboxGrace is how old an unsent outbox row must be before the sweeper
	// relays it (younger ones are still being relayed by their writer).
	OutboxGrace time.Duration
	// StripeEventRetention is how long processed Stripe events are kept
	// (0: for ever); maintenance:cleanup purges older ones.
	StripeEventRetention time.Duration
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
	var started []*asynq.Server
	stop := func() {
		// Side by side: each waits up to ShutdownTimeout for its tasks.
		var wg sync.WaitGroup
		for _, srv := range started {
			wg.Go(srv.Shutdown)
		}
		wg.Wait()
	}
	mux := w.Mux() // one for all the servers: it holds no per-server state
	for i, srv := range append(w.mainServers(redis, base), w.imageServer(redis, base)) {
		if err := srv.Start(mux); err != nil {
			stop()
			return fmt.Errorf("start worker (server %d): %w", i+1, err)
		}
		started = append(started, srv)
	}
	w.log.Info("image worker started", "concurrency", w.cfg.Images.Concurrency,
		"memory_budget_mb", w.cfg.Images.MemoryBudget>>20, "max_pixels", w.cfg.Images.MaxPixels)
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "fetchers", len(started)-1,
		"task_check_interval", w.cfg.TaskCheckInterval.String(), "queues", tasks.QueueWeights)
	<-ctx.Done()
	stop()
	w.log.Info("worker stopped")
	return nil
}

// mainServers are the asynq servers of the main queues: Fetchers of them,
// sharing Concurrency. An asynq server takes tasks off Redis in one loop,
// one dequeue at a time (a script per queue it probes, about two per task
// with our weights), and under load that loop bounded a worker process
// before its handlers did: booking transitions ran at 2,870–3,190/s with
// one server of 30 or 40 slots, and at a median of 3,185/s (2,770–3,530,
// 9 runs) with two of 20 (make bench, transitions; three did no better).
// The first server polls an idle Redis every TaskCheckInterval, which sets
// the pickup latency; the others at most every relaxedCheckInterval, so
// each adds a tenth of the idle polling while a busy queue is fetched by
// all of them.
func (w *Worker) mainServers(rc redis.UniversalClient, base asynq.Config) []*asynq.Server {
	n := min(max(w.cfg.Fetchers, 1), max(w.cfg.Concurrency, 1))
	servers := make([]*asynq.Server, n)
	for i := range servers {
		cfg := base
		cfg.Concurrency = w.cfg.Concurrency / n
		if i < w.cfg.Concurrency%n {
			cfg.Concurrency++
		}
		if i > 0 {
			cfg.TaskCheckInterval = max(base.TaskCheckInterval, relaxedCheckInterval)
		}
		servers[i] = asynq.NewServerFromRedisClient(rc, cfg)
	}
	return servers
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
