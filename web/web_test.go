package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/crypto/bcrypt"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/web"
)

var sessionKey = []byte("0123456789abcdef0123456789abcdef")

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// env is a console on the test Redis and its own SQLite audit log.
type env struct {
	srv   *httptest.Server
	rdb   testkit.Redis
	db    *store.DB
	users []web.User
}

func newEnv(t *testing.T, mut ...func(*web.Config)) *env {
	t.Helper()
	rdb := testkit.RedisDB(t)
	db := testkit.SQLite(t)
	users, err := web.ParseUsers("alice:operator:"+hash(t, "alice-pw")+",victor:viewer:"+hash(t, "victor-pw"), false)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{rdb: rdb, db: db, users: users}
	e.srv = httptest.NewServer(e.console(t, mut...).Standalone(nil))
	t.Cleanup(e.srv.Close)
	return e
}

// console builds a console on the env's Redis and database (a second one is
// another replica).
func (e *env) console(t *testing.T, mut ...func(*web.Config)) *web.Console {
	t.Helper()
	cfg := web.Config{Version: "v-test", Role: "dashboard", Users: e.users, SessionKey: sessionKey,
		MaxLoginFailures: 3, LoginFailureWindow: time.Minute, TrustedProxies: []string{"127.0.0.1"}}
	for _, m := range mut {
		m(&cfg)
	}
	c, err := web.New(cfg, web.Deps{Queues: e.rdb.Opt, Redis: e.rdb.Client, Audit: e.db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(*testing.T) *http.Client { return testkit.Browser() }

type resp = testkit.Response

func do(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) resp {
	t.Helper()
	return testkit.Do(t, c, method, u, body, hdr...)
}

func (e *env) login(t *testing.T, c *http.Client, user, pw string, hdr ...string) resp {
	t.Helper()
	form := url.Values{"username": {user}, "password": {pw}, "next": {"/monitoring/queues"}}
	return do(t, c, http.MethodPost, e.srv.URL+web.LoginPath, strings.NewReader(form.Encode()),
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

// errorCode checks the one error shape and returns its code.
func errorCode(t *testing.T, r resp) string {
	t.Helper()
	var b struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.Body), &b); err != nil || b.Error.Code == "" || b.Error.Message == "" ||
		b.Error.RequestID == "" || b.Error.RequestID != r.Header.Get("X-Request-ID") {
		t.Fatalf("not the one error shape (status %d): %s", r.Code, r.Body)
	}
	return b.Error.Code
}

func TestAnonymousIsRefusedEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := browser(t)
	r := do(t, c, http.MethodGet, e.srv.URL+"/monitoring/", nil, "Accept", "text/html")
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/ops/login?next=%2Fmonitoring%2F" {
		t.Fatalf("browser page: %d %q", r.Code, r.Header.Get("Location"))
	}
	for _, p := range []string{"/monitoring", "/monitoring/", "/monitoring/api/queues", "/monitoring/static/js/main.5adda2da.chunk.js",
		web.AuditPath, web.MePath} {
		r := do(t, c, http.MethodGet, e.srv.URL+p, nil, "Accept", "application/json")
		if r.Code != http.StatusUnauthorized || errorCode(t, r) != "unauthorized" ||
			!strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("GET %s: %d %s %v", p, r.Code, r.Body, r.Header)
		}
	}
	// A browser is not offered Basic (no password dialog over the SPA).
	r = do(t, c, http.MethodGet, e.srv.URL+"/monitoring/api/queues", nil, "Sec-Fetch-Site", "same-origin")
	if r.Code != http.StatusUnauthorized || strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("browser API call: %d %v", r.Code, r.Header)
	}
	r = do(t, c, http.MethodPost, e.srv.URL+"/monitoring/api/queues/default:pause", nil)
	if r.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous pause: %d", r.Code)
	}
	// A forged or tampered cookie is no session.
	u, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: web.SessionCookie, Value: "eyJ1IjoiYWxpY2UiLCJleHAiOjk5OTk5OTk5OTl9.AAAA"}})
	if r := do(t, c, http.MethodGet, e.srv.URL+web.MePath, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("forged cookie: %d %s", r.Code, r.Body)
	}
	// The landing page is public and says what runs.
	r = do(t, c, http.MethodGet, e.srv.URL+"/", nil)
	if r.Code != http.StatusOK || !strings.Contains(r.Body, "v-test") || !strings.Contains(r.Body, `href="/api/docs"`) ||
		!strings.Contains(r.Body, `href="/monitoring/"`) || !strings.Contains(r.Body, `href="/metrics"`) ||
		!strings.Contains(r.Body, `href="/health"`) || !strings.Contains(r.Body, ">dashboard<") {
		t.Fatalf("landing page: %d %s", r.Code, r.Body)
	}
	if r := do(t, c, http.MethodGet, e.srv.URL+"/nope", nil); r.Code != http.StatusNotFound || errorCode(t, r) != "not_found" {
		t.Fatalf("unknown path: %d %s", r.Code, r.Body)
	}
	if r := do(t, c, http.MethodDelete, e.srv.URL+web.AuditPath, nil); r.Code != http.StatusMethodNotAllowed ||
		errorCode(t, r) != "method_not_allowed" {
		t.Fatalf("DELETE audit: %d %s", r.Code, r.Body)
	}
}

func TestLoginSessionAndLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := browser(t)
	if r := e.login(t, c, "alice", "wrong"); r.Code != http.StatusUnauthorized || !strings.Contains(r.Body, "wrong user name or password") {
		t.Fatalf("wrong password: %d %s", r.Code, r.Body)
	}
	if r := e.login(t, c, "nobody", "alice-pw"); r.Code != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", r.Code)
	}
	r := e.login(t, c, "alice", "alice-pw")
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/monitoring/queues" {
		t.Fatalf("login: %d %v", r.Code, r.Header)
	}
	ck := r.Header.Get("Set-Cookie")
	for _, attr := range []string{web.SessionCookie + "=", "Path=/", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(ck, attr) {
			t.Fatalf("cookie %q lacks %s", ck, attr)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Fatalf("plain HTTP from an untrusted peer: cookie must not be Secure: %s", ck)
	}
	r = do(t, c, http.MethodGet, e.srv.URL+web.MePath, nil)
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `"operator":"alice"`) || !strings.Contains(r.Body, `"role":"operator"`) {
		t.Fatalf("me: %d %s", r.Code, r.Body)
	}
	// The session works on another replica with the same key…
	other := httptest.NewServer(e.console(t).Standalone(nil))
	defer other.Close()
	ou, _ := url.Parse(other.URL)
	eu, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(ou, c.Jar.Cookies(eu))
	if r := do(t, c, http.MethodGet, other.URL+web.MePath, nil); r.Code != http.StatusOK {
		t.Fatalf("other replica: %d %s", r.Code, r.Body)
	}
	// …but not once alice's password changed there.
	changed := httptest.NewServer(e.console(t, func(cfg *web.Config) {
		cfg.Users, _ = web.ParseUsers("alice:operator:"+hash(t, "new-pw"), false)
	}).Standalone(nil))
	defer changed.Close()
	cu, _ := url.Parse(changed.URL)
	c.Jar.SetCookies(cu, c.Jar.Cookies(eu))
	if r := do(t, c, http.MethodGet, changed.URL+web.MePath, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("after a password change: %d %s", r.Code, r.Body)
	}
	// Behind a trusted TLS proxy the cookie is Secure.
	if r := e.login(t, browser(t), "alice", "alice-pw", "X-Forwarded-Proto", "https"); !strings.Contains(r.Header.Get("Set-Cookie"), "Secure") {
		t.Fatalf("https via proxy: %s", r.Header.Get("Set-Cookie"))
	}
	// Cross-site login and open redirects are refused.
	if r := e.login(t, browser(t), "alice", "alice-pw", "Origin", "https://evil.example"); r.Code != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", r.Code)
	}
	form := url.Values{"username": {"alice"}, "password": {"alice-pw"}, "next": {"//evil.example/x"}}
	r = do(t, browser(t), http.MethodPost, e.srv.URL+web.LoginPath, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	if r.Header.Get("Location") != "/monitoring/" {
		t.Fatalf("open redirect: %q", r.Header.Get("Location"))
	}
	// JSON login for scripts.
	r = do(t, browser(t), http.MethodPost, e.srv.URL+web.LoginPath, strings.NewReader(`{"username":"victor","password":"victor-pw"}`),
		"Content-Type", "application/json")
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `"role":"viewer"`) || !strings.Contains(r.Header.Get("Set-Cookie"), web.SessionCookie) {
		t.Fatalf("json login: %d %s", r.Code, r.Body)
	}
	r = do(t, browser(t), http.MethodPost, e.srv.URL+web.LoginPath, strings.NewReader(`{"username":"victor"}`),
		"Content-Type", "application/json")
	if r.Code != http.StatusBadRequest || errorCode(t, r) != "validation_failed" {
		t.Fatalf("json login without password: %d %s", r.Code, r.Body)
	}
	// Logout ends the session.
	r = do(t, c, http.MethodPost, e.srv.URL+web.LogoutPath, nil)
	if r.Code != http.StatusSeeOther || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %v", r.Code, r.Header)
	}
	if r := do(t, c, http.MethodGet, e.srv.URL+web.MePath, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", r.Code)
	}
}

// TestAuthenticateForOtherHandlers uses the console's check from a handler
// of its own, as the API's operator endpoints may.
func TestAuthenticateForOtherHandlers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	console := e.console(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := console.Authenticate(w, r)
		if !ok {
			return
		}
		_, _ = w.Write([]byte(id.Name + "/" + id.Role))
	}))
	defer srv.Close()
	if r := do(t, browser(t), http.MethodGet, srv.URL, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", r.Code)
	}
	if r := do(t, browser(t), http.MethodGet, srv.URL, nil, "Authorization", basic("victor", "victor-pw")); r.Code != http.StatusOK || r.Body != "victor/viewer" {
		t.Fatalf("basic: %d %s", r.Code, r.Body)
	}
	c := browser(t)
	e.login(t, c, "alice", "alice-pw")
	eu, _ := url.Parse(e.srv.URL)
	su, _ := url.Parse(srv.URL)
	c.Jar.SetCookies(su, c.Jar.Cookies(eu))
	if r := do(t, c, http.MethodGet, srv.URL, nil); r.Code != http.StatusOK || r.Body != "alice/operator" {
		t.Fatalf("session: %d %s", r.Code, r.Body)
	}
}

func TestGuessingBrakeHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := httptest.NewServer(e.console(t).Standalone(nil))
	defer other.Close()
	from := func(ip string) []string { return []string{"X-Forwarded-For", ip} }
	// Three failures, spread over two replicas, from one address.
	for i, srv := range []string{e.srv.URL, other.URL, e.srv.URL} {
		r := do(t, browser(t), http.MethodGet, srv+web.MePath, nil, append(from("203.0.113.7"), "Authorization", basic("alice", "guess"))...)
		if r.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, r.Code)
		}
	}
	// Now even the right password is refused from that address, on both.
	for _, srv := range []string{e.srv.URL, other.URL} {
		r := do(t, browser(t), http.MethodGet, srv+web.MePath, nil, append(from("203.0.113.7"), "Authorization", basic("alice", "alice-pw"))...)
		if r.Code != http.StatusTooManyRequests || errorCode(t, r) != "rate_limited" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("braked: %d %s %v", r.Code, r.Body, r.Header)
		}
	}
	form := url.Values{"username": {"alice"}, "password": {"alice-pw"}}
	r := do(t, browser(t), http.MethodPost, other.URL+web.LoginPath, strings.NewReader(form.Encode()),
		append(from("203.0.113.7"), "Content-Type", "application/x-www-form-urlencoded")...)
	if r.Code != http.StatusTooManyRequests || !strings.Contains(r.Body, "too many failed logins") {
		t.Fatalf("braked form login: %d %s", r.Code, r.Body)
	}
	// Another address is not affected; an IPv6 neighbour in the same /64 is.
	if r := do(t, browser(t), http.MethodGet, e.srv.URL+web.MePath, nil, append(from("203.0.113.8"), "Authorization", basic("alice", "alice-pw"))...); r.Code != http.StatusOK {
		t.Fatalf("other address: %d %s", r.Code, r.Body)
	}
	for i := range 3 {
		do(t, browser(t), http.MethodGet, e.srv.URL+web.MePath, nil, append(from("2001:db8:1:2::"+string(rune('a'+i))), "Authorization", basic("x", "y"))...)
	}
	if r := do(t, browser(t), http.MethodGet, e.srv.URL+web.MePath, nil, append(from("2001:db8:1:2::ffff"), "Authorization", basic("alice", "alice-pw"))...); r.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64: %d", r.Code)
	}
	// One counter per address (per /64 for IPv6), shared in Redis.
	n, err := e.rdb.Client.Keys(context.Background(), "rentalportal:ops:login-failures:*").Result()
	if err != nil || len(n) != 2 {
		t.Fatalf("brake keys = %v %v", n, err)
	}
}

func basic(u, p string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(u, p)
	return req.Header.Get("Authorization")
}

// archivedTask puts a task straight into the archived state.
func archivedTask(t *testing.T, rdb testkit.Redis, queue string) string {
	t.Helper()
	client := asynq.NewClientFromRedisClient(rdb.Client)
	info, err := client.Enqueue(asynq.NewTask("test:archived", []byte(`{}`)), asynq.Queue(queue), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := asynq.NewInspectorFromRedisClient(rdb.Client).ArchiveTask(queue, info.ID); err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func TestViewerCannotChangeAndOperatorIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := archivedTask(t, e.rdb, "critical")
	run := e.srv.URL + "/monitoring/api/queues/critical/archived_tasks/" + id + ":run"

	viewer := browser(t)
	if r := e.login(t, viewer, "victor", "victor-pw"); r.Code != http.StatusSeeOther {
		t.Fatalf("viewer login: %d", r.Code)
	}
	r := do(t, viewer, http.MethodGet, e.srv.URL+"/monitoring/api/queues", nil)
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `"queue":"critical"`) {
		t.Fatalf("viewer queues: %d %s", r.Code, r.Body)
	}
	r = do(t, viewer, http.MethodGet, e.srv.URL+"/monitoring/", nil, "Accept", "text/html")
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `window.FLAG_READ_ONLY="true"`) {
		t.Fatalf("viewer index is not read-only: %d %.400s", r.Code, r.Body)
	}
	r = do(t, viewer, http.MethodPost, run, nil)
	if r.Code != http.StatusForbidden || errorCode(t, r) != "forbidden" {
		t.Fatalf("viewer run: %d %s", r.Code, r.Body)
	}
	insp := asynq.NewInspectorFromRedisClient(e.rdb.Client)
	if ti, err := insp.GetTaskInfo("critical", id); err != nil || ti.State != asynq.TaskStateArchived {
		t.Fatalf("the viewer's refused retry changed the task: %v %v", ti, err)
	}

	op := browser(t)
	e.login(t, op, "alice", "alice-pw")
	r = do(t, op, http.MethodGet, e.srv.URL+"/monitoring/", nil, "Accept", "text/html")
	if !strings.Contains(r.Body, `window.FLAG_READ_ONLY="false"`) {
		t.Fatalf("operator index is read-only: %.400s", r.Body)
	}
	// A cross-site change is refused even with the operator's cookie.
	if r := do(t, op, http.MethodPost, run, nil, "Origin", "https://evil.example"); r.Code != http.StatusForbidden {
		t.Fatalf("cross-site run: %d", r.Code)
	}
	u, _ := url.Parse(e.srv.URL)
	r = do(t, op, http.MethodPost, run, nil, "Origin", u.Scheme+"://"+u.Host)
	if r.Code != http.StatusNoContent {
		t.Fatalf("operator run: %d %s", r.Code, r.Body)
	}
	if ti, err := insp.GetTaskInfo("critical", id); err != nil || ti.State != asynq.TaskStatePending {
		t.Fatalf("after retry: %v %v", ti, err)
	}
	// A batch action names every task.
	id2, id3 := archivedTask(t, e.rdb, "low"), archivedTask(t, e.rdb, "low")
	r = do(t, op, http.MethodPost, e.srv.URL+"/monitoring/api/queues/low/archived_tasks:batch_delete",
		bytes.NewReader([]byte(`{"task_ids":["`+id2+`","`+id3+`"]}`)), "Content-Type", "application/json")
	if r.Code != http.StatusOK || !strings.Contains(r.Body, id2) {
		t.Fatalf("batch delete: %d %s", r.Code, r.Body)
	}

	// The audit endpoint shows it all, newest first, to viewers too.
	r = do(t, viewer, http.MethodGet, e.srv.URL+web.AuditPath+"?limit=100", nil)
	if r.Code != http.StatusOK {
		t.Fatalf("audit: %d %s", r.Code, r.Body)
	}
	var page struct {
		Data       []store.AuditEntry `json:"data"`
		Pagination struct {
			Limit      int     `json:"limit"`
			NextCursor *string `json:"next_cursor"`
			HasMore    bool    `json:"has_more"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal([]byte(r.Body), &page); err != nil {
		t.Fatal(err)
	}
	type row struct{ who, action, queue, task string }
	want := []row{
		{"alice", "batch_delete", "low", id2 + "," + id3},
		{"alice", "run", "critical", id},
		{"alice", "run", "critical", id}, // the cross-site attempt, refused
		{"alice", "login", "", ""},
		{"victor", "run", "critical", id},
		{"victor", "login", "", ""},
	}
	wantStatus := []int{200, 204, 403, 303, 403, 303}
	if len(page.Data) != len(want) || page.Pagination.HasMore || page.Pagination.NextCursor != nil {
		t.Fatalf("audit page: %s", r.Body)
	}
	for i, w := range want {
		g := page.Data[i]
		if g.Operator != w.who || g.Action != w.action || g.Queue != w.queue || g.TaskID != w.task || g.StatusCode != wantStatus[i] ||
			g.RemoteIP != "127.0.0.1" || time.Since(g.CreatedAt) > time.Minute {
			t.Fatalf("audit row %d = %+v, want %v %d", i, g, w, wantStatus[i])
		}
	}
	// Pages of one.
	var seen []string
	cursor := ""
	for range 10 {
		r = do(t, viewer, http.MethodGet, e.srv.URL+web.AuditPath+"?limit=1&cursor="+cursor, nil)
		if err := json.Unmarshal([]byte(r.Body), &page); err != nil || len(page.Data) != 1 {
			t.Fatalf("page: %s", r.Body)
		}
		seen = append(seen, page.Data[0].ID)
		if !page.Pagination.HasMore {
			break
		}
		cursor = *page.Pagination.NextCursor
	}
	if len(seen) != len(want) {
		t.Fatalf("paged through %d entries, want %d", len(seen), len(want))
	}
	for _, bad := range []string{"?limit=0", "?limit=101", "?limit=x", "?cursor=***", "?cursor=bm9wZQ"} {
		if r := do(t, viewer, http.MethodGet, e.srv.URL+web.AuditPath+bad, nil); r.Code != http.StatusBadRequest || errorCode(t, r) != "invalid" {
			t.Fatalf("audit %s: %d %s", bad, r.Code, r.Body)
		}
	}
}

func TestDashboardAssetsLoadUnderThePrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "victor", "victor-pw")
	html := testkit.PageAssets(t, c, e.srv.URL+"/monitoring/")
	if !strings.Contains(html, `src="/monitoring/static/js/`) {
		t.Fatalf("index does not load its scripts under the prefix: %.500s", html)
	}
	// A deep link of the single-page app serves the same index.
	r := do(t, c, http.MethodGet, e.srv.URL+"/monitoring/queues/default", nil, "Accept", "text/html")
	if r.Code != http.StatusOK || !strings.Contains(r.Body, `window.FLAG_ROOT_PATH="\/monitoring"`) {
		t.Fatalf("deep link: %d %.300s", r.Code, r.Body)
	}
	if strings.Contains(r.Body, "fonts.googleapis.com") || !strings.Contains(r.Body, `<div id="root">`) {
		t.Fatalf("the index still loads a third-party stylesheet: %s", r.Body)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("csp: %q", csp)
	}
}
