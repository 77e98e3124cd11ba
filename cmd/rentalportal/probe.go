package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// defaultProbeAddr is where roles without an HTTP server of their own
// (worker, scheduler) serve their probes (and metrics) unless METRICS_ADDR
// says otherwise.
const defaultProbeAddr = ":9090"

// probeHandler serves liveness and readiness for a role with no API: ready
// when each dependency answers a ping.
func probeHandler(deps map[string]func(context.Context) error, extra http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/liveness", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "alive"})
	})
	mux.HandleFunc("GET /health/readiness", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{}
		code := http.StatusOK
		for name, ping := range deps {
			if err := ping(ctx); err != nil {
				checks[name], code = "down", http.StatusServiceUnavailable
			} else {
				checks[name] = "up"
			}
		}
		status := "ready"
		if code != http.StatusOK {
			status = "not_ready"
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	})
	if extra != nil {
		mux.Handle("/", extra)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// runHealthcheck is for container health checks (the image has no curl):
// `rentalportal healthcheck [URL]` exits 0 when URL (default: this
// machine's API readiness probe) answers 200.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	url := ""
	if len(args) > 0 {
		url = args[0]
	} else {
		addr := getenv("HTTP_ADDR")
		if addr == "" {
			addr = ":8080"
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("HTTP_ADDR %q: %w", addr, err)
		}
		url = "http://127.0.0.1:" + port + "/health/readiness"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s", url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
