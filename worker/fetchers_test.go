package worker_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// TestFetchersShareTheConcurrency: a worker with Fetchers servers on the
// main queues registers that many asynq servers in Redis (as Asynqmon
// shows them), sharing Concurrency between them, each on every main queue
// with its weight, plus the images server; and it stops them all.
func TestFetchersShareTheConcurrency(t *testing.T) {
	t.Parallel()
	r := testkit.RedisDB(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := worker.New(worker.Config{Concurrency: 8, Fetchers: 3, TaskCheckInterval: 10 * time.Millisecond,
		ShutdownTimeout: time.Second, Images: worker.ImageConfig{Concurrency: 2}}, worker.Deps{Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, r.Client) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	insp := asynq.NewInspectorFromRedisClient(r.Client)
	var servers []*asynq.ServerInfo
	for deadline := time.Now().Add(10 * time.Second); len(servers) < 4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if servers, err = insp.Servers(); err != nil {
			t.Fatal(err)
		}
	}
	mainQueues := map[string]int{}
	for q, weight := range tasks.QueueWeights {
		if q != tasks.QueueImages {
			mainQueues[q] = weight
		}
	}
	var mainSlots []int
	images := 0
	for _, s := range servers {
		switch {
		case maps.Equal(s.Queues, mainQueues):
			mainSlots = append(mainSlots, s.Concurrency)
		case maps.Equal(s.Queues, map[string]int{tasks.QueueImages: 1}) && s.Concurrency == 2:
			images++
		default:
			t.Errorf("unexpected server: queues %v, concurrency %d", s.Queues, s.Concurrency)
		}
	}
	slices.Sort(mainSlots)
	if !slices.Equal(mainSlots, []int{2, 3, 3}) || images != 1 {
		t.Fatalf("main servers' concurrency %v (want [2 3 3]), image servers %d (want 1)", mainSlots, images)
	}
}
