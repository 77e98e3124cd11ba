package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// target is an HTTP server under load: one keep-alive connection per
// client of the load generator.
type target struct {
	base   string
	client *http.Client
}

func newTarget(base string, conns int) *target {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	return &target{base: base, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (t *target) close() { t.client.CloseIdleConnections() }

// post sends a JSON body and returns the status, having read the answer.
func (t *target) post(ctx context.Context, path string, body []byte, header map[string]string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	return resp.StatusCode, nil
}

// loadStats is what a load run saw: every latency, the answers by status,
// transport failures.
type loadStats struct {
	lat      []time.Duration
	status   map[int]int
	failed   int
	firstErr error
	elapsed  time.Duration

	// Open loop only: how late each request was sent, and the most
	// requests in flight at once.
	lag          []time.Duration
	mostInFlight int
}

func (s *loadStats) n() int { return len(s.lat) }

func (s *loadStats) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.n()) / s.elapsed.Seconds()
}

func (s *loadStats) add(o loadStats) {
	s.lat = append(s.lat, o.lat...)
	if s.status == nil {
		s.status = map[int]int{}
	}
	for k, v := range o.status {
		s.status[k] += v
	}
	s.failed += o.failed
	s.lag = append(s.lag, o.lag...)
	s.mostInFlight = max(s.mostInFlight, o.mostInFlight)
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
	s.elapsed += o.elapsed
}

// answers lists the statuses, e.g. "201: 12000, 409: 600".
func (s *loadStats) answers() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.status)) {
		parts = append(parts, fmt.Sprintf("%d: %d", k, s.status[k]))
	}
	if s.failed > 0 {
		parts = append(parts, fmt.Sprintf("failed: %d (%v)", s.failed, s.firstErr))
	}
	return strings.Join(parts, ", ")
}

// unexpected counts answers whose status is not among want.
func (s *loadStats) unexpected(want ...int) int {
	n := s.failed
	for k, v := range s.status {
		if !slices.Contains(want, k) {
			n += v
		}
	}
	return n
}

// closedLoad runs clients that each send the next request as soon as the
// last is answered, until dur has passed (dur > 0) or n requests have
// been sent (n > 0). send is given the request's sequence number.
func closedLoad(ctx context.Context, clients int, dur time.Duration, n int, send func(ctx context.Context, i int) (int, error)) loadStats {
	var next atomic.Int64
	var mu sync.Mutex
	res := loadStats{status: map[int]int{}}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			status := map[int]int{}
			failed := 0
			var firstErr error
			for ctx.Err() == nil && (dur <= 0 || time.Now().Before(deadline)) {
				i := int(next.Add(1) - 1)
				if n > 0 && i >= n {
					break
				}
				t0 := time.Now()
				code, err := send(ctx, i)
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				status[code]++
			}
			mu.Lock()
			res.add(loadStats{lat: lat, status: status, failed: failed, firstErr: firstErr})
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// openLoad sends requests at a mean rate for dur, whatever the pace of
// the answers: an open loop, arrivals of a Poisson process as many
// independent clients make them, each request on its own goroutine. A
// request's latency counts from its scheduled time, so a server that
// falls behind is charged for the wait (no coordinated omission); the
// transport's connection cap bounds the requests in flight, and the time
// a request waits for a connection counts too. So does the generator's
// own lateness in sending (its dispatch lag, kept to be shown beside).
func openLoad(ctx context.Context, rate float64, dur time.Duration, send func(ctx context.Context, i int) (int, error)) loadStats {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var mu sync.Mutex
	res := loadStats{status: map[int]int{}}
	var inflight, most atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var at time.Duration
	for i := 0; ctx.Err() == nil; i++ {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if at >= dur {
			break
		}
		sched := start.Add(at)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		res.lag = append(res.lag, time.Since(sched))
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := inflight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			code, err := send(ctx, i)
			inflight.Add(-1)
			lat := time.Since(sched)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.failed++
				if res.firstErr == nil {
					res.firstErr = err
				}
				return
			}
			res.lat = append(res.lat, lat)
			res.status[code]++
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.mostInFlight = int(most.Load())
	return res
}

// sweepPoint is one concurrency of a sweep.
type sweepPoint struct {
	clients int
	rate    float64
	p99     time.Duration
}

// sweepClients runs the closed loop for dur at each number of clients and
// returns the points and the knee; every answer must have one of the
// want statuses.
func sweepClients(ctx context.Context, candidates []int, dur time.Duration, send func(ctx context.Context, i int) (int, error), want ...int) ([]sweepPoint, int, error) {
	var points []sweepPoint
	for _, c := range candidates {
		r := closedLoad(ctx, c, dur, 0, send)
		if r.n() == 0 || r.unexpected(want...) > 0 {
			return nil, 0, fmt.Errorf("sweep at %d clients: %s", c, r.answers())
		}
		points = append(points, sweepPoint{c, r.rate(), percentile(r.lat, 0.99)})
	}
	return points, knee(points).clients, nil
}

// knee picks the least concurrency that gets within 10 % of the best
// throughput of the sweep: on a closed loop, clients past it mostly add
// queueing delay (latency grows with them, throughput hardly does).
func knee(points []sweepPoint) sweepPoint {
	best := 0.0
	for _, p := range points {
		best = max(best, p.rate)
	}
	sorted := slices.Clone(points)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].clients < sorted[j].clients })
	for _, p := range sorted {
		if p.rate >= 0.9*best {
			return p
		}
	}
	return sorted[len(sorted)-1]
}

func describeSweep(points []sweepPoint) string {
	var parts []string
	for _, p := range points {
		parts = append(parts, fmt.Sprintf("%d: %.0f/s p99 %s", p.clients, p.rate, ms(p.p99)))
	}
	return strings.Join(parts, " · ")
}
