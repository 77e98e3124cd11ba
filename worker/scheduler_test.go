package worker_test

import (
	"context"
	"log/slog"
	"sort"
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
	cancel()
	wg.Wait()
	end := time.Now()

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
	check := func(typ string, step time.Duration) {
		got := ids[typ]
		sort.Strings(got)
		var want []string
		for tick := start.Truncate(step).Add(step); !tick.After(end); tick = tick.Add(step) {
			// A tick in the last few milliseconds may not have fired before cancel.
			if end.Sub(tick) < 50*time.Millisecond {
				continue
			}
			want = append(want, (tasks.Tick{Type: typ, At: tick}).TaskID())
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d tasks, want %d (one per tick)\n got %v\nwant %v", typ, len(got), len(want), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: task %s, want %s", typ, got[i], want[i])
			}
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
