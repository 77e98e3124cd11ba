package metrics

import (
	"log/slog"
	"sort"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueInspector reads queue statistics from Redis (asynq.Inspector
// satisfies it).
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// queueScrapeTimeout bounds the Redis reads of one scrape.
const queueScrapeTimeout = 5 * time.Second

// WatchQueues adds gauges of every queue, read from Redis at each scrape.
// Every process that serves /metrics reports the same queues: aggregate
// with max by (queue), not sum.
func (r *Registry) WatchQueues(insp QueueInspector, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	r.reg.MustRegister(&queueCollector{insp: insp, log: log})
}

var (
	queueUp = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "scrape_up"),
		"1 if the queues could be read from Redis at this scrape, else 0.", nil, nil)
	queueSize = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "size"),
		"Tasks in the queue, in every state but completed.", []string{"queue"}, nil)
	queueTasks = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "tasks"),
		"Tasks in the queue by state.", []string{"queue", "state"}, nil)
	queueLatency = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "latency_seconds"),
		"Age of the oldest pending task of the queue: how far the workers are behind.", []string{"queue"}, nil)
	queuePaused = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "paused"),
		"1 if the queue is paused.", []string{"queue"}, nil)
	queueMemory = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "memory_bytes"),
		"Approximate Redis memory the queue's tasks use.", []string{"queue"}, nil)
	queueProcessed = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "processed_total"),
		"Tasks processed from the queue (succeeded or failed), all workers, as kept by asynq in Redis.", []string{"queue"}, nil)
	queueFailed = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", "failed_total"),
		"Task attempts of the queue that failed, all workers, as kept by asynq in Redis.", []string{"queue"}, nil)
)

type queueCollector struct {
	insp QueueInspector
	log  *slog.Logger
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueUp, queueSize, queueTasks, queueLatency, queuePaused,
		queueMemory, queueProcessed, queueFailed} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	// The inspector takes no context; a Redis that hangs must not hang the
	// scrape, so read in a goroutine and give up after the timeout (the
	// Redis client's own timeouts end the goroutine).
	done := make(chan []*asynq.QueueInfo, 1)
	go func() {
		infos, err := c.read()
		if err != nil {
			c.log.Warn("metrics: cannot read queues", "err", err)
			done <- nil
			return
		}
		done <- infos
	}()
	var infos []*asynq.QueueInfo
	select {
	case infos = <-done:
	case <-time.After(queueScrapeTimeout):
		c.log.Warn("metrics: reading queues timed out")
	}
	if infos == nil {
		ch <- prometheus.MustNewConstMetric(queueUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(queueUp, prometheus.GaugeValue, 1)
	for _, qi := range infos {
		q := qi.Queue
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{q}, labels...)...)
		}
		gauge(queueSize, float64(qi.Size))
		for state, n := range map[string]int{"pending": qi.Pending, "active": qi.Active, "scheduled": qi.Scheduled,
			"retry": qi.Retry, "archived": qi.Archived, "completed": qi.Completed, "aggregating": qi.Aggregating} {
			gauge(queueTasks, float64(n), state)
		}
		gauge(queueLatency, qi.Latency.Seconds())
		paused := 0.0
		if qi.Paused {
			paused = 1
		}
		gauge(queuePaused, paused)
		gauge(queueMemory, float64(qi.MemoryUsage))
		ch <- prometheus.MustNewConstMetric(queueProcessed, prometheus.CounterValue, float64(qi.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(queueFailed, prometheus.CounterValue, float64(qi.FailedTotal), q)
	}
}

func (c *queueCollector) read() ([]*asynq.QueueInfo, error) {
	names, err := c.insp.Queues()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]*asynq.QueueInfo, 0, len(names))
	for _, q := range names {
		qi, err := c.insp.GetQueueInfo(q)
		if err != nil {
			return nil, err
		}
		out = append(out, qi)
	}
	return out, nil
}
