package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }

// benchStartup: `rentalportal all` on embedded defaults, from exec to the
// first 200 of /health/readiness, with a fresh DATA_DIR (migrations run) and
// with an existing one; baseline: exec of `rentalportal version`.
func benchStartup(ctx context.Context, env Env) ([]Row, error) {
	n := 7
	if env.Quick {
		n = 2
	}
	var base, fresh, warm []time.Duration
	dir := filepath.Join(env.Tmp, "startup-warm")
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := exec.CommandContext(ctx, env.Binary, "version").Run(); err != nil {
			return nil, err
		}
		base = append(base, time.Since(start))
		for _, c := range []struct {
			dir string
			out *[]time.Duration
		}{{filepath.Join(env.Tmp, fmt.Sprintf("startup-fresh-%d", i)), &fresh}, {dir, &warm}} {
			addr := freeAddr()
			start := time.Now()
			p, err := startProc(ctx, env.Binary, []string{"all"}, map[string]string{"HTTP_ADDR": addr, "DATA_DIR": c.dir})
			if err != nil {
				return nil, err
			}
			if _, err := waitHTTP(ctx, "http://"+addr+"/health/readiness", 10*time.Second); err != nil {
				p.stop()
				return nil, err
			}
			*c.out = append(*c.out, time.Since(start))
			p.stop()
		}
	}
	b := percentile(base, 0.5)
	f, w := percentile(fresh, 0.5), percentile(warm, 0.5)
	return []Row{
		{Metric: "all → readiness 200, fresh DATA_DIR (p50 of " + strconv.Itoa(n) + ")", Value: ms(f), Baseline: "exec `version` " + ms(b),
			Ratio: ratio(float64(f), float64(b)), Target: "< 1000 ms", Verdict: verdict(f < time.Second)},
		{Metric: "all → readiness 200, existing DATA_DIR (p50)", Value: ms(w), Baseline: "exec `version` " + ms(b),
			Ratio: ratio(float64(w), float64(b)), Target: "< 1000 ms", Verdict: verdict(w < time.Second)},
	}, nil
}

// benchIdleRSS: each role idle for a few seconds on PostgreSQL and Redis
// (all on embedded defaults); baseline: a bare Go net/http server.
//
// What is resident splits into the process's own memory (RssAnon) and the
// pages of the binary it has mapped (RssFile: shared, reclaimable page
// cache). How many binary pages a process maps depends on how the kernel
// holds the file in its page cache, not only on what the process touches:
// since Linux 6.18 a read fault maps the whole large folio around the
// page, and the folios are as large as the writes that filled the cache.
// Measured for the scheduler (file pages): 38 MiB started from the binary
// the Go linker just wrote (through mmap), 50 MiB from a copy written in
// one write, 25.5 MiB from a copy written in 128 KiB writes (cat) and
// 25.4 MiB from a binary read cold after dropping the page cache. The
// verdict is on the state a deployed process starts from, a binary read
// from disk: an installed copy of each binary is evicted from the page
// cache before each start, and the process reads it in as it runs. The
// freshly linked binary (what `make run` starts) is shown beside it.
func benchIdleRSS(ctx context.Context, env Env) ([]Row, error) {
	baseLinked, err := buildBareServer(ctx, env)
	if err != nil {
		return nil, err
	}
	baseBin, err := installCopy(baseLinked, filepath.Join(env.Tmp, "installed"))
	if err != nil {
		return nil, err
	}
	bin, err := installCopy(env.Binary, filepath.Join(env.Tmp, "installed"))
	if err != nil {
		return nil, err
	}
	idle := 5 * time.Second
	if env.Quick {
		idle = time.Second
	}
	baseAddr := freeAddr()
	if err := evict(baseBin); err != nil {
		return nil, err
	}
	bp, err := startProc(ctx, baseBin, nil, map[string]string{"ADDR": baseAddr})
	if err != nil {
		return nil, err
	}
	if _, err := waitHTTP(ctx, "http://"+baseAddr+"/", 5*time.Second); err != nil {
		bp.stop()
		return nil, err
	}
	time.Sleep(idle)
	baseRSS, err := bp.rss()
	bp.stop()
	if err != nil {
		return nil, err
	}
	schema := "bench_rss"
	if err := resetSchema(ctx, env.PGURL, schema); err != nil {
		return nil, err
	}
	dbURL := schemaURL(env.PGURL, schema)
	var rows []Row
	for _, role := range []string{"all", "api", "worker", "scheduler", "dashboard"} {
		if err := evict(bin); err != nil {
			return nil, err
		}
		installed, err := idleRSS(ctx, env, bin, role, dbURL, idle)
		if err != nil {
			return nil, err
		}
		linked, err := idleRSS(ctx, env, env.Binary, role, dbURL, idle)
		if err != nil {
			return nil, err
		}
		row := Row{Metric: "idle RSS: " + role, Value: installed.String(),
			Baseline: "bare net/http " + mib(baseRSS),
			Ratio:    ratio(float64(installed.total), float64(baseRSS)), Target: "< 40 MB (38.1 MiB)", Verdict: verdict(installed.total < 40_000_000)}
		if role == "all" {
			// The target is per role; `all` is the four of them in one
			// development process, with the embedded Redis and SQLite.
			row.Target, row.Verdict = "- (4 roles + embedded Redis, SQLite)", ""
		}
		rows = append(rows, row, Row{Metric: "  started from the freshly linked binary", Value: linked.String()})
	}
	return rows, nil
}

// residentSet is what a process holds in memory: its own pages and the
// pages of files (its binary) it has mapped.
type residentSet struct{ total, anon, file int64 }

func (r residentSet) String() string {
	return fmt.Sprintf("%s (anon %s, file %s)", mib(r.total), mib(r.anon), mib(r.file))
}

// idleRSS starts bin as role, waits for it to be ready, leaves it idle for
// idle and reads its resident set.
func idleRSS(ctx context.Context, env Env, bin, role, dbURL string, idle time.Duration) (residentSet, error) {
	dataDir, err := os.MkdirTemp(env.Tmp, "rss-"+role+"-")
	if err != nil {
		return residentSet{}, err
	}
	e := map[string]string{"DATA_DIR": dataDir, "HTTP_ADDR": freeAddr(),
		"DASHBOARD_ADDR": freeAddr(), "METRICS_ADDR": freeAddr()}
	probe := "http://" + e["METRICS_ADDR"] + "/health/readiness"
	switch role {
	case "all":
		delete(e, "METRICS_ADDR")
		probe = "http://" + e["HTTP_ADDR"] + "/health/readiness"
	case "api":
		e["DATABASE_URL"], e["REDIS_URL"] = dbURL, env.RedisURL
		delete(e, "METRICS_ADDR")
		probe = "http://" + e["HTTP_ADDR"] + "/health/readiness"
	case "dashboard":
		e["DATABASE_URL"], e["REDIS_URL"] = dbURL, env.RedisURL
		probe = "http://" + e["DASHBOARD_ADDR"] + "/health/readiness"
	default:
		e["DATABASE_URL"], e["REDIS_URL"] = dbURL, env.RedisURL
	}
	p, err := startProc(ctx, bin, []string{role}, e)
	if err != nil {
		return residentSet{}, err
	}
	defer p.stop()
	if _, err := waitHTTP(ctx, probe, 10*time.Second); err != nil {
		return residentSet{}, fmt.Errorf("%s: %w", role, err)
	}
	time.Sleep(idle)
	var r residentSet
	if r.total, err = p.rss(); err != nil {
		return r, err
	}
	if r.anon, err = p.status("RssAnon"); err != nil {
		return r, err
	}
	r.file, err = p.status("RssFile")
	return r, err
}

// installCopy copies the binary src into dir, as a deployment puts a
// binary in place, and returns the copy's path.
func installCopy(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return dst, err
}

// evict drops the file's clean pages from the page cache (pages a running
// process maps stay), so the next process reads it from disk.
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// buildBareServer compiles the baseline: a Go HTTP server that does nothing.
func buildBareServer(ctx context.Context, env Env) (string, error) {
	dir := filepath.Join(env.Tmp, "bare")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src := `package main
import ("net/http"; "os")
func main() { http.ListenAndServe(os.Getenv("ADDR"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })) }
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bare")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bare server: %v %s", err, out)
	}
	return bin, nil
}

func resetSchema(ctx context.Context, pgURL, schema string) error {
	db, err := store.Open(ctx, pgURL, "", store.Options{MaxOpenConns: 1})
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{`CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public`,
		`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`, `CREATE SCHEMA ` + schema} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// redisStats reads the server's command count and CPU seconds.
func redisStats(ctx context.Context, c redis.UniversalClient) (cmds int64, cpu float64, err error) {
	info, err := c.Info(ctx, "stats", "cpu").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "total_commands_processed":
			cmds, _ = strconv.ParseInt(v, 10, 64)
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		}
	}
	return cmds, cpu, nil
}

// benchIdlePolling measures what idle workers cost Redis (commands/s and
// Redis CPU) at several TaskCheckIntervals, with N idle worker processes,
// beside Redis with no worker; and the pickup latency each interval buys,
// measured with an asynq server configured like ours and a no-op handler
// fed one task every 100 ms.
func benchIdlePolling(ctx context.Context, env Env) ([]Row, error) {
	opt, err := asynq.ParseRedisURI(env.RedisURL)
	if err != nil {
		return nil, err
	}
	rc := opt.MakeRedisClient().(redis.UniversalClient)
	defer rc.Close()
	window, settle := 5*time.Second, 2*time.Second
	if env.Quick {
		window, settle = time.Second, 500*time.Millisecond
	}
	measure := func() (float64, float64, error) {
		c0, cpu0, err := redisStats(ctx, rc)
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(window)
		c1, cpu1, err := redisStats(ctx, rc)
		return float64(c1-c0-2) / window.Seconds(), 100 * (cpu1 - cpu0) / window.Seconds(), err
	}
	baseCmds, baseCPU, err := measure()
	if err != nil {
		return nil, err
	}
	baseCmds = max(baseCmds, 0)
	base := fmt.Sprintf("no worker: %.0f cmd/s, %.1f%% CPU", baseCmds, baseCPU)
	schema := "bench_idle"
	if err := resetSchema(ctx, env.PGURL, schema); err != nil {
		return nil, err
	}
	dbURL := schemaURL(env.PGURL, schema)
	var rows []Row
	for _, interval := range []time.Duration{time.Second, 100 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond} {
		lat, err := pickupLatency(ctx, rc, interval, env.Quick)
		if err != nil {
			return nil, err
		}
		rows = append(rows, Row{Metric: fmt.Sprintf("pickup latency @ %s: p50 / p99", interval),
			Value: ms(percentile(lat, 0.5)) + " / " + ms(percentile(lat, 0.99)), Baseline: "-"})
		for _, n := range []int{1, 4} {
			var procs []*proc
			for i := 0; i < n; i++ {
				p, err := startProc(ctx, env.Binary, []string{"worker"}, map[string]string{"DATABASE_URL": dbURL,
					"REDIS_URL": env.RedisURL, "WORKER_TASK_CHECK_INTERVAL": interval.String(), "METRICS_ADDR": freeAddr(),
					"DATA_DIR": filepath.Join(env.Tmp, "idle")})
				if err != nil {
					return nil, err
				}
				procs = append(procs, p)
			}
			time.Sleep(settle) // let them settle
			cmds, cpu, err := measure()
			for _, p := range procs {
				p.stop()
			}
			if err != nil {
				return nil, err
			}
			rows = append(rows, Row{Metric: fmt.Sprintf("  %d idle worker(s) @ %s: Redis cmd/s, CPU", n, interval),
				Value: fmt.Sprintf("%.0f cmd/s, %.1f%%", cmds, cpu), Baseline: base, Ratio: ratio(cpu, max(baseCPU, 0.1)) + " CPU"})
		}
	}
	return rows, nil
}

// pickupLatency runs an asynq server configured as the platform's workers
// (same queues and weights, the given TaskCheckInterval) with a no-op
// handler, and returns enqueue → handler start for tasks sent every 100 ms
// (plus a third of the interval) into otherwise empty queues.
func pickupLatency(ctx context.Context, rc redis.UniversalClient, interval time.Duration, quick bool) ([]time.Duration, error) {
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	n := 60
	if quick {
		n = 15
	}
	// Space the tasks so each meets an idle worker.
	return queueLatency(ctx, rc, interval, 100*time.Millisecond+interval/3, n)
}

// queueLatency is asynq's own latency: a server configured as the
// platform's workers (concurrency 20, the platform's queues and weights,
// the given TaskCheckInterval) with a no-op handler, fed n tasks on the
// critical queue, one every period; it returns enqueue → handler start of
// each.
func queueLatency(ctx context.Context, rc redis.UniversalClient, interval, period time.Duration, n int) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	srv := asynq.NewServerFromRedisClient(rc, asynq.Config{Concurrency: 20, Queues: tasks.QueueWeights,
		TaskCheckInterval: interval, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:noop", func(_ context.Context, t *asynq.Task) error {
		var sent time.Time
		if err := json.Unmarshal(t.Payload(), &sent); err != nil {
			return err
		}
		mu.Lock()
		lat = append(lat, time.Since(sent))
		mu.Unlock()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rc)
	time.Sleep(interval + 100*time.Millisecond)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * period)))
		b, _ := json.Marshal(time.Now())
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", b, asynq.Queue(tasks.QueueCritical))); err != nil {
			return nil, err
		}
	}
	for deadline := time.Now().Add(interval + 2*time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		if got >= n {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lat) < n {
		return nil, fmt.Errorf("only %d of %d tasks ran", len(lat), n)
	}
	return lat, nil
}
