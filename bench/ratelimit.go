package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/security"
)

// benchRateLimit: what the limiter costs a cheap authenticated route. Two
// API servers in this process, identical but for the limiter (Redis GCRA
// per user, with the block-list check), each on its own loopback listener;
// a closed-loop load of `clients` concurrent keep-alive clients for a
// fixed time against GET /api/v1/users/me with a valid token. On this
// branch that route is requireUser and a constant JSON answer (the
// placeholder), so it is all auth and middleware, no database. The arms
// alternate (off, on, off, on) so drift of the shared machine hits both.
func benchRateLimit(ctx context.Context, env Env) ([]Row, error) {
	opt, err := asynq.ParseRedisURI(env.RedisURL)
	if err != nil {
		return nil, err
	}
	rdb := opt.MakeRedisClient().(redis.UniversalClient)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "bench-rl-" + hex.EncodeToString(b) + ":"
	// A limit that never refuses: the figure is the cost of asking.
	limiter := ratelimit.New(rdb, ratelimit.Config{Prefix: prefix, Policies: map[string]ratelimit.Limit{
		ratelimit.PolicyUser: {Count: 1_000_000, Period: time.Second, Burst: 1_000_000}}})
	log := slog.New(slog.DiscardHandler)
	cfg := api.Config{Env: "production", MaxBodyBytes: 1 << 20, JWTSecret: strings.Repeat("b", 32),
		JWTIssuer: "bench", JWTAudience: "bench", JWTTTL: time.Hour}
	sec := security.New(log, nil, rdb, security.Config{Prefix: prefix})
	without, err := api.NewServer(cfg, api.Deps{Log: log, Security: sec})
	if err != nil {
		return nil, err
	}
	with, err := api.NewServer(cfg, api.Deps{Log: log, Security: sec, Limiter: limiter})
	if err != nil {
		return nil, err
	}
	token, _, err := api.NewTokens(cfg.JWTSecret, cfg.JWTIssuer, cfg.JWTAudience, cfg.JWTTTL).Issue(api.Principal{UserID: "bench-user", Role: api.RoleRenter})
	if err != nil {
		return nil, err
	}
	baseOff, stopOff, err := serveLoopback(without)
	if err != nil {
		return nil, err
	}
	defer stopOff()
	baseOn, stopOn, err := serveLoopback(with)
	if err != nil {
		return nil, err
	}
	defer stopOn()

	clients, dur, rounds := 16, 5*time.Second, 2
	if env.Quick {
		dur, rounds = 2*time.Second, 1
	}
	var off, on loadResult
	// Warm both (connections, Lua script cached in Redis).
	if _, err := closedLoop(ctx, baseOff, token, clients, 300*time.Millisecond); err != nil {
		return nil, err
	}
	if _, err := closedLoop(ctx, baseOn, token, clients, 300*time.Millisecond); err != nil {
		return nil, err
	}
	for i := 0; i < rounds; i++ {
		for _, arm := range []struct {
			base string
			res  *loadResult
		}{{baseOff, &off}, {baseOn, &on}} {
			c0, rcpu0, _ := redisStats(ctx, rdb)
			cpu0 := processCPU()
			r, err := closedLoop(ctx, arm.base, token, clients, dur)
			if err != nil {
				return nil, err
			}
			r.cpu = processCPU() - cpu0
			c1, rcpu1, _ := redisStats(ctx, rdb)
			r.redisCmds, r.redisCPU = c1-c0, time.Duration((rcpu1-rcpu0)*float64(time.Second))
			arm.res.add(r)
		}
	}
	_ = limiter.Reset(context.WithoutCancel(ctx), ratelimit.UserSubject("bench-user"))
	rpsOff, rpsOn := off.rps(), on.rps()
	p99Off, p99On := percentile(off.lat, 0.99), percentile(on.lat, 0.99)
	p50Off, p50On := percentile(off.lat, 0.5), percentile(on.lat, 0.5)
	added := p99On - p99Off
	note := fmt.Sprintf("%d clients, %s × %d", clients, dur, rounds)
	return []Row{
		{Metric: "GET /users/me req/s, limiter on (" + note + ")", Value: fmt.Sprintf("%.0f/s", rpsOn),
			Baseline: fmt.Sprintf("limiter off %.0f/s", rpsOff), Ratio: ratio(rpsOn, rpsOff),
			Target: "≥ 0.85×", Verdict: verdict(rpsOn >= 0.85*rpsOff)},
		{Metric: "GET /users/me p99, limiter on", Value: msPrecise(p99On), Baseline: "limiter off " + msPrecise(p99Off),
			Ratio:  ratio(float64(p99On), float64(p99Off)) + fmt.Sprintf(" (%+.2f ms)", float64(added.Microseconds())/1000),
			Target: "≤ +1 ms", Verdict: verdict(added <= time.Millisecond)},
		{Metric: "GET /users/me p50, limiter on", Value: msPrecise(p50On), Baseline: "limiter off " + msPrecise(p50Off),
			Ratio: ratio(float64(p50On), float64(p50Off))},
		{Metric: "CPU per request: this process (server + load generator)", Value: us(on.cpu, on.n),
			Baseline: "limiter off " + us(off.cpu, off.n), Ratio: ratio(perReq(on.cpu, on.n), perReq(off.cpu, off.n))},
		{Metric: "CPU per request: Redis (all its clients)", Value: us(on.redisCPU, on.n) + fmt.Sprintf(", %.1f cmds", float64(on.redisCmds)/float64(max(on.n, 1))),
			Baseline: "limiter off " + us(off.redisCPU, off.n)},
		{Metric: "errors (non-501 answers)", Value: fmt.Sprint(on.errors), Baseline: fmt.Sprint(off.errors)},
	}, nil
}

func perReq(d time.Duration, n int) float64 { return float64(d) / float64(max(n, 1)) }

func us(d time.Duration, n int) string { return fmt.Sprintf("%.0f µs", perReq(d, n)/1e3) }

// processCPU is the user + system CPU this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func msPrecise(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// serveLoopback serves h on a fresh loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

type loadResult struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	cpu       time.Duration // this process
	redisCPU  time.Duration // the Redis server, all its clients
	redisCmds int64
}

func (r *loadResult) add(o loadResult) {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	r.cpu += o.cpu
	r.redisCPU += o.redisCPU
	r.redisCmds += o.redisCmds
}

func (r *loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

// closedLoop runs clients that each send the next request when the last
// one is answered, for dur; it returns every latency and the count.
func closedLoop(ctx context.Context, base, token string, clients int, dur time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var mu sync.Mutex
	var res loadResult
	var firstErr error
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			n, bad := 0, 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/users/me", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				drain(resp)
				lat = append(lat, time.Since(t0))
				n++
				if resp.StatusCode != http.StatusNotImplemented {
					bad++
				}
			}
			mu.Lock()
			res.n += n
			res.errors += bad
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if firstErr != nil && ctx.Err() == nil {
		return res, firstErr
	}
	return res, nil
}

func drain(resp *http.Response) {
	buf := make([]byte, 512)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	resp.Body.Close()
}
