// Package metrics is the platform's Prometheus registry: HTTP requests by
// route template, task outcomes and durations by task type, queue sizes and
// latency read from Redis at scrape time, and the Go runtime and process
// collectors. The API and the worker see it only through the narrow
// interfaces they declare (api.RequestObserver, worker.Observer); the wiring
// in cmd/rentalportal connects them.
package metrics

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of the platform.
const Namespace = "rentalportal"

// Buckets of the HTTP latency histogram (seconds): API requests are
// expected in milliseconds; the tail shows slow dependencies.
var httpBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Buckets of the task duration histogram (seconds): from a quick state
// change to a large image's thumbnails or a reconciliation run.
var taskBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Registry holds every collector of one process.
type Registry struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	tasksProcessed *prometheus.CounterVec
	tasksFailed    *prometheus.CounterVec
	tasksRetried   *prometheus.CounterVec
	tasksArchived  *prometheus.CounterVec
	taskDuration   *prometheus.HistogramVec

	securityEvents *prometheus.CounterVec
}

// Options describe the process for the build-info metric.
type Options struct {
	Version string
	Role    string
}

// New returns a registry with the Go runtime and process collectors, the
// build info, and the HTTP and task metrics (queues are added by
// WatchQueues).
func New(opt Options) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; labels say the version and role of this process.",
		ConstLabels: prometheus.Labels{"version": opt.Version, "role": opt.Role},
	})
	build.Set(1)
	r.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route template (\"unmatched\" for no route), method and status.",
	}, []string{"route", "method", "status"})
	r.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route template and method.",
		Buckets: httpBuckets,
	}, []string{"route", "method"})
	taskLabels := []string{"task_type", "queue"}
	taskCounter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "tasks", Name: name, Help: help}, taskLabels)
	}
	r.tasksProcessed = taskCounter("processed_total", "Task attempts finished (succeeded or failed), by task type and queue.")
	r.tasksFailed = taskCounter("failed_total", "Task attempts that returned an error, by task type and queue.")
	r.tasksRetried = taskCounter("retried_total", "Failed task attempts that asynq will retry, by task type and queue.")
	r.tasksArchived = taskCounter("archived_total",
		"Tasks archived (dead: retries exhausted or a permanent error); an operator must look. Alert on any increase.")
	r.taskDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "task", Name: "duration_seconds",
		Help:    "Time one task attempt took in its handler, by task type and queue.",
		Buckets: taskBuckets,
	}, taskLabels)
	r.securityEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "security", Name: "events_total",
		Help: "Security events by kind: auth_failure_burst, blocked, rate_limited, suspicious_request, signature_failure, account_throttled, limiter_unavailable.",
	}, []string{"kind"})
	r.reg.MustRegister(build, r.httpRequests, r.httpDuration,
		r.tasksProcessed, r.tasksFailed, r.tasksRetried, r.tasksArchived, r.taskDuration, r.securityEvents)
	return r
}

// Event counts one security event of kind (security.Observer).
func (r *Registry) Event(kind string) { r.securityEvents.WithLabelValues(kind).Inc() }

// Prometheus returns the underlying registry (tests gather from it).
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// ObserveRequest counts one answered HTTP request and its latency. route is
// the route template, never the raw path, so labels stay bounded.
func (r *Registry) ObserveRequest(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	r.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	r.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// KnownTasks creates the task series of each type (type → queue) at zero,
// so that a rate or increase over the archived counter sees its first
// archived task rather than the series appearing at 1.
func (r *Registry) KnownTasks(queueOf map[string]string) {
	for typ, q := range queueOf {
		for _, c := range []*prometheus.CounterVec{r.tasksProcessed, r.tasksFailed, r.tasksRetried, r.tasksArchived} {
			c.WithLabelValues(typ, q)
		}
	}
}

// TaskDone records one task attempt (it implements worker.Observer).
func (r *Registry) TaskDone(taskType, queue string, d time.Duration, err error, retried, archived bool) {
	r.tasksProcessed.WithLabelValues(taskType, queue).Inc()
	r.taskDuration.WithLabelValues(taskType, queue).Observe(d.Seconds())
	if err != nil {
		r.tasksFailed.WithLabelValues(taskType, queue).Inc()
	}
	if retried {
		r.tasksRetried.WithLabelValues(taskType, queue).Inc()
	}
	if archived {
		r.tasksArchived.WithLabelValues(taskType, queue).Inc()
	}
}

// Handler serves the registry in the Prometheus text format. With a token,
// a scrape must send "Authorization: Bearer <token>"; others get 401.
func (r *Registry) Handler(token string) http.Handler {
	h := promhttp.InstrumentMetricHandler(r.reg, promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		Registry:          r.reg,
		EnableOpenMetrics: false,
		Timeout:           10 * time.Second,
	}))
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		scheme, got, _ := strings.Cut(req.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
				"code": "unauthorized", "message": "metrics need a bearer token",
				"request_id": w.Header().Get("X-Request-ID"),
			}})
			return
		}
		h.ServeHTTP(w, req)
	})
}
