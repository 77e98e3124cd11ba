package worker

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/imaging/imagingbench"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// BenchmarkImageBurst measures the real worker (asynq servers, limiter,
// local blobs, SQLite) under a burst of 50 uploads of a 12 MP JPEG: the
// peak RSS of the process against the configured memory budget, and the
// wall time. Run: go test -run '^$' -bench ImageBurst -benchtime 1x ./worker/
// (IMAGE_MEMORY_BUDGET_MB overrides the 512 MiB default budget).
func BenchmarkImageBurst(b *testing.B) {
	budget := int64(512)
	if v, err := strconv.ParseInt(os.Getenv("IMAGE_MEMORY_BUDGET_MB"), 10, 64); err == nil && v > 0 {
		budget = v
	}
	const burst = 50
	data, err := imagingbench.TestJPEG(4000, 3000)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		e := newImageEnv(b, "sqlite+local", ImageConfig{MemoryBudget: budget << 20})
		ids := make([]string, burst)
		for j := range ids {
			ids[j] = e.upload(data, store.UploadProcessing).ID
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		base, _ := rssReset()
		start := time.Now()
		go func() { done <- e.w.Run(ctx, e.redis.Client) }()
		for _, id := range ids {
			msg, _ := tasks.Encode(tasks.Thumbnail{UploadID: id})
			e.w.deps.Relay.Publish(ctx, msg)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			var n int
			if err := store.Get(ctx, e.db, &n, `SELECT count(*) FROM uploads WHERE status = 'ready'`); err != nil {
				b.Fatal(err)
			}
			if n == burst {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d ready after 5 minutes", n, burst)
			}
			time.Sleep(20 * time.Millisecond)
		}
		wall := time.Since(start)
		peak := procField("VmHWM")
		cancel()
		<-done
		b.ReportMetric(float64(peak)/(1<<20), "peak_rss_MiB")
		b.ReportMetric(float64(base)/(1<<20), "base_rss_MiB")
		b.ReportMetric(float64(budget), "budget_MiB")
		b.ReportMetric(float64(e.w.cfg.Images.Concurrency), "image_slots")
		b.ReportMetric(wall.Seconds(), "wall_s")
	}
}

// rssReset collects garbage, returns memory to the OS and resets the
// kernel's high-water mark of this process's RSS (Linux clear_refs 5).
func rssReset() (int64, error) {
	runtime.GC()
	debug.FreeOSMemory()
	err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return procField("VmRSS"), err
}

func procField(name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}
