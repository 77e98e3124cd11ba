package worker_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// TestSchedulerReplicasEnqueueOncePerTick runs three scheduler replicas
// against one Redis with every-second entries and checks each tick produced
// exactly one task: no tick missed, none doubled.
func TestSchedulerReplicasEnqueueOncePerTick(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	entries := []worker.Entry{
		{Type: tasks.TypeBookingsTick, Spec: "* * * * *", Env: "T_TICK"},
		{Type: tasks.TypeMaintenanceSweep, Spec: "* * * * *", Env: "T_SWEEP"},
	}
	every := func(k string) string {
		return map[string]string{"T_TICK": "* * * * * *", "T_SWEEP": "*/2 * * * * *"}[k]
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 3; i++ {
		client := asynq.NewClientFromRedisClient(r.Client)
		s, err := worker.NewScheduler(entries, every, client, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	time.Sleep(5200 * time.Millisecond)
	end := time.Now()
	cancel()
	wg.Wait()

	insp := asynq.NewInspectorFromRedisClient(r.Client)
	ids := map[string][]string{}
	for _, q := range []string{tasks.QueueDefault, tasks.QueueLow} {
		list, err := insp.ListPendingTasks(q, asynq.PageSize(1000))
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range list {
			ids[ti.Type] = append(ids[ti.Type], ti.ID)
		}
	}
	// Every tick well inside the run has exactly one task; a tick within
	// 100 ms of start or stop may or may not have fired; no task names a
	// time that is not a tick. (Duplicates of one tick would show as a
	// count above the number of ticks: asynq refuses a second task with the
	// same ID, so replicas with random IDs would fail here.)
	check := func(typ string, step time.Duration) {
		got := map[string]bool{}
		for _, id := range ids[typ] {
			got[id] = true
		}
		ticks := map[string]bool{}
		// Up to a little past end: cancel() comes after end is read.
		for tick := start.Truncate(step).Add(step); !tick.After(end.Add(200 * time.Millisecond)); tick = tick.Add(step) {
			id := (tasks.Tick{Type: typ, At: tick}).TaskID()
			ticks[id] = true
			interior := tick.Sub(start) > 100*time.Millisecond && end.Sub(tick) > 100*time.Millisecond
			if interior && !got[id] {
				t.Errorf("%s: tick %s has no task", typ, id)
			}
		}
		for id := range got {
			if !ticks[id] {
				t.Errorf("%s: task %s is for no tick of the run", typ, id)
			}
		}
		if len(ids[typ]) != len(got) {
			t.Errorf("%s: %d tasks for %d distinct ticks", typ, len(ids[typ]), len(got))
		}
	}
	check(tasks.TypeBookingsTick, time.Second)
	check(tasks.TypeMaintenanceSweep, 2*time.Second)
	if len(ids[tasks.TypeBookingsTick]) < 4 {
		t.Fatalf("too few ticks to mean anything: %v", ids)
	}
	for typ, l := range ids {
		for _, id := range l {
			if !strings.HasPrefix(id, typ+":") {
				t.Errorf("task %s of type %s has a foreign ID", id, typ)
			}
		}
	}
}

func TestSchedulerRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	_, err := worker.NewScheduler([]worker.Entry{{Type: tasks.TypeBookingsTick, Spec: "* * * * *", Env: "X"}},
		func(string) string { return "every now and then" }, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "X") {
		t.Fatalf("err = %v, want it to name the variable", err)
	}
	_, err = worker.NewScheduler([]worker.Entry{{Type: "no:such", Spec: "* * * * *"}},
		func(string) string { return "" }, nil, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("unknown task type accepted")
	}
}
