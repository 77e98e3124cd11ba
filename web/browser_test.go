package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/api/openapitest"
	"github.com/rentalportal/portal/internal/testkit"
)

// netLog records every URL the browser requested.
type netLog struct {
	mu   sync.Mutex
	urls []string
}

func (n *netLog) add(u string) { n.mu.Lock(); n.urls = append(n.urls, u); n.mu.Unlock() }

// offsite returns the requests that left this machine.
func (n *netLog) offsite() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, raw := range n.urls {
		u, err := url.Parse(raw)
		if err != nil {
			out = append(out, raw)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about", "chrome", "devtools":
			continue
		}
		if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
			out = append(out, raw)
		}
	}
	return out
}

// newBrowser starts headless Chromium ($TEST_CHROMIUM) with a fresh
// profile, no background networking, and every host but the loopback
// unresolvable, so a page that needs the Internet fails here.
func newBrowser(t *testing.T) (context.Context, *netLog) {
	t.Helper()
	chromium := testkit.Env(t, "TEST_CHROMIUM")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	log := &netLog{}
	// The first call starts the browser; it must not run under a timeout.
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			log.add(e.Request.URL)
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, log
}

// shot saves a screenshot under artifacts/screenshots/.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(testkit.ArtifactsDir(t, "screenshots"), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("save %s: %v", path, err)
	}
}

// steps runs the steps within 30 seconds; on failure it leaves a screenshot.
func steps(t *testing.T, ctx context.Context, step string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		shot(t, ctx, "failed-"+strings.ReplaceAll(step, " ", "-"))
		t.Fatalf("%s: %v", step, err)
	}
}

// eval evaluates JavaScript in the page (awaiting a promise).
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		shot(t, ctx, "failed-eval")
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

type fetched struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// fetchAs makes the page itself call the path, with its cookies and as
// the dashboard's own scripts would (same origin).
func fetchAs(t *testing.T, ctx context.Context, method, path string) fetched {
	t.Helper()
	return eval[fetched](t, ctx, fmt.Sprintf(`fetch(%q, {method: %q, headers: {"Accept": "application/json"}})
		.then(async r => ({status: r.status, body: await r.text()}))`, path, method))
}

// platform starts the real binary (role all) on the test Redis, so that the
// test can put tasks in its queues.
func startPlatform(t *testing.T) (*testkit.Process, testkit.Redis) {
	t.Helper()
	rdb := testkit.RedisDB(t)
	users := "alice:operator:" + hash(t, "alice-pw") + ",victor:viewer:" + hash(t, "victor-pw")
	p := testkit.Start(t, "all", map[string]string{
		"HTTP_ADDR":         "127.0.0.1:0",
		"DATA_DIR":          t.TempDir(),
		"REDIS_URL":         rdb.URL,
		"OPERATOR_USERS":    users,
		"METRICS_TOKEN":     "scrape-token",
		"SCHEDULER_ENABLED": "false",
		"LOG_LEVEL":         "warn",
	})
	return p, rdb
}

func login(t *testing.T, ctx context.Context, base, user, pw string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	steps(t, ctx, "login "+user,
		chromedp.Navigate(base+"/monitoring/"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("root")),
	)
}

func TestBrowser(t *testing.T) {
	p, rdb := startPlatform(t)
	base := p.Base("API")
	ctx, netlog := newBrowser(t)
	client := asynq.NewClientFromRedisClient(rdb.Client)
	insp := asynq.NewInspectorFromRedisClient(rdb.Client)

	// A task waiting in the default queue, and one that dies at once (no
	// handler knows its type and it has no retry budget): archived.
	if _, err := client.Enqueue(asynq.NewTask("test:waiting", []byte(`{}`)), asynq.Queue("default"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dead, err := client.Enqueue(asynq.NewTask("test:dead", []byte(`{}`)), asynq.Queue("critical"), asynq.MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to be archived", func() bool {
		ti, err := insp.GetTaskInfo("critical", dead.ID)
		return err == nil && ti.State == asynq.TaskStateArchived
	})

	t.Run("swagger ui lists the operations offline", func(t *testing.T) {
		steps(t, ctx, "swagger",
			chromedp.Navigate(base+"/api/docs"),
			chromedp.WaitVisible(chromedp.CSS(".opblock")),
		)
		want := 0
		for _, item := range openapitest.Document(t).Paths.Map() {
			want += len(item.Operations())
		}
		if ops := eval[int](t, ctx, `document.querySelectorAll('.opblock').length`); ops != want {
			t.Fatalf("Swagger UI shows %d operations, the document has %d", ops, want)
		}
		shot(t, ctx, "swagger-ui")
	})

	t.Run("swagger ui keeps the bearer token across reloads", func(t *testing.T) {
		steps(t, ctx, "authorize",
			chromedp.Navigate(base+"/api/docs"),
			chromedp.WaitVisible(chromedp.CSS(".opblock")),
			chromedp.Click(chromedp.CSS("button.authorize")),
			chromedp.WaitVisible(chromedp.CSS(".modal-ux input")),
			// The first scheme of the document is bearerAuth.
			chromedp.SendKeys(chromedp.CSS(".modal-ux input"), "token-from-a-login"),
			chromedp.Click(chromedp.CSS(".modal-ux .auth-btn-wrapper button.authorize")),
			chromedp.Click(chromedp.CSS(".modal-ux button.btn-done")),
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS(".opblock")),
			chromedp.WaitVisible(chromedp.CSS("button.authorize.locked")),
		)
		stored := eval[string](t, ctx, `localStorage.getItem("authorized") || ""`)
		if !strings.Contains(stored, "bearerAuth") || !strings.Contains(stored, "token-from-a-login") {
			t.Fatalf("the token is not kept across reloads: localStorage.authorized = %q", stored)
		}
		shot(t, ctx, "swagger-ui-authorized")
	})

	t.Run("anonymous is sent to the login form and refused by the API", func(t *testing.T) {
		if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		steps(t, ctx, "open the dashboard", chromedp.Navigate(base+"/monitoring/"), chromedp.WaitVisible(chromedp.ID("username")))
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		if !strings.HasPrefix(loc, base+"/ops/login?next=") {
			t.Fatalf("anonymous landed on %s", loc)
		}
		for _, path := range []string{"/monitoring/api/queues", "/ops/audit", "/monitoring/static/js/main.5adda2da.chunk.js"} {
			if r := fetchAs(t, ctx, "GET", path); r.Status != http.StatusUnauthorized {
				t.Errorf("anonymous GET %s: %d %s", path, r.Status, r.Body)
			}
		}
		shot(t, ctx, "login-form")
		steps(t, ctx, "wrong password",
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), "not-her-password"),
			chromedp.Click(chromedp.ID("sign-in")),
			chromedp.WaitVisible(chromedp.ID("login-error")),
		)
		shot(t, ctx, "login-wrong-password")
	})

	runPath := "/monitoring/api/queues/critical/archived_tasks/" + dead.ID + ":run"
	t.Run("a viewer sees the queues but cannot retry", func(t *testing.T) {
		login(t, ctx, base, "victor", "victor-pw")
		waitText(t, ctx, "critical")
		waitText(t, ctx, "default")
		shot(t, ctx, "viewer-queues")
		steps(t, ctx, "archived tab", chromedp.Navigate(base+"/monitoring/queues/critical?status=archived"))
		waitText(t, ctx, "test:dead")
		if head := eval[string](t, ctx, `document.querySelector("thead").innerText`); strings.Contains(head, "Actions") {
			t.Errorf("a viewer is offered actions: %q", head)
		}
		shot(t, ctx, "viewer-archived")
		r := fetchAs(t, ctx, "POST", runPath)
		if r.Status != http.StatusForbidden || !strings.Contains(r.Body, `"code":"forbidden"`) {
			t.Fatalf("viewer retry: %d %s", r.Status, r.Body)
		}
		if ti, err := insp.GetTaskInfo("critical", dead.ID); err != nil || ti.State != asynq.TaskStateArchived || ti.Retried != 0 {
			t.Fatalf("the refused retry touched the task: %+v %v", ti, err)
		}
	})

	t.Run("an operator retries an archived task and the audit shows it", func(t *testing.T) {
		before, err := insp.GetTaskInfo("critical", dead.ID)
		if err != nil {
			t.Fatal(err)
		}
		login(t, ctx, base, "alice", "alice-pw")
		steps(t, ctx, "archived tab", chromedp.Navigate(base+"/monitoring/queues/critical?status=archived"))
		waitText(t, ctx, "test:dead")
		steps(t, ctx, "run",
			chromedp.Click(chromedp.CSS(`tbody td.MuiTableCell-alignCenter button`)),
			chromedp.WaitVisible(chromedp.CSS(`tbody button[title="Run"]`)),
		)
		shot(t, ctx, "operator-archived")
		steps(t, ctx, "click run", chromedp.Click(chromedp.CSS(`tbody button[title="Run"]`)))
		// The worker runs it again; it fails again and is archived again.
		waitFor(t, "the task to run again", func() bool {
			ti, err := insp.GetTaskInfo("critical", dead.ID)
			return err == nil && ti.State == asynq.TaskStateArchived && ti.LastFailedAt.After(before.LastFailedAt)
		})
		r := fetchAs(t, ctx, "GET", "/ops/audit?limit=10")
		var page struct {
			Data []struct {
				Operator   string `json:"operator"`
				Role       string `json:"role"`
				Action     string `json:"action"`
				Queue      string `json:"queue"`
				TaskID     string `json:"task_id"`
				StatusCode int    `json:"status_code"`
				Path       string `json:"path"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(r.Body), &page); err != nil || r.Status != http.StatusOK {
			t.Fatalf("audit: %d %s", r.Status, r.Body)
		}
		var sawRun, sawRefused bool
		for _, e := range page.Data {
			if e.Action == "run" && e.Queue == "critical" && e.TaskID == dead.ID && e.Path == runPath {
				switch {
				case e.Operator == "alice" && e.Role == "operator" && e.StatusCode == http.StatusNoContent:
					sawRun = true
				case e.Operator == "victor" && e.Role == "viewer" && e.StatusCode == http.StatusForbidden:
					sawRefused = true
				}
			}
		}
		if !sawRun || !sawRefused {
			t.Fatalf("audit lacks the retry (%v) or the viewer's refused attempt (%v): %s", sawRun, sawRefused, r.Body)
		}
		steps(t, ctx, "audit page", chromedp.Navigate(base+"/ops/audit"))
		shot(t, ctx, "operator-audit")
	})

	t.Run("metrics count the task and its archives", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second}
		scrape := func(token string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, p.URLs["Metrics"], nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := scrape(""); code != http.StatusUnauthorized {
			t.Fatalf("metrics without the token: %d", code)
		}
		code, body := scrape("scrape-token")
		for _, line := range []string{
			`rentalportal_tasks_archived_total{queue="critical",task_type="test:dead"} 2`,
			`rentalportal_task_duration_seconds_count{queue="critical",task_type="test:dead"} 2`,
			`rentalportal_task_duration_seconds_bucket{queue="critical",task_type="test:dead",le="+Inf"} 2`,
			`rentalportal_tasks_archived_total{queue="images",task_type="image:thumbnail"} 0`,
			`rentalportal_queue_tasks{queue="critical",state="archived"} 1`,
			`rentalportal_http_requests_total{method="POST",route="/monitoring/*path",status="204"} 1`,
		} {
			if code != http.StatusOK || !strings.Contains(body, line) {
				t.Errorf("metrics (%d) lack %q", code, line)
			}
		}
		if !strings.Contains(p.Output(), `msg="task archived: it will not be retried"`) {
			t.Errorf("no error line for the archived task in the log")
		}
	})

	if off := netlog.offsite(); len(off) > 0 {
		t.Errorf("the browser left this machine: %v", off)
	}
	if len(netlog.urls) < 20 {
		t.Errorf("only %d requests recorded: the network log is broken", len(netlog.urls))
	}
}

// waitText waits until the page shows the text.
func waitText(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if strings.Contains(eval[string](t, ctx, `document.body ? document.body.innerText : ""`), text) {
			return
		}
		if time.Now().After(deadline) {
			shot(t, ctx, "failed-wait-"+strings.ReplaceAll(text, " ", "-"))
			t.Fatalf("the page never showed %q", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDashboardRole runs the console alone, as `rentalportal dashboard`
// does in production: sign-in, the dashboard and its assets under the
// prefix, the landing page, and /metrics on the same listener.
func TestDashboardRole(t *testing.T) {
	t.Parallel()
	rdb := testkit.RedisDB(t)
	p := testkit.Start(t, "dashboard", map[string]string{
		"DASHBOARD_ADDR":  "127.0.0.1:0",
		"DATA_DIR":        t.TempDir(),
		"REDIS_URL":       rdb.URL,
		"OPERATOR_USERS":  "victor:viewer:" + hash(t, "victor-pw"),
		"METRICS_TOKEN":   "scrape-token",
		"PUBLIC_BASE_URL": "https://api.example.com",
		"LOG_LEVEL":       "warn",
	})
	base := p.Base("Dashboard")
	c := browser(t)
	if r := do(t, c, http.MethodGet, base+"/monitoring/", nil, "Accept", "text/html"); r.Code != http.StatusSeeOther {
		t.Fatalf("anonymous: %d", r.Code)
	}
	form := url.Values{"username": {"victor"}, "password": {"victor-pw"}}
	if r := do(t, c, http.MethodPost, base+"/ops/login", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded"); r.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.Code, r.Body)
	}
	testkit.PageAssets(t, c, base+"/monitoring/")
	r := do(t, c, http.MethodGet, base+"/", nil)
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `href="https://api.example.com/api/docs"`) ||
		!strings.Contains(r.Body, `<strong id="role">dashboard</strong>`) || !strings.Contains(r.Body, `<strong id="version">test</strong>`) {
		t.Fatalf("landing: %d %s", r.Code, r.Body)
	}
	if r := do(t, c, http.MethodGet, base+"/metrics", nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("metrics without token: %d", r.Code)
	}
	r = do(t, c, http.MethodGet, base+"/metrics", nil, "Authorization", "Bearer scrape-token")
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `rentalportal_http_requests_total{method="GET",route="/monitoring/*path",status="200"}`) ||
		!strings.Contains(r.Body, `rentalportal_build_info{role="dashboard",version="test"} 1`) {
		t.Fatalf("metrics: %d %s", r.Code, r.Body)
	}
}
