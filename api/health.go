package api

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
)

// Pinger is a dependency that can say whether it is up.
type Pinger interface {
	// Ping returns nil when the dependency answers; an error otherwise.
	Ping(ctx context.Context) error
}

// QueueInspector reads queue statistics (asynq.Inspector satisfies it).
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// probeTimeout bounds each dependency check of a health probe.
const probeTimeout = 2 * time.Second

type check struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

func runCheck(ctx context.Context, p Pinger) check {
	if p == nil {
		return check{Status: "absent"}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	start := time.Now()
	err := p.Ping(ctx)
	c := check{Status: "up", LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		c.Status, c.Error = "down", "unreachable"
	}
	return c
}

// checkDeps pings the database and Redis in parallel.
func (s *Server) checkDeps(ctx context.Context) (db, redis check) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); db = runCheck(ctx, s.deps.DB) }()
	go func() { defer wg.Done(); redis = runCheck(ctx, s.deps.Redis) }()
	wg.Wait()
	return db, redis
}

// health is the summary: what runs where, and whether it is up.
func (s *Server) health(c *gin.Context) {
	db, redis := s.checkDeps(c.Request.Context())
	status, code := "ok", http.StatusOK
	if db.Status != "up" || redis.Status != "up" {
		status, code = "degraded", http.StatusServiceUnavailable
	}
	c.JSON(code, gin.H{
		"status":   status,
		"version":  s.cfg.Version,
		"role":     s.cfg.Role,
		"uptime_s": int(time.Since(s.started).Seconds()),
		"database": s.cfg.Components["database"],
		"redis":    s.cfg.Components["redis"],
		"blob":     s.cfg.Components["blob"],
		"checks":   gin.H{"database": db, "redis": redis},
	})
}

func (s *Server) healthDatabase(c *gin.Context) {
	db := runCheck(c.Request.Context(), s.deps.DB)
	code := http.StatusOK
	if db.Status != "up" {
		code = http.StatusServiceUnavailable
	}
	body := gin.H{"status": db.Status, "engine": s.cfg.Components["database"], "latency_ms": db.LatencyMS}
	if s.deps.DBStats != nil {
		st := s.deps.DBStats()
		body["pool"] = gin.H{"open": st.OpenConnections, "in_use": st.InUse, "idle": st.Idle,
			"wait_count": st.WaitCount, "max_open": st.MaxOpenConnections}
	}
	c.JSON(code, body)
}

type queueHealth struct {
	Size      int     `json:"size"`
	Pending   int     `json:"pending"`
	Active    int     `json:"active"`
	Scheduled int     `json:"scheduled"`
	Retry     int     `json:"retry"`
	Archived  int     `json:"archived"`
	Completed int     `json:"completed"`
	LatencyMS float64 `json:"latency_ms"`
	Paused    bool    `json:"paused"`
}

func (s *Server) healthQueues(c *gin.Context) {
	if s.deps.Queues == nil {
		renderError(c, errUnavailable("queue inspector not configured"))
		return
	}
	type result struct {
		queues map[string]queueHealth
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		names, err := s.deps.Queues.Queues()
		if err != nil {
			ch <- result{err: err}
			return
		}
		out := map[string]queueHealth{}
		for _, q := range names {
			qi, err := s.deps.Queues.GetQueueInfo(q)
			if err != nil {
				ch <- result{err: err}
				return
			}
			out[q] = queueHealth{Size: qi.Size, Pending: qi.Pending, Active: qi.Active, Scheduled: qi.Scheduled,
				Retry: qi.Retry, Archived: qi.Archived, Completed: qi.Completed,
				LatencyMS: float64(qi.Latency.Microseconds()) / 1000, Paused: qi.Paused}
		}
		ch <- result{queues: out}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			renderError(c, errUnavailable("queues unreadable: redis unavailable"))
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "up", "queues": r.queues})
	case <-time.After(probeTimeout):
		renderError(c, errUnavailable("queues unreadable: redis timeout"))
	}
}

func (s *Server) healthMemory(c *gin.Context) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	c.JSON(http.StatusOK, gin.H{
		"status":         "up",
		"heap_alloc":     m.HeapAlloc,
		"heap_inuse":     m.HeapInuse,
		"heap_objects":   m.HeapObjects,
		"sys":            m.Sys,
		"rss":            residentSetSize(),
		"num_gc":         m.NumGC,
		"goroutines":     runtime.NumGoroutine(),
		"gomaxprocs":     runtime.GOMAXPROCS(0),
		"pause_total_ms": float64(m.PauseTotalNs) / 1e6,
	})
}

// residentSetSize reads VmRSS from /proc (Linux); 0 elsewhere.
func residentSetSize() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func (s *Server) healthDisk(c *gin.Context) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.DataDir, &st); err != nil {
		renderError(c, errUnavailable("data directory unreadable"))
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	total := st.Blocks * uint64(st.Bsize)
	status, code := "up", http.StatusOK
	if free < s.cfg.DiskMinFreeBytes {
		status, code = "low", http.StatusServiceUnavailable
	}
	c.JSON(code, gin.H{"status": status, "path": s.cfg.DataDir, "free_bytes": free, "total_bytes": total,
		"min_free_bytes": s.cfg.DiskMinFreeBytes})
}

// liveness says only that the process serves HTTP; it never touches a
// dependency, so a database outage does not get every replica restarted.
func (s *Server) liveness(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "alive"})
}

// readiness is 503 while the database or Redis is unreachable, or while the
// server drains for shutdown, so load balancers send traffic elsewhere.
func (s *Server) readiness(c *gin.Context) {
	if s.draining.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "draining"})
		return
	}
	db, redis := s.checkDeps(c.Request.Context())
	code, status := http.StatusOK, "ready"
	if db.Status != "up" || redis.Status != "up" {
		code, status = http.StatusServiceUnavailable, "not_ready"
	}
	c.JSON(code, gin.H{"status": status, "checks": gin.H{"database": db, "redis": redis}})
}
