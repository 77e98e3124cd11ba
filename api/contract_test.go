package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/api/openapitest"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/metrics"
	"github.com/rentalportal/portal/web"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func baseConfig(t *testing.T) api.Config {
	return api.Config{Env: "development", Version: "v-test", Role: "all", MaxBodyBytes: 1 << 20, DataDir: t.TempDir(),
		JWTSecret: strings.Repeat("s", 32), JWTIssuer: "rentalportal", JWTAudience: "rentalportal-api", JWTTTL: time.Minute,
		Components: map[string]string{"database": "sqlite", "redis": "external", "blob": "local"}}
}

// TestEveryRouteIsInTheDocument fails when a registered Gin route is
// missing from openapi.yaml, or the document lists a route that does not
// exist. Only what OutsideContract names is left out, on both sides.
func TestEveryRouteIsInTheDocument(t *testing.T) {
	t.Parallel()
	srv, err := api.NewServer(baseConfig(t), api.Deps{Log: quiet, Dashboard: http.NotFoundHandler(), Metrics: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	registered := map[string]bool{}
	for _, r := range srv.Routes() {
		if openapitest.OutsideContract(r.Path) {
			continue
		}
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	doc := openapitest.Document(t)
	for path, item := range doc.Paths.Map() {
		if openapitest.OutsideContract(path) {
			t.Errorf("the document describes %s, which is outside the contract", path)
		}
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range registered {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !registered[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from api/openapi.yaml:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("api/openapi.yaml lists routes that do not exist:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(registered) < 30 {
		t.Fatalf("only %d routes compared: the comparison is broken", len(registered))
	}
}

// platform is the API server of the "all" role, with the operator console
// mounted, on the test Redis and a fresh SQLite database.
type platform struct {
	url     string
	rdb     testkit.Redis
	metrics *metrics.Registry
}

func newPlatform(t *testing.T, cfg api.Config) *platform {
	t.Helper()
	rdb := testkit.RedisDB(t)
	db := testkit.SQLite(t)
	users, err := web.ParseUsers("alice:operator:alice-pw,victor:viewer:victor-pw", true)
	if err != nil {
		t.Fatal(err)
	}
	console, err := web.New(web.Config{Version: "v-test", Role: "all", Users: users, SessionKey: []byte(strings.Repeat("k", 32))},
		web.Deps{Log: quiet, Queues: rdb.Opt, Redis: rdb.Client, Audit: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { console.Close() })
	reg := metrics.New(metrics.Options{Version: "v-test", Role: "all"})
	insp := asynq.NewInspectorFromRedisClient(rdb.Client)
	reg.WatchQueues(insp, quiet)
	srv, err := api.NewServer(cfg, api.Deps{Log: quiet, DB: db, DBStats: db.Stats, Redis: pinger{rdb.Client}, Queues: insp,
		Dashboard: console, Metrics: reg.Handler(""), HTTPMetrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &platform{url: hs.URL, rdb: rdb, metrics: reg}
}

type pinger struct{ c redis.UniversalClient }

func (p pinger) Ping(ctx context.Context) error { return p.c.Ping(ctx).Err() }

type answer = testkit.Response

func call(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) answer {
	t.Helper()
	return testkit.Do(t, c, method, u, body, hdr...)
}

// TestResponsesMatchTheDocument drives everything this branch serves and
// validates each answer against the contract: the probes, the document,
// Swagger UI, the one error shape of 401/404/405 on every protected route,
// and the operator endpoints.
func TestResponsesMatchTheDocument(t *testing.T) {
	t.Parallel()
	p := newPlatform(t, baseConfig(t))
	v := openapitest.New(t)
	jar, _ := cookiejar.New(nil)
	c := v.Client(t, &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})

	for _, path := range []string{"/health", "/health/database", "/health/queues", "/health/memory", "/health/disk",
		"/health/liveness", "/health/readiness", "/api/openapi.json", "/api/docs", "/ops/login"} {
		if a := call(t, c, http.MethodGet, p.url+path, nil); a.Code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, a.Code, a.Body)
		}
	}
	// Every route behind a bearer token answers 401 in the one error shape
	// without one, and with a bad one.
	doc := openapitest.Document(t)
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security == nil || len(*op.Security) == 0 || (*op.Security)[0]["bearerAuth"] == nil {
				continue
			}
			u := p.url + strings.ReplaceAll(path, "{id}", "01934f6e-8f0a-7c3b-9d4e-5a6b7c8d9e0f")
			for _, auth := range []string{"", "Bearer not-a-token"} {
				a := call(t, c, method, u, nil, "Authorization", auth)
				if a.Code != http.StatusUnauthorized || !strings.Contains(a.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s with %q: %d %s", method, path, auth, a.Code, a.Body)
				}
			}
			n++
		}
	}
	if n < 15 {
		t.Fatalf("only %d bearer routes checked", n)
	}
	// Unknown paths and methods.
	if a := call(t, c, http.MethodGet, p.url+"/api/v1/nope", nil); a.Code != http.StatusNotFound {
		t.Errorf("unknown path: %d", a.Code)
	}
	if a := call(t, c, http.MethodPut, p.url+"/api/v1/listings", nil); a.Code != http.StatusMethodNotAllowed {
		t.Errorf("unknown method: %d %s", a.Code, a.Body)
	}
	if a := call(t, c, http.MethodGet, p.url+"/health/liveness", nil, "Accept", "application/json"); a.Code != http.StatusOK {
		t.Errorf("liveness: %d", a.Code)
	}

	// The operator endpoints: refused anonymously, then through a session.
	for _, path := range []string{web.MePath, web.AuditPath} {
		if a := call(t, c, http.MethodGet, p.url+path, nil); a.Code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d", path, a.Code)
		}
	}
	if a := call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(`{"username":"alice","password":"nope"}`),
		"Content-Type", "application/json"); a.Code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d %s", a.Code, a.Body)
	}
	form := url.Values{"username": {"alice"}, "password": {"nope"}}
	if a := call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded"); a.Code != http.StatusUnauthorized || !strings.Contains(a.Header.Get("Content-Type"), "text/html") {
		t.Errorf("wrong password (form): %d %s", a.Code, a.Header.Get("Content-Type"))
	}
	if a := call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(`{"username":"alice"}`),
		"Content-Type", "application/json"); a.Code != http.StatusBadRequest {
		t.Errorf("no password: %d %s", a.Code, a.Body)
	}
	a := call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(`{"username":"alice","password":"alice-pw"}`),
		"Content-Type", "application/json")
	if a.Code != http.StatusOK || !strings.Contains(a.Body, `"operator":"alice"`) {
		t.Fatalf("login: %d %s", a.Code, a.Body)
	}
	if a := call(t, c, http.MethodGet, p.url+web.MePath, nil); a.Code != http.StatusOK {
		t.Errorf("me: %d %s", a.Code, a.Body)
	}
	if a := call(t, c, http.MethodGet, p.url+web.AuditPath+"?limit=1", nil); a.Code != http.StatusOK || !strings.Contains(a.Body, `"action":"login"`) {
		t.Errorf("audit: %d %s", a.Code, a.Body)
	}
	if a := call(t, c, http.MethodGet, p.url+web.AuditPath+"?limit=1000", nil); a.Code != http.StatusBadRequest {
		t.Errorf("audit limit: %d %s", a.Code, a.Body)
	}
	if a := call(t, c, http.MethodPost, p.url+web.LogoutPath, nil); a.Code != http.StatusSeeOther {
		t.Errorf("logout: %d", a.Code)
	}
	if a := call(t, c, http.MethodPost, p.url+web.LogoutPath, nil, "Accept", "application/json"); a.Code != http.StatusNoContent {
		t.Errorf("logout (json): %d", a.Code)
	}
	form = url.Values{"username": {"victor"}, "password": {"victor-pw"}, "next": {"/ops/audit"}}
	if a := call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded"); a.Code != http.StatusSeeOther || a.Header.Get("Location") != "/ops/audit" {
		t.Errorf("form login: %d %v", a.Code, a.Header)
	}
}

// TestTheDocumentIsServedWithConfiguredServers checks OPENAPI_SERVERS
// reaches the served document and Swagger UI may call those servers.
func TestTheDocumentIsServedWithConfiguredServers(t *testing.T) {
	t.Parallel()
	servers, err := api.ParseServers("local=http://localhost:8080, production=https://api.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t)
	cfg.OpenAPIServers = servers
	srv, err := api.NewServer(cfg, api.Deps{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/openapi.json", nil))
	var doc struct {
		OpenAPI string `json:"openapi"`
		Servers []struct {
			URL         string `json:"url"`
			Description string `json:"description"`
		} `json:"servers"`
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("document: %d %v", rec.Code, err)
	}
	if len(doc.Servers) != 2 || doc.Servers[0].URL != "http://localhost:8080" || doc.Servers[0].Description != "local" ||
		doc.Servers[1].URL != "https://api.example.com" || !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) < 30 {
		t.Fatalf("servers: %+v", doc.Servers)
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/docs", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' http://localhost:8080 https://api.example.com") {
		t.Fatalf("docs CSP: %q", csp)
	}
	for _, bad := range []string{"local", "x=ftp://h", "x=relative/path", "=http://h", "x=http://"} {
		if _, err := api.ParseServers(bad); err == nil {
			t.Errorf("ParseServers(%q) accepted", bad)
		}
	}
}

// TestPagesLoadTheirAssetsWhenMounted guards against the blank page:
// Swagger UI and the dashboard, mounted in the API server, load their
// scripts and styles with the right types.
func TestPagesLoadTheirAssetsWhenMounted(t *testing.T) {
	t.Parallel()
	p := newPlatform(t, baseConfig(t))
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	html := testkit.PageAssets(t, c, p.url+"/api/docs")
	if !strings.Contains(html, "/api/docs/swagger-ui-bundle.js") {
		t.Fatalf("docs page: %s", html)
	}
	if a := call(t, c, http.MethodGet, p.url+"/api/docs/swagger-initializer.js", nil); !strings.Contains(a.Body, "persistAuthorization: true") ||
		!strings.Contains(a.Body, `"/api/openapi.json"`) {
		t.Fatalf("initializer: %s", a.Body)
	}
	if a := call(t, c, http.MethodGet, p.url+"/api/docs/../../etc/passwd", nil); a.Code != http.StatusNotFound && a.Code != http.StatusMovedPermanently {
		t.Fatalf("traversal: %d", a.Code)
	}
	call(t, c, http.MethodPost, p.url+web.LoginPath, strings.NewReader(`{"username":"victor","password":"victor-pw"}`),
		"Content-Type", "application/json")
	html = testkit.PageAssets(t, c, p.url+"/monitoring/")
	if !strings.Contains(html, `src="/monitoring/static/js/`) {
		t.Fatalf("dashboard page: %.500s", html)
	}
	if a := call(t, c, http.MethodGet, p.url+"/", nil); a.Code != http.StatusOK || !strings.Contains(a.Body, "signed in as <strong>victor</strong>") {
		t.Fatalf("landing: %d %s", a.Code, a.Body)
	}
}

// TestHTTPMetricsByRouteTemplate checks requests are counted by route
// template, and unmatched ones under one label.
func TestHTTPMetricsByRouteTemplate(t *testing.T) {
	t.Parallel()
	p := newPlatform(t, baseConfig(t))
	c := &http.Client{Timeout: 10 * time.Second}
	for _, id := range []string{"a", "b", "c"} {
		call(t, c, http.MethodGet, p.url+"/api/v1/bookings/"+id, nil)
	}
	call(t, c, http.MethodGet, p.url+"/nope/1", nil)
	call(t, c, http.MethodGet, p.url+"/health/liveness", nil)
	a := call(t, c, http.MethodGet, p.url+"/metrics", nil)
	for _, line := range []string{
		`rentalportal_http_requests_total{method="GET",route="/api/v1/bookings/:id",status="401"} 3`,
		`rentalportal_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`rentalportal_http_requests_total{method="GET",route="/health/liveness",status="200"} 1`,
		`rentalportal_http_request_duration_seconds_count{method="GET",route="/api/v1/bookings/:id"} 3`,
		`rentalportal_queue_scrape_up 1`,
	} {
		if !strings.Contains(a.Body, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(a.Body, `route="/api/v1/bookings/a"`) {
		t.Error("a raw path became a label")
	}
}
