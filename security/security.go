// Package security records security events: structured log lines marked
// security=true with an event= kind, counted through an Observer (the
// metrics package implements it). It watches for bursts of refused
// requests per client address (counted in Redis, so across replicas) and
// recognises requests that look like probes. It never blocks anything:
// parameterized SQL and output encoding are the real defences; these
// events are for people and alerts. It imports nothing of ours.
package security

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event kinds.
const (
	EventAuthFailureBurst = "auth_failure_burst" // many 401/403 for one address in a short window
	EventBlocked          = "blocked"            // an address or user put on the block list
	EventRateLimited      = "rate_limited"       // a request refused by a rate limit
	EventSuspicious       = "suspicious_request" // a path or query matching a probe pattern
	EventSignatureFailure = "signature_failure"  // a webhook whose signature did not verify
	EventAccountThrottled = "account_throttled"  // logins to an account slowed after many failures
	EventLimiterDown      = "limiter_unavailable"
)

// Observer counts security events by kind.
type Observer interface {
	// Event counts one event of kind.
	Event(kind string)
}

// Counter is an in-memory Observer (tests, and a default before metrics
// are wired).
type Counter struct {
	mu sync.Mutex
	m  map[string]int64
}

// Event implements Observer.
func (c *Counter) Event(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[kind]++
}

// Count returns how many events of kind were seen.
func (c *Counter) Count(kind string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[kind]
}

// Config configures a Monitor.
type Config struct {
	// BurstCount refused requests (401/403) from one address within
	// BurstWindow make an auth_failure_burst event (once per window);
	// 0 turns the check off.
	BurstCount  int
	BurstWindow time.Duration
	// Timeout bounds each Redis call (default 200ms).
	Timeout time.Duration
	// Prefix starts every Redis key (default "sec:").
	Prefix string
}

// Monitor logs and counts security events. A nil *Monitor does nothing.
type Monitor struct {
	log *slog.Logger
	obs Observer
	rdb redis.UniversalClient
	cfg Config
}

// New returns a monitor. obs and rdb may be nil (no counting; no burst
// detection).
func New(log *slog.Logger, obs Observer, rdb redis.UniversalClient, cfg Config) *Monitor {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sec:"
	}
	return &Monitor{log: log, obs: obs, rdb: rdb, cfg: cfg}
}

// Event logs one security event at warn level (with the request ID the
// context carries) and counts it.
func (m *Monitor) Event(ctx context.Context, kind string, attrs ...slog.Attr) {
	if m == nil {
		return
	}
	if m.obs != nil {
		m.obs.Event(kind)
	}
	all := make([]slog.Attr, 0, len(attrs)+2)
	all = append(all, slog.Bool("security", true), slog.String("event", kind))
	m.log.LogAttrs(ctx, slog.LevelWarn, "security event", append(all, attrs...)...)
}

// Count counts an event without logging it (a repeat of one just logged).
func (m *Monitor) Count(kind string) {
	if m != nil && m.obs != nil {
		m.obs.Event(kind)
	}
}

// SignatureFailure records a webhook whose signature did not verify. The
// webhook handler calls it before answering 400.
func (m *Monitor) SignatureFailure(ctx context.Context, ip string) {
	m.Event(ctx, EventSignatureFailure, slog.String("client_ip", ip))
}

// AuthFailure counts a 401 or 403 answered to ip; the BurstCount-th within
// a window logs an auth_failure_burst event. Redis errors are ignored: the
// count is a signal, not a control.
func (m *Monitor) AuthFailure(ctx context.Context, ip string, status int) {
	if m == nil || m.rdb == nil || m.cfg.BurstCount <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeout)
	defer cancel()
	key := m.cfg.Prefix + "authfail:" + ip
	var incr *redis.IntCmd
	_, err := m.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, key, 0, m.cfg.BurstWindow)
		incr = p.Incr(ctx, key)
		return nil
	})
	if err != nil {
		m.log.DebugContext(ctx, "security: auth failure not counted", "err", err)
		return
	}
	if incr.Val() == int64(m.cfg.BurstCount) {
		m.Event(ctx, EventAuthFailureBurst, slog.String("client_ip", ip), slog.Int("status", status),
			slog.Int("count", m.cfg.BurstCount), slog.Duration("window", m.cfg.BurstWindow))
	}
}
