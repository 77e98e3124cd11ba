// Command bench prints the platform's performance figures, each beside a
// baseline measured in the same run (the machine is noisy: ratios travel
// better than absolute numbers). Run it through `make bench`, which starts
// real PostgreSQL (durable: fsync on) and Redis. Benchmarks never run in
// tests, and tests never assert timings.
//
//	go run ./bench [-only startup,idle] [-quick] [-set KEY=VALUE]... [-profile DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Row is one printed figure.
type Row struct {
	Metric   string
	Value    string
	Baseline string // what it is compared with, measured in the same run
	Ratio    string
	Target   string
	Verdict  string // "ok", "MISS", or "" when there is no target
}

// Env is what every scenario gets.
type Env struct {
	Binary   string // the rentalportal binary, built for this run
	RedisURL string
	PGURL    string
	Quick    bool // shorter runs (smoke-testing the bench itself)
	Tmp      string
	// Set is extra configuration for every process of the binary a
	// scenario starts (-set KEY=VALUE), applied last: to try a setting
	// (STRIPE_WEBHOOK_BATCH_FLUSHERS, DB_MAX_OPEN_CONNS, ...) on a figure.
	Set map[string]string
	// Profiles, if set, is where scenarios write CPU profiles of an
	// in-process twin of the process under test (-profile DIR).
	Profiles string
}

type scenario struct {
	name string
	desc string
	run  func(ctx context.Context, env Env) ([]Row, error)
}

// scenarios lists every benchmark, in the order they print.
var scenarios = []scenario{
	{"startup", "start-up of `all` on embedded defaults to readiness 200", benchStartup},
	{"rss", "idle RSS of each role", benchIdleRSS},
	{"idle", "idle cost of worker polling on Redis vs. the pickup latency it buys", benchIdlePolling},
	{"ratelimit", "API overhead of the Redis rate limiter on a cheap authenticated route", benchRateLimit},
	{"bookings", "booking creation through the real API process (issue 4)", benchBookings},
	{"transitions", "booking transitions (booking:expire) through the real worker process (issue 4)", benchTransitions},
	{"webhooks", "Stripe webhook ingestion and webhook → booking confirmed through the real processes (issue 5)", benchWebhooks},
	{"imaging", "image variants vs. decode, quality, and the worker's memory under a burst of uploads (issue 6)", benchImaging},
}

func main() {
	only := flag.String("only", "", "comma-separated scenario names (default: all)")
	quick := flag.Bool("quick", false, "short runs, to check the bench itself works")
	serve := flag.String("serve", "", "internal: run a scenario's baseline server (bare-gin) instead")
	set := map[string]string{}
	flag.Func("set", "KEY=VALUE: configuration for every process under test (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		set[k] = v
		return nil
	})
	profiles := flag.String("profile", "", "directory for CPU profiles of in-process twins of the processes under test")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *serve != "" {
		if err := serveBaseline(ctx, *serve); err != nil {
			fmt.Fprintln(os.Stderr, "bench -serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, *only, *quick, set, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, only string, quick bool, set map[string]string, profiles string) error {
	tmp, err := os.MkdirTemp("", "rentalportal-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := Env{Binary: filepath.Join(tmp, "rentalportal"), RedisURL: os.Getenv("TEST_REDIS_URL"),
		PGURL: os.Getenv("TEST_DATABASE_URL"), Quick: quick, Tmp: tmp, Set: set, Profiles: profiles}
	if env.RedisURL == "" || env.PGURL == "" {
		return fmt.Errorf("TEST_REDIS_URL and TEST_DATABASE_URL must be set: run `make bench`")
	}
	build := exec.CommandContext(ctx, "go", "build", "-tags", "nomsgpack", "-trimpath", "-ldflags", "-s -w", "-o", env.Binary, "./cmd/rentalportal")
	build.Stderr = os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build` and the Docker image
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	fmt.Printf("Rental Portal benchmarks — %s, %d CPU, Go %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), goVersion())
	fmt.Println("Each figure is printed beside a baseline measured in the same run; ratio = value / baseline.")
	for _, k := range slices.Sorted(maps.Keys(set)) {
		fmt.Printf("Processes under test run with %s=%s\n", k, set[k])
	}
	failed := 0
	for _, s := range scenarios {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		fmt.Printf("\n== %s: %s\n", s.name, s.desc)
		start := time.Now()
		rows, err := s.run(ctx, env)
		if err != nil {
			fmt.Printf("   ERROR: %v\n", err)
			failed++
			continue
		}
		printRows(rows)
		fmt.Printf("   (%s)\n", time.Since(start).Round(100*time.Millisecond))
	}
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) failed to run", failed)
	}
	return nil
}

// serveBaseline runs one of the baseline servers scenarios start as
// processes of their own (this binary, re-executed).
func serveBaseline(ctx context.Context, name string) error {
	switch name {
	case "bare-gin":
		return serveBareGin(ctx)
	}
	return fmt.Errorf("unknown baseline server %q", name)
}

func printRows(rows []Row) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   metric\tvalue\tbaseline (same run)\tratio\ttarget\t")
	for _, r := range rows {
		v := r.Verdict
		if v != "" {
			v = "[" + v + "]"
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s %s\t\n", r.Metric, r.Value, r.Baseline, r.Ratio, r.Target, v)
	}
	tw.Flush()
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func ratio(v, base float64) string {
	if base == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
