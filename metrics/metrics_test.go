package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/metrics"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

type nopRelay struct{}

func (nopRelay) Publish(context.Context, ...tasks.Message) {}
func (nopRelay) Pending(context.Context, time.Duration, int) (int, error) {
	return 0, nil
}

func scrape(t *testing.T, h http.Handler, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestTaskMetricsFromARealWorker runs the worker against the test Redis with
// the registry as its observer: a task that succeeds, one that fails and
// will be retried, and one with no retry budget that is archived at once.
func TestTaskMetricsFromARealWorker(t *testing.T) {
	t.Parallel()
	rdb := testkit.RedisDB(t)
	db := testkit.SQLite(t)
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	reg := metrics.New(metrics.Options{Version: "test", Role: "worker"})
	reg.KnownTasks(map[string]string{tasks.TypeBookingRefund: tasks.QueueCritical})
	insp := asynq.NewInspectorFromRedisClient(rdb.Client)
	reg.WatchQueues(insp, log)
	w := worker.New(worker.Config{Concurrency: 2, TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		OutboxGrace: time.Minute}, worker.Deps{Log: log, DB: db, Relay: nopRelay{}, Observer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, rdb.Client) }()
	t.Cleanup(func() { cancel(); <-done })

	client := asynq.NewClientFromRedisClient(rdb.Client)
	msg, err := tasks.Encode(tasks.Tick{Type: tasks.TypeMaintenanceCleanup, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := msg.Task()
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []struct {
		t    *asynq.Task
		opts []asynq.Option
	}{
		{ok, nil},
		// No handler knows these types: every attempt fails.
		{asynq.NewTask("test:retries", nil), []asynq.Option{asynq.MaxRetry(5), asynq.Queue(tasks.QueueDefault)}},
		{asynq.NewTask("test:dies", nil), []asynq.Option{asynq.MaxRetry(0), asynq.Queue(tasks.QueueDefault)}},
	} {
		if _, err := client.Enqueue(task.t, task.opts...); err != nil {
			t.Fatalf("enqueue %s: %v", task.t.Type(), err)
		}
	}

	h := reg.Handler("s3cret")
	want := []string{
		`rentalportal_task_duration_seconds_count{queue="low",task_type="maintenance:cleanup"} 1`,
		`rentalportal_tasks_processed_total{queue="low",task_type="maintenance:cleanup"} 1`,
		`rentalportal_tasks_failed_total{queue="default",task_type="test:retries"} 1`,
		`rentalportal_tasks_retried_total{queue="default",task_type="test:retries"} 1`,
		`rentalportal_tasks_archived_total{queue="default",task_type="test:dies"} 1`,
		`rentalportal_tasks_archived_total{queue="critical",task_type="booking:refund"} 0`,
		`rentalportal_queue_tasks{queue="default",state="archived"} 1`,
		`rentalportal_queue_tasks{queue="default",state="retry"} 1`,
		`rentalportal_queue_scrape_up 1`,
		`rentalportal_build_info{role="worker",version="test"} 1`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var code int
		code, body = scrape(t, h, "s3cret")
		if code != http.StatusOK {
			t.Fatalf("scrape: %d %s", code, body)
		}
		missing := ""
		for _, line := range want {
			if !strings.Contains(body, line) {
				missing = line
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q:\n%s", missing, grep(body, "rentalportal_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(body, `rentalportal_tasks_archived_total{queue="default",task_type="test:retries"}`) {
		t.Fatalf("a task that will be retried was counted as archived:\n%s", grep(body, "rentalportal_tasks"))
	}
	if !strings.Contains(logs.String(), `"msg":"task archived: it will not be retried"`) ||
		!strings.Contains(logs.String(), `"task_type":"test:dies"`) {
		t.Fatalf("no error line for the archived task in the log:\n%s", logs.String())
	}
	if strings.Count(logs.String(), "task archived") != 1 {
		t.Fatalf("want exactly one archive line (the retried task is not archived):\n%s", logs.String())
	}

	// Without the token the metrics are refused.
	for _, tok := range []string{"", "wrong"} {
		if code, body := scrape(t, h, tok); code != http.StatusUnauthorized || !strings.Contains(body, `"code":"unauthorized"`) {
			t.Fatalf("token %q: %d %s", tok, code, body)
		}
	}
}

func grep(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHTTPMetricsUseTheRouteTemplate(t *testing.T) {
	t.Parallel()
	reg := metrics.New(metrics.Options{Version: "test", Role: "api"})
	reg.ObserveRequest("/api/v1/bookings/:id", "GET", 200, 3*time.Millisecond)
	reg.ObserveRequest("/api/v1/bookings/:id", "GET", 200, 30*time.Millisecond)
	reg.ObserveRequest("", "GET", 404, time.Millisecond)
	_, body := scrape(t, reg.Handler(""), "")
	for _, line := range []string{
		`rentalportal_http_requests_total{method="GET",route="/api/v1/bookings/:id",status="200"} 2`,
		`rentalportal_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`rentalportal_http_request_duration_seconds_bucket{method="GET",route="/api/v1/bookings/:id",le="0.005"} 1`,
		`rentalportal_http_request_duration_seconds_count{method="GET",route="/api/v1/bookings/:id"} 2`,
	} {
		if !strings.Contains(body, line) {
			t.Fatalf("missing %q in\n%s", line, grep(body, "rentalportal_http"))
		}
	}
}
