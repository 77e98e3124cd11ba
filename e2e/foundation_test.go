package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/tasks"
)

// TestAllOnEmbeddedDefaults is `make run` on a machine with nothing: the all
// role on SQLite, in-process Redis and a local folder, ready within seconds,
// saying plainly what is embedded, and stopping cleanly on SIGTERM.
func TestAllOnEmbeddedDefaults(t *testing.T) {
	t.Parallel()
	p := Start(t, "all", nil)
	took := p.WaitStatus("/health/readiness", 200, 5*time.Second)
	t.Logf("ready %s after the banner", took)
	out := p.Output()
	for _, want := range []string{"EMBEDDED SQLite", "EMBEDDED in-process Redis", "LOST when this process stops",
		"EMBEDDED local folder", "/api/docs", "/monitoring/"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	var h struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		Redis    string `json:"redis"`
		Blob     string `json:"blob"`
		Role     string `json:"role"`
	}
	if code := p.Get("/health", &h); code != 200 || h.Database != "sqlite" || h.Redis != "embedded" || h.Blob != "local" || h.Role != "all" {
		t.Fatalf("/health = %d %+v", code, h)
	}
	for _, path := range []string{"/health/liveness", "/health/database", "/health/queues", "/health/memory", "/health/disk"} {
		if code := p.Get(path, nil); code != 200 {
			t.Errorf("%s = %d", path, code)
		}
	}
	took, err := p.Stop(10 * time.Second)
	if err != nil {
		t.Fatalf("SIGTERM: exit %v after %s\n%s", err, took, p.Output())
	}
	t.Logf("stopped in %s", took)
}

// startRedis runs a redis-server of the test's own, so the test can stop and
// restart it.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testkit.Missing(t, "redis-server binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("redis-server did not start")
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestReadinessFollowsRedis runs the api role on PostgreSQL and a Redis the
// test owns: readiness turns 503 within seconds of Redis stopping and back to
// 200 once it is restarted; liveness stays 200 throughout.
func TestReadinessFollowsRedis(t *testing.T) {
	t.Parallel()
	dbURL := testkit.PostgresSchemaURL(t)
	port := freePort(t)
	redis := startRedis(t, port)
	p := Start(t, "api", map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d/0", port)})
	p.WaitStatus("/health/readiness", 200, 5*time.Second)

	_ = redis.Process.Kill()
	_ = redis.Wait()
	took := p.WaitStatus("/health/readiness", 503, 10*time.Second)
	t.Logf("readiness 503 %s after Redis stopped", took)
	if code := p.Get("/health/liveness", nil); code != 200 {
		t.Errorf("liveness = %d while Redis is down; it must not depend on Redis", code)
	}

	startRedis(t, port)
	took = p.WaitStatus("/health/readiness", 200, 15*time.Second)
	t.Logf("readiness 200 %s after Redis restarted", took)
	if _, err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestSchedulerProcessesEnqueueOncePerTick runs two scheduler processes
// against one Redis with every-second cron specs and checks one task per
// tick. E2E_SCHEDULER_SOAK sets how long (default 20s; the acceptance run
// uses 3m).
func TestSchedulerProcessesEnqueueOncePerTick(t *testing.T) {
	t.Parallel()
	soak := 20 * time.Second
	if v := os.Getenv("E2E_SCHEDULER_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		soak = d
	}
	r := testkit.RedisDB(t)
	env := map[string]string{"REDIS_URL": r.URL, "CRON_BOOKINGS_TICK": "* * * * * *", "CRON_MAINTENANCE_SWEEP": "*/5 * * * * *",
		"CRON_PAYMENTS_RECONCILE": "*/10 * * * * *", "CRON_MAINTENANCE_CLEANUP": "0 0 0 1 1 *"}
	a := Start(t, "scheduler", env)
	b := Start(t, "scheduler", env)
	// From here both run (Start may have had to build the binary first).
	start := time.Now()
	time.Sleep(soak)
	a.Stop(10 * time.Second)
	b.Stop(10 * time.Second)
	end := time.Now()

	insp := asynq.NewInspectorFromRedisClient(r.Client)
	counts := map[string]map[string]int{}
	for _, q := range []string{tasks.QueueDefault, tasks.QueueLow} {
		list, err := insp.ListPendingTasks(q, asynq.PageSize(10000))
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range list {
			if counts[ti.Type] == nil {
				counts[ti.Type] = map[string]int{}
			}
			counts[ti.Type][ti.ID]++
		}
	}
	expect := func(typ string, step time.Duration) {
		want := 0
		// From a minute before start: the first scheduler may have been
		// ticking while Start waited for the second one.
		for tick := start.Add(-time.Minute).Truncate(step); tick.Before(end); tick = tick.Add(step) {
			id := (tasks.Tick{Type: typ, At: tick}).TaskID()
			if typ == tasks.TypePaymentsReconcile {
				id = (tasks.Reconcile{At: tick}).TaskID()
			}
			// Ticks before start, in its first 1.5 s or in the last half
			// second may race start-up and shutdown.
			if tick.Sub(start) < 1500*time.Millisecond || end.Sub(tick) < 500*time.Millisecond {
				delete(counts[typ], id)
				continue
			}
			want++
			if counts[typ][id] != 1 {
				t.Errorf("tick %s enqueued %d times", id, counts[typ][id])
			}
			delete(counts[typ], id)
		}
		if len(counts[typ]) > 0 {
			t.Errorf("%s: tasks for no tick: %v", typ, counts[typ])
		}
		t.Logf("%s: %d ticks, one task each", typ, want)
	}
	expect(tasks.TypeBookingsTick, time.Second)
	expect(tasks.TypeMaintenanceSweep, 5*time.Second)
	expect(tasks.TypePaymentsReconcile, 10*time.Second)
}

// TestRolesNeedRedis refuses to start a lone role on the embedded Redis,
// which another process could not share.
func TestRolesNeedRedis(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"api", "worker", "scheduler", "dashboard"} {
		cmd := exec.CommandContext(context.Background(), testkit.Binary(t), role)
		cmd.Env = []string{"DATA_DIR=" + filepath.Join(t.TempDir(), "d")}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "REDIS_URL is required") {
			t.Errorf("%s without REDIS_URL: %v %s", role, err, out)
		}
	}
}

// TestSecurityEventsReachMetrics: a request that matches an injection
// pattern is served (patterns never block alone) but logged as a security
// event and counted in /metrics, where an alert can see it.
func TestSecurityEventsReachMetrics(t *testing.T) {
	t.Parallel()
	p := Start(t, "all", nil)
	p.WaitStatus("/health/readiness", 200, 5*time.Second)
	if code := p.Get("/api/v1/listings?q=%27+OR+1%3D1--", nil); code != 200 {
		t.Fatalf("probe answered %d; a pattern alone must not block", code)
	}
	resp, err := http.Get(p.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `rentalportal_security_events_total{kind="suspicious_request"} 1`) {
		t.Fatalf("/metrics lacks the suspicious request:\n%s", grepLines(string(body), "security"))
	}
	if !strings.Contains(p.Output(), "security=true") || !strings.Contains(p.Output(), "event=suspicious_request") {
		t.Fatalf("no security log line:\n%s", p.Output())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
