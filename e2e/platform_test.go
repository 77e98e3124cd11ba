// Package e2e holds black-box tests: they build the real rentalportal binary,
// start it as a process with its own environment, and speak HTTP to it as
// clients, Stripe and operators do.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rentalportal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "rentalportal")
	build := exec.Command("go", "build", "-o", binary, "../cmd/rentalportal")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build rentalportal:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Proc is a running rentalportal process.
type Proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	Base   string // http://host:port of its HTTP server, if it has one
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
	done   chan struct{}
	err    error
}

var urlLine = regexp.MustCompile(`^\s+(API|Dashboard|Probes):\s+(http://[^/\s]+)`)

// Start runs `rentalportal <role>` with env (on top of a minimal
// environment) and waits until it has printed its banner.
func Start(t testing.TB, role string, env map[string]string) *Proc {
	t.Helper()
	cmd := exec.Command(binary, role)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "HTTP_ADDR=127.0.0.1:0",
		"DASHBOARD_ADDR=127.0.0.1:0", "DATA_DIR=" + t.TempDir(), "LOG_LEVEL=info"}
	if role == "worker" || role == "scheduler" {
		cmd.Env = append(cmd.Env, "METRICS_ADDR=127.0.0.1:0")
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Proc{t: t, cmd: cmd, done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, b: &p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	banner := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		closed := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stdout.WriteString(line + "\n")
			if m := urlLine.FindStringSubmatch(line); m != nil && p.Base == "" {
				p.Base = m[2]
			}
			p.mu.Unlock()
			if strings.HasPrefix(line, "Ready in") && !closed {
				close(banner)
				closed = true
			}
		}
		if !closed {
			close(banner)
		}
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", role, p.Stdout(), p.Stderr())
		}
	})
	select {
	case <-banner:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start within 20s:\n%s\n%s", role, p.Stdout(), p.Stderr())
	}
	select {
	case <-p.done:
		t.Fatalf("%s exited at start-up: %v\n%s\n%s", role, p.err, p.Stdout(), p.Stderr())
	default:
	}
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// Stdout returns what the process printed so far.
func (p *Proc) Stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stdout.String() }

// Stderr returns the process's log so far.
func (p *Proc) Stderr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

// Stop sends SIGTERM and returns the exit error and how long it took.
func (p *Proc) Stop(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("did not exit within %s", timeout)
	}
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
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
	start := time.Now()
	client := &http.Client{Timeout: 3 * time.Second}
	last := 0
	for time.Since(start) < timeout {
		resp, err := client.Get(p.Base + path)
		if err == nil {
			last = resp.StatusCode
			resp.Body.Close()
			if last == want {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("%s never answered %d within %s (last %d)", path, want, timeout, last)
	return 0
}
