package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/rentalportal/portal/tasks"
)

// Scheduler enqueues one task per tick of each cron entry. asynq's own
// Scheduler gives every enqueue a random task ID, so two replicas would
// enqueue each tick twice; this one derives the ID from entry and tick time
// (tasks.Tick.TaskID) and keeps it for the type's retention, so any number
// of replicas enqueue each tick once, and an archived tick never blocks the
// next (its ID differs).
type Scheduler struct {
	entries []scheduled
	client  Enqueuer
	log     *slog.Logger
	// MaxLateness is how late a tick may be enqueued (Redis down at the
	// time); older ticks are dropped, the next one does the work.
	MaxLateness time.Duration
	now         func() time.Time
}

type scheduled struct {
	Entry
	sched cron.Schedule
}

// Enqueuer is the part of asynq.Client the scheduler needs.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// NewScheduler parses the entries; getenv may override each entry's spec
// through its Env variable.
func NewScheduler(entries []Entry, getenv func(string) string, client Enqueuer, log *slog.Logger) (*Scheduler, error) {
	s := &Scheduler{client: client, log: log, MaxLateness: 30 * time.Second, now: time.Now}
	for _, e := range entries {
		if v := getenv(e.Env); v != "" {
			e.Spec = v
		}
		sc, err := cronParser.Parse(e.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: cron spec %q: %w", e.Env, e.Spec, err)
		}
		if _, ok := tasks.SpecOf(e.Type); !ok {
			return nil, fmt.Errorf("cron entry for unknown task type %q", e.Type)
		}
		s.entries = append(s.entries, scheduled{Entry: e, sched: sc})
	}
	return s, nil
}

// Run fires every entry until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, e := range s.entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, e)
		}()
	}
	s.log.Info("scheduler started", "entries", len(s.entries))
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, e scheduled) {
	next := e.sched.Next(s.now())
	for {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		s.fire(ctx, e, next)
		// Compute from the tick, not from now, so a slow enqueue never skips
		// or repeats a tick; but never schedule in the past.
		n := e.sched.Next(next)
		for now := s.now(); n.Before(now.Add(-s.MaxLateness)); {
			n = e.sched.Next(n)
		}
		next = n
	}
}

// fire enqueues the tick, retrying while Redis is unavailable until the
// tick is too late.
func (s *Scheduler) fire(ctx context.Context, e scheduled, tick time.Time) {
	msg, err := tasks.Encode(tickPayload(e.Type, tick))
	if err != nil {
		s.log.Error("scheduler: encode tick", "entry", e.Type, "err", err)
		return
	}
	t, err := msg.Task()
	if err != nil {
		s.log.Error("scheduler: build tick task", "entry", e.Type, "err", err)
		return
	}
	backoff := 500 * time.Millisecond
	for {
		_, err := s.client.EnqueueContext(ctx, t)
		switch {
		case err == nil:
			s.log.Debug("scheduler: tick enqueued", "task_id", msg.ID)
			return
		case errors.Is(err, asynq.ErrTaskIDConflict):
			// Another replica enqueued this tick first.
			return
		}
		if s.now().Sub(tick) > s.MaxLateness || ctx.Err() != nil {
			s.log.Warn("scheduler: tick dropped", "task_id", msg.ID, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// tickPayload builds the payload a cron entry's task carries.
func tickPayload(taskType string, tick time.Time) tasks.Payload {
	if taskType == tasks.TypePaymentsReconcile {
		return tasks.Reconcile{At: tick, Window: 24 * time.Hour}
	}
	return tasks.Tick{Type: taskType, At: tick}
}
