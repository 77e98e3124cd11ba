package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// benchRateLimit: what the limiter costs a cheap authenticated route a
// client really calls. Two `rentalportal api` processes built for this run,
// identical but for RATE_LIMIT_ENABLED, on one PostgreSQL schema and one
// Redis; a closed-loop load of `clients` concurrent keep-alive clients for
// a fixed time against GET /api/v1/users/me (JWT verification, the limiter
// when on, one SELECT of the user) with valid tokens. The user limit is
// high enough never to refuse: the figure is the cost of asking. With the
// limiter on, two loads: every client with its own user (requests of
// different subjects: one script run each), and all clients with one user
// (concurrent requests of one subject, which the limiter counts in one
// script run per round trip: the heavy hitter a limiter is for). The arms
// alternate in short rounds (off, users, one; one, users, off; ...) so
// drift of the shared machine hits all, and the verdict is on the median of the rounds'
// ratios; CPU is read per arm from the API process (/proc), from Redis
// (INFO) and from this process (the load generator).
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
	schema := "bench_ratelimit"
	if err := resetSchema(ctx, env.PGURL, schema); err != nil {
		return nil, err
	}
	common := map[string]string{"DATABASE_URL": schemaURL(env.PGURL, schema), "REDIS_URL": env.RedisURL,
		"JWT_SECRET": strings.Repeat("b", 32), "BCRYPT_COST": "4", "RATE_LIMIT_USER": "1000000/s",
		"DATA_DIR": filepath.Join(env.Tmp, "ratelimit")}
	var bases [2]string
	var procs [2]*proc
	for i, enabled := range []string{"false", "true"} {
		e := map[string]string{"RATE_LIMIT_ENABLED": enabled, "HTTP_ADDR": freeAddr()}
		for k, v := range common {
			e[k] = v
		}
		// One at a time: the first applies the migrations.
		p, err := startProc(ctx, env.Binary, []string{"api"}, e)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		bases[i], procs[i] = "http://"+e["HTTP_ADDR"], p
		if _, err := waitHTTP(ctx, bases[i]+"/health/readiness", 20*time.Second); err != nil {
			return nil, err
		}
	}
	// Short rounds, many of them: a burst of other work on the machine
	// then spoils a round or two, and the median of the rounds' ratios
	// shrugs it off.
	clients, dur, rounds := 16, 2500*time.Millisecond, 8
	if env.Quick {
		dur, rounds = 2*time.Second, 1
	}
	// Registered where nothing limits registering.
	tokens := make([]string, clients)
	for i := range tokens {
		if tokens[i], err = registerUser(ctx, bases[0]); err != nil {
			return nil, err
		}
	}
	off := &apiArm{base: bases[0], proc: procs[0], tokens: tokens}
	users := &apiArm{base: bases[1], proc: procs[1], tokens: tokens}
	one := &apiArm{base: bases[1], proc: procs[1], tokens: tokens[:1]}
	arms := []*apiArm{off, users, one}
	// Warm up (connections, the Lua script cached in Redis, PostgreSQL's
	// plan cache).
	for _, a := range arms {
		if _, err := closedLoop(ctx, a.base, a.tokens, clients, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	for i := 0; i < rounds; i++ {
		// Odd rounds go backwards (off, users, one; one, users, off; ...):
		// an arm's place in the round (after a pause, after the other API
		// process ran) is no bias of its own.
		order := slices.Clone(arms)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, a := range order {
			c0, rcpu0, _ := redisStats(ctx, rdb)
			cpu0, gen0 := a.proc.cpu(), processCPU()
			r, err := closedLoop(ctx, a.base, a.tokens, clients, dur)
			if err != nil {
				return nil, err
			}
			r.cpu, r.genCPU = a.proc.cpu()-cpu0, processCPU()-gen0
			c1, rcpu1, _ := redisStats(ctx, rdb)
			r.redisCmds, r.redisCPU = c1-c0, time.Duration((rcpu1-rcpu0)*float64(time.Second))
			a.res.add(r)
			a.rounds = append(a.rounds, r.rps())
		}
	}
	f := &off.res
	rows := []Row{{Metric: fmt.Sprintf("GET /users/me, limiter off (%d clients, %s × %d)", clients, dur, rounds),
		Value: fmt.Sprintf("%.0f/s", f.rps()), Baseline: "-"}}
	for _, arm := range []struct {
		name string
		a    *apiArm
	}{{fmt.Sprintf("%d users", clients), users}, {"one user", one}} {
		o := &arm.a.res
		p99Off, p99On := percentile(f.lat, 0.99), percentile(o.lat, 0.99)
		added := p99On - p99Off
		med := medianRatio(arm.a.rounds, off.rounds)
		rows = append(rows,
			Row{Metric: "limiter on, " + arm.name + ": req/s", Value: fmt.Sprintf("%.0f/s", o.rps()),
				Baseline: fmt.Sprintf("limiter off %.0f/s", f.rps()), Ratio: fmt.Sprintf("%.2f× median of rounds (all: %s)", med, ratio(o.rps(), f.rps())),
				Target: "≥ 0.85×", Verdict: verdict(med >= 0.85)},
			Row{Metric: "  p99", Value: msPrecise(p99On), Baseline: "limiter off " + msPrecise(p99Off),
				Ratio:  ratio(float64(p99On), float64(p99Off)) + fmt.Sprintf(" (%+.2f ms)", float64(added.Microseconds())/1000),
				Target: "≤ +1 ms", Verdict: verdict(added <= time.Millisecond)},
			Row{Metric: "  p50", Value: msPrecise(percentile(o.lat, 0.5)), Baseline: "limiter off " + msPrecise(percentile(f.lat, 0.5)),
				Ratio: ratio(float64(percentile(o.lat, 0.5)), float64(percentile(f.lat, 0.5)))},
			Row{Metric: "  CPU per request: API process", Value: us(o.cpu, o.n),
				Baseline: "limiter off " + us(f.cpu, f.n), Ratio: ratio(perReq(o.cpu, o.n), perReq(f.cpu, f.n))},
			Row{Metric: "  CPU per request: Redis (all its clients)", Value: us(o.redisCPU, o.n) + fmt.Sprintf(", %.1f cmds", float64(o.redisCmds)/float64(max(o.n, 1))),
				Baseline: "limiter off " + us(f.redisCPU, f.n)},
			Row{Metric: "  CPU per request: load generator (this process)", Value: us(o.genCPU, o.n), Baseline: "limiter off " + us(f.genCPU, f.n)},
			Row{Metric: "  errors (non-200 answers)", Value: fmt.Sprint(o.errors), Baseline: fmt.Sprint(f.errors)})
	}
	return rows, nil
}

// apiArm is one load of the comparison, the API process serving it, and
// what it measured.
type apiArm struct {
	base   string
	proc   *proc
	tokens []string // client i sends tokens[i % len]
	res    loadResult
	rounds []float64 // req/s of each round
}

// medianRatio is the median of a[i]/base[i], the rounds' ratios.
func medianRatio(a, base []float64) float64 {
	r := make([]float64, 0, len(a))
	for i := range a {
		if i < len(base) && base[i] > 0 {
			r = append(r, a[i]/base[i])
		}
	}
	if len(r) == 0 {
		return 0
	}
	sort.Float64s(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// registerUser creates a user through the API and returns its access
// token.
func registerUser(ctx context.Context, base string) (string, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	body := fmt.Sprintf(`{"email":"bench-%s@example.com","password":"bench-password-1","name":"Bench","role":"renter"}`, hex.EncodeToString(b))
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/auth/register", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.AccessToken == "" {
		return "", fmt.Errorf("register: %s, %v", resp.Status, err)
	}
	return out.AccessToken, nil
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

// cpu is the user + system CPU the process has used (clock ticks of
// /proc/PID/stat, 10 ms each).
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func msPrecise(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

type loadResult struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
	cpu       time.Duration // the API process
	genCPU    time.Duration // this process (the load generator)
	redisCPU  time.Duration // the Redis server, all its clients
	redisCmds int64
}

func (r *loadResult) add(o loadResult) {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	r.cpu += o.cpu
	r.genCPU += o.genCPU
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
// one is answered, for dur, client i with tokens[i % len]; it returns every
// latency and the count.
func closedLoop(ctx context.Context, base string, tokens []string, clients int, dur time.Duration) (loadResult, error) {
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
		auth := "Bearer " + tokens[i%len(tokens)]
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			n, bad := 0, 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/users/me", nil)
				req.Header.Set("Authorization", auth)
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
				if resp.StatusCode != http.StatusOK {
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
