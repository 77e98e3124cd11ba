// Package e2e holds black-box tests: they build the real rentalportal binary,
// start it as a process with its own environment, and speak HTTP to it as
// clients, Stripe and operators do.
package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
)

// Proc is a running rentalportal process (testkit.Process) with the base
// URL of its HTTP server, if it has one.
type Proc struct {
	*testkit.Process
	t    testing.TB
	Base string // http://host:port of its API, dashboard or probe server
}

// Start runs `rentalportal <role>` with env on top of test defaults (its own
// DATA_DIR and loopback ports picked by the kernel) and waits for its
// banner; the test's end stops it.
func Start(t testing.TB, role string, env map[string]string) *Proc {
	t.Helper()
	all := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DASHBOARD_ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir(),
		"LOG_LEVEL": "info"}
	if role == "worker" || role == "scheduler" {
		all["METRICS_ADDR"] = "127.0.0.1:0"
	}
	for k, v := range env {
		all[k] = v
	}
	p := &Proc{Process: testkit.Start(t, role, all), t: t}
	for _, name := range []string{"API", "Dashboard", "Probes"} {
		if _, ok := p.URLs[name]; ok {
			p.Base = p.Process.Base(name)
			break
		}
	}
	return p
}

// Get fetches path from the process and decodes a JSON body into out (if non-nil).
func (p *Proc) Get(path string, out any) int {
	p.t.Helper()
	resp, err := http.Get(p.Base + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			p.t.Fatalf("GET %s: %d %s: %v", path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

// WaitStatus polls path until it answers want, or fails after timeout.
func (p *Proc) WaitStatus(path string, want int, timeout time.Duration) time.Duration {
	p.t.Helper()
	return testkit.WaitStatus(p.t, p.Base+path, want, timeout)
}
