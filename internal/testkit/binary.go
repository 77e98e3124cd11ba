package testkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/rentalportal once per test process and returns the
// path of the executable. It lives in a directory of the process's own
// (binDirPrefix + pid) under the temporary directory: Main deletes it when
// the package's tests end, and a later test process deletes those of
// processes that are gone (killed before they could). Each build is about
// 100 MB; left behind, every `make test` cost that much disk per package
// that starts the binary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStaleBinaries()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", binDirPrefix, os.Getpid()))
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		buildPath = filepath.Join(dir, "rentalportal")
		// Built as `make build` builds it (tags included).
		cmd := exec.Command("go", "build", "-tags", "nomsgpack", "-o", buildPath, "-ldflags", "-X main.version=test",
			"github.com/rentalportal/portal/cmd/rentalportal")
		cmd.Dir = RepoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// binDirPrefix names the directories of Binary's builds.
const binDirPrefix = "rentalportal-testbin-"

// Main runs the tests of a package whose tests use Binary, then deletes
// the build: its TestMain is testkit.Main(m).
func Main(m *testing.M) {
	code := m.Run()
	if buildPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

// removeStaleBinaries deletes the builds of test processes that are gone.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), binDirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// RepoRoot is the directory of go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// ArtifactsDir returns artifacts/<name> under the repository (git-ignored),
// created, for screenshots and other files a test leaves for people.
func ArtifactsDir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "artifacts", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Process is a running rentalportal.
type Process struct {
	// URLs are the banner's links by name ("API", "Swagger UI", "Dashboard",
	// "Home", "Metrics", "Health", "Probes").
	URLs   map[string]string
	output *SyncBuffer
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // the exit status, once done is closed
}

// Stop sends SIGTERM and waits up to timeout for the process to exit; it
// returns how long that took and the exit error (nil: exit code 0).
func (p *Process) Stop(timeout time.Duration) (time.Duration, error) {
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

// Kill sends SIGKILL and waits for the process to die.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has exited, and with what.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Output is what the process printed so far (stdout and stderr).
func (p *Process) Output() string { return p.output.String() }

// Base is the scheme://host:port of the named URL.
func (p *Process) Base(name string) string {
	u := p.URLs[name]
	if i := strings.Index(u[len("http://"):], "/"); i >= 0 {
		return u[:len("http://")+i]
	}
	return u
}

var bannerLink = regexp.MustCompile(`^\s+([A-Za-z ]+?):\s+(https?://\S+)`)

// Start runs `rentalportal <role>` with exactly env (plus PATH, HOME and
// TMPDIR), waits until it prints its banner, and stops it (SIGTERM, then
// SIGKILL) when the test ends. It builds the binary (Binary): the package's
// TestMain should be testkit.Main. Give it HTTP_ADDR=127.0.0.1:0 (and the
// like) so that tests never collide on ports; the banner says where it
// listens.
func Start(t testing.TB, role string, env map[string]string) *Process {
	t.Helper()
	bin := Binary(t)
	cmd := exec.Command(bin, role)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &SyncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{URLs: map[string]string{}, output: out, cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	var urlsMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(out, line)
			if m := bannerLink.FindStringSubmatch(line); m != nil {
				urlsMu.Lock()
				p.URLs[m[1]] = m[2]
				urlsMu.Unlock()
			}
			if strings.HasPrefix(line, "Ready in") {
				readyOnce.Do(func() { close(ready) })
			}
		}
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if exited, _ := p.Exited(); !exited {
			_, _ = p.Stop(15 * time.Second)
		}
		if t.Failed() {
			t.Logf("rentalportal %s output:\n%s", role, out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("rentalportal %s exited before it was ready: %v\n%s", role, p.err, out.String())
	case <-ctx.Done():
		t.Fatalf("rentalportal %s not ready after 60s:\n%s", role, out.String())
	}
	urlsMu.Lock()
	defer urlsMu.Unlock()
	return p
}

// WaitStatus polls url until it answers want, failing the test after
// timeout; it returns how long it took.
func WaitStatus(t testing.TB, url string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	client := &http.Client{Timeout: 3 * time.Second}
	last := 0
	for time.Since(start) < timeout {
		resp, err := client.Get(url)
		if err == nil {
			last = resp.StatusCode
			resp.Body.Close()
			if last == want {
				return time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered %d within %s (last %d)", url, want, timeout, last)
	return 0
}
