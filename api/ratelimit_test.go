package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/logging"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/security"
	"github.com/rentalportal/portal/store"
)

// fakeOperators stands in for the console's credential check: "Basic"
// user ops:op is an operator, view:op a viewer; anything else is 401.
type fakeOperators struct{}

func (fakeOperators) AuthenticateOperator(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	name, pass, ok := r.BasicAuth()
	switch {
	case ok && name == "ops" && pass == "op":
		return "ops", OperatorRole, true
	case ok && name == "view" && pass == "op":
		return "view", ViewerRole, true
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"operator login required","request_id":"x"}}`))
	return "", "", false
}

const (
	opsAuth    = "Basic b3BzOm9w"     // ops:op
	viewerAuth = "Basic dmlldzpvcA==" // view:op
)

// edge is an API server with the limiter, the login guard and the
// security monitor on a Redis DB of the test's own.
type edge struct {
	t       *testing.T
	srv     *Server
	redis   redis.UniversalClient
	limiter *ratelimit.Limiter
	events  *security.Counter
	mu      sync.Mutex
	logs    bytes.Buffer
}

type edgeOptions struct {
	policies       map[string]ratelimit.Limit
	blockAfter     ratelimit.Threshold
	loginFailures  ratelimit.Threshold
	authBurst      int
	trustedProxies []string
	rdb            redis.UniversalClient // default: the test's Redis DB
}

func newEdge(t *testing.T, o edgeOptions) *edge {
	t.Helper()
	e := &edge{t: t, events: &security.Counter{}}
	e.redis = o.rdb
	if e.redis == nil {
		e.redis = testkit.RedisDB(t).Client
	}
	log, _, err := logging.New(lockedWriter{e}, logging.Options{Level: "info", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	e.limiter = ratelimit.New(e.redis, ratelimit.Config{Policies: o.policies, BlockAfter: o.blockAfter, BlockFor: time.Hour})
	deps := Deps{Log: log, DB: testkit.SQLite(t), Limiter: e.limiter, Operators: fakeOperators{},
		LoginGuard: ratelimit.NewLoginGuard(e.limiter, ratelimit.LoginConfig{Failures: o.loginFailures}),
		Security:   security.New(log, e.events, e.redis, security.Config{BurstCount: o.authBurst, BurstWindow: time.Minute})}
	srv, err := NewServer(Config{Env: "development", MaxBodyBytes: 1 << 20, TrustedProxies: o.trustedProxies,
		JWTSecret: strings.Repeat("s", 32), JWTIssuer: "test", JWTAudience: "test", JWTTTL: time.Hour}, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

// passed is what outcome reports for a request the edge let through to its
// handler, whatever the handler answered.
const passed = 0

// outcome is the edge's verdict on a request: passed, or the refusal status
// (429 limited or blocked, 503 limiter down, 500 a bug).
func outcome(w *httptest.ResponseRecorder) int {
	if w.Code == http.StatusTooManyRequests || (w.Code >= 500 && w.Code != http.StatusNotImplemented) {
		return w.Code
	}
	return passed
}

type lockedWriter struct{ e *edge }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	return w.e.logs.Write(b)
}

// securityLines returns the logged security events of kind.
func (e *edge) securityLines(kind string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["security"] == true && m["event"] == kind {
			out = append(out, m)
		}
	}
	return out
}

func (e *edge) token(userID string) string {
	e.t.Helper()
	tok, _, err := e.srv.tokens.Issue(Principal{UserID: userID, Role: RoleRenter})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request from peer (host:port) with headers given as pairs.
func (e *edge) do(method, path, peer string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = peer
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	if body.Error.RequestID == "" || body.Error.Message == "" {
		t.Fatalf("not the one error shape: %s", w.Body.String())
	}
	return body.Error.Code
}

func per(n int, d time.Duration) ratelimit.Limit {
	return ratelimit.Limit{Count: n, Period: d, Burst: n}
}

// TestRateLimitHeadersCountDown: anonymous requests carry the headers,
// counting down; the one over the limit is 429 in the error shape with a
// Retry-After that is long enough; repeated refusals block the address.
func TestRateLimitHeadersCountDown(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(3, 3*time.Second)},
		blockAfter: ratelimit.Threshold{Count: 3, Window: time.Minute}})
	const peer = "192.0.2.1:4000"
	for i := 0; i < 3; i++ {
		w := e.do("GET", "/api/v1/listings", peer)
		if outcome(w) != passed {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
		h := w.Header()
		if h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) || h.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d headers: %v", i, h)
		}
	}
	w := e.do("GET", "/api/v1/listings", peer)
	if w.Code != http.StatusTooManyRequests || errorCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") != "1" ||
		w.Header().Get("X-RateLimit-Remaining") != "0" || w.Header().Get("X-RateLimit-Reset") != "3" {
		t.Fatalf("over the limit: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if n := len(e.securityLines(security.EventRateLimited)); n != 1 {
		t.Fatalf("%d rate_limited lines, want 1", n)
	}
	time.Sleep(time.Second)
	if w := e.do("GET", "/api/v1/listings", peer); outcome(w) != passed {
		t.Fatalf("after Retry-After: %d %v", w.Code, w.Header())
	}
	// Two more refusals (three in the window) block the address.
	e.do("GET", "/api/v1/listings", peer)
	e.do("GET", "/api/v1/listings", peer)
	if l := e.securityLines(security.EventBlocked); len(l) != 1 || l[0]["key"] != "ip:192.0.2.1" || l[0]["reason"] != "rate_limit_violations" {
		t.Fatalf("blocked lines: %v", l)
	}
	if n := len(e.securityLines(security.EventRateLimited)); n != 1 || e.events.Count(security.EventRateLimited) != 3 {
		t.Fatalf("rate_limited: %d lines, %d counted; want 1 line (once per window), 3 counted", n, e.events.Count(security.EventRateLimited))
	}
	time.Sleep(time.Second) // a token is back, but the block holds
	w = e.do("GET", "/api/v1/listings", peer)
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); w.Code != http.StatusTooManyRequests || ra < 3500 {
		t.Fatalf("blocked: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// Health, metrics-like and webhook paths are never limited.
	if w := e.do("GET", "/health/liveness", peer); w.Code != http.StatusOK {
		t.Fatalf("liveness while blocked: %d", w.Code)
	}
	if w := e.do("POST", "/webhooks/stripe", peer); w.Code == http.StatusTooManyRequests || w.Header().Get("X-RateLimit-Limit") != "" {
		t.Fatalf("webhook while blocked: %d", w.Code)
	}
}

// TestForwardedForOnlyFromTrustedProxies: a forged X-Forwarded-For from
// an untrusted peer does not change the limited key; from a trusted proxy
// it names the client.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(1, time.Minute)},
		trustedProxies: []string{"10.0.0.0/8"}})
	for i, c := range []struct {
		peer, xff string
		want      int
	}{
		{"192.0.2.1:1000", "198.51.100.1", passed},
		{"192.0.2.1:1001", "198.51.100.2", http.StatusTooManyRequests}, // forged: still 192.0.2.1
		{"192.0.2.1:1002", "", http.StatusTooManyRequests},
		{"10.1.2.3:2000", "198.51.100.3", passed}, // proxy: the client is 198.51.100.3
		{"10.1.2.3:2001", "198.51.100.4", passed},
		{"10.9.9.9:2002", "198.51.100.3", http.StatusTooManyRequests},
		{"10.1.2.3:2003", "192.0.2.99, 198.51.100.5", passed}, // the proxy's own hop counts
	} {
		if w := e.do("GET", "/api/v1/listings", c.peer, "X-Forwarded-For", c.xff); outcome(w) != c.want {
			t.Errorf("%d: from %s with X-Forwarded-For %q: %d, want %d", i, c.peer, c.xff, w.Code, c.want)
		}
	}
	for _, key := range []string{"ip:192.0.2.1", "ip:198.51.100.3", "ip:198.51.100.4", "ip:198.51.100.5"} {
		if n, _ := e.redis.Exists(t.Context(), "rate:rl:anon:"+key).Result(); n != 1 {
			t.Errorf("no bucket for %s", key)
		}
	}
	if n, _ := e.redis.Exists(t.Context(), "rate:rl:anon:ip:198.51.100.1", "rate:rl:anon:ip:10.1.2.3").Result(); n != 0 {
		t.Error("a forged or proxy address got a bucket")
	}
}

// TestUserRoutesLimitedPerUser: a valid token counts per user (route
// overrides apart), so users behind one address do not share; requests
// without a valid token count per address at the anonymous rate.
func TestUserRoutesLimitedPerUser(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{
		ratelimit.PolicyAnon: per(2, time.Minute), ratelimit.PolicyUser: per(3, time.Minute),
		ratelimit.PolicyBooking: per(1, time.Minute), ratelimit.PolicyUpload: per(1, time.Minute)}})
	const office = "192.0.2.50:5000"
	ann, bob := "Bearer "+e.token("ann"), "Bearer "+e.token("bob")
	for i := 0; i < 3; i++ {
		if w := e.do("GET", "/api/v1/users/me", office, "Authorization", ann); outcome(w) != passed || w.Header().Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("ann %d: %d %v", i, w.Code, w.Header())
		}
	}
	if w := e.do("GET", "/api/v1/bookings", office, "Authorization", ann); w.Code != http.StatusTooManyRequests {
		t.Fatalf("ann over her limit: %d", w.Code)
	}
	if w := e.do("GET", "/api/v1/listings", office, "Authorization", bob); outcome(w) != passed || w.Header().Get("X-RateLimit-Limit") != "3" {
		t.Fatalf("bob on an anonymous route counts as bob: %d %v", w.Code, w.Header())
	}
	// Booking creation and uploads have their own, stricter buckets.
	if w := e.do("POST", "/api/v1/bookings", office, "Authorization", bob); outcome(w) != passed || w.Header().Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("bob books: %d %v", w.Code, w.Header())
	}
	if w := e.do("POST", "/api/v1/bookings", office, "Authorization", bob); w.Code != http.StatusTooManyRequests {
		t.Fatalf("bob books again: %d", w.Code)
	}
	if w := e.do("POST", "/api/v1/upload/presigned-upload", office, "Authorization", bob); outcome(w) != passed || w.Header().Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("bob uploads: %d %v", w.Code, w.Header())
	}
	if w := e.do("GET", "/api/v1/bookings", office, "Authorization", bob); outcome(w) != passed {
		t.Fatalf("bob lists bookings: %d", w.Code)
	}
	// Guessing tokens: counted per address, 401 then 429.
	for i, want := range []int{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusTooManyRequests} {
		if w := e.do("GET", "/api/v1/users/me", office, "Authorization", "Bearer guess"+strconv.Itoa(i)); w.Code != want {
			t.Fatalf("guess %d: %d, want %d", i, w.Code, want)
		}
	}
}

// TestLoginBlockedAfterFailuresOperatorClears drives a stand-in of the
// login handler (issue 4 wires the same hooks into the real one): N
// failures block the address everywhere anonymous, the operator lists and
// lifts the block, and the right password then signs in.
func TestLoginBlockedAfterFailuresOperatorClears(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(100, time.Minute),
		ratelimit.PolicyLogin: per(100, time.Minute)}, loginFailures: ratelimit.Threshold{Count: 3, Window: time.Minute}})
	e.srv.engine.POST("/test/login", e.srv.rateLimit, func(c *gin.Context) {
		email, password := c.Query("email"), c.Query("password")
		if err := e.srv.checkLogin(c, email); err != nil {
			renderError(c, err)
			return
		}
		if password != "right" {
			e.srv.loginFailed(c, email)
			renderError(c, portal.Errorf(portal.EUNAUTHORIZED, "invalid email or password"))
			return
		}
		e.srv.loginSucceeded(c, email)
		c.JSON(http.StatusOK, gin.H{"access_token": "x"})
	})
	const attacker = "203.0.113.9:6000"
	for i := 0; i < 3; i++ {
		if w := e.do("POST", "/test/login?email=ann@example.com&password=wrong", attacker); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i, w.Code, w.Body)
		}
	}
	if l := e.securityLines(security.EventBlocked); len(l) != 1 || l[0]["key"] != "ip:203.0.113.9" || l[0]["reason"] != "login_failures" {
		t.Fatalf("blocked lines: %v", l)
	}
	if l := e.securityLines(security.EventAccountThrottled); len(l) != 1 || strings.Contains(e.logs.String(), "ann@example.com") {
		t.Fatalf("account_throttled lines %v; the email must not be logged", l)
	}
	for _, path := range []string{"/test/login?email=ann@example.com&password=right", "/api/v1/auth/login", "/api/v1/listings"} {
		method := "POST"
		if path == "/api/v1/listings" {
			method = "GET"
		}
		w := e.do(method, path, attacker)
		if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); w.Code != http.StatusTooManyRequests || ra < 3500 || errorCode(t, w) != "rate_limited" {
			t.Fatalf("%s %s while blocked: %d %v", method, path, w.Code, w.Header())
		}
	}
	// The operator: no credentials, wrong ones, then the list.
	if w := e.do("GET", "/ops/ratelimits/blocks", attacker); w.Code != http.StatusUnauthorized {
		t.Fatalf("ops without credentials: %d", w.Code)
	}
	if w := e.do("GET", "/ops/ratelimits/blocks", attacker, "Authorization", "Bearer nope"); w.Code != http.StatusUnauthorized {
		t.Fatalf("ops with a bearer token: %d", w.Code)
	}
	ops := opsAuth
	w := e.do("GET", "/ops/ratelimits/blocks", "127.0.0.1:1", "Authorization", viewerAuth)
	var list struct {
		Data       []ratelimit.Block `json:"data"`
		Pagination struct {
			Limit   int  `json:"limit"`
			HasMore bool `json:"has_more"`
		} `json:"pagination"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 || len(list.Data) != 1 ||
		list.Data[0].Key != "ip:203.0.113.9" || list.Data[0].Reason != "login_failures" || time.Until(list.Data[0].Until) < 59*time.Minute ||
		list.Pagination.Limit != 20 || list.Pagination.HasMore {
		t.Fatalf("blocks: %d %s", w.Code, w.Body)
	}
	// A viewer may look but not lift it.
	if w := e.do("DELETE", "/ops/ratelimits/blocks/ip:203.0.113.9", "127.0.0.1:1", "Authorization", viewerAuth); w.Code != http.StatusForbidden {
		t.Fatalf("viewer clears: %d %s", w.Code, w.Body)
	}
	if w := e.do("DELETE", "/ops/ratelimits/blocks/ip:203.0.113.9", "127.0.0.1:1", "Authorization", ops); w.Code != http.StatusNoContent {
		t.Fatalf("clear: %d %s", w.Code, w.Body)
	}
	// Both attempts are in the operator audit log, with their outcome.
	audit, _, err := e.srv.deps.DB.ListAudit(t.Context(), store.Page{Limit: 10})
	if err != nil || len(audit) != 2 || audit[0].Operator != "ops" || audit[0].Action != "clear_block" ||
		audit[0].StatusCode != http.StatusNoContent || audit[0].TaskID != "ip:203.0.113.9" ||
		audit[1].Operator != "view" || audit[1].StatusCode != http.StatusForbidden {
		t.Fatalf("audit: %+v %v", audit, err)
	}
	if w := e.do("DELETE", "/ops/ratelimits/blocks/ip:203.0.113.9", "127.0.0.1:1", "Authorization", ops); w.Code != http.StatusNotFound {
		t.Fatalf("clear again: %d", w.Code)
	}
	if w := e.do("GET", "/api/v1/listings", attacker); outcome(w) != passed {
		t.Fatalf("after the block was lifted: %d", w.Code)
	}
	// The account is slowed (one attempt per 10s), never blocked: the
	// right password gets through once, and lifts the slow-down.
	if w := e.do("POST", "/test/login?email=ann@example.com&password=right", attacker); w.Code != http.StatusOK {
		t.Fatalf("right password: %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/test/login?email=ann@example.com&password=right", attacker); w.Code != http.StatusOK {
		t.Fatalf("right password again: %d %s", w.Code, w.Body)
	}
}

// TestOpsResetLimits: the operator empties a key's buckets; bad keys and a
// server without operator credentials are refused.
func TestOpsResetLimits(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(1, time.Hour)}})
	const peer = "[2001:db8:1:2::7]:7000"
	e.do("GET", "/api/v1/listings", peer)
	if w := e.do("GET", "/api/v1/listings", "[2001:db8:1:2::8]:7000"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64: %d", w.Code)
	}
	ops := opsAuth
	if w := e.do("DELETE", "/ops/ratelimits/limits/nonsense", "127.0.0.1:1", "Authorization", ops); w.Code != http.StatusBadRequest {
		t.Fatalf("bad key: %d", w.Code)
	}
	w := e.do("GET", "/ops/ratelimits/limits/ip:2001:db8:1:2::99", "127.0.0.1:1", "Authorization", ops)
	var shown struct {
		Key     string            `json:"key"`
		Blocked *ratelimit.Block  `json:"blocked"`
		Limits  []json.RawMessage `json:"limits"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &shown); err != nil || w.Code != 200 || shown.Key != "ip:2001:db8:1:2::/64" ||
		shown.Blocked != nil || len(shown.Limits) != 1 ||
		!strings.Contains(string(shown.Limits[0]), `"policy":"anon","limit":"1/h","burst":1,"remaining":0`) {
		t.Fatalf("show: %d %s", w.Code, w.Body)
	}
	if w := e.do("DELETE", "/ops/ratelimits/limits/ip:2001:db8:1:2::1234", "127.0.0.1:1", "Authorization", ops); w.Code != http.StatusNoContent {
		t.Fatalf("reset: %d %s", w.Code, w.Body)
	}
	if w := e.do("GET", "/api/v1/listings", peer); outcome(w) != passed {
		t.Fatalf("after reset: %d", w.Code)
	}
	e.srv.deps.Operators = nil
	if w := e.do("GET", "/ops/ratelimits/blocks", "127.0.0.1:1", "Authorization", ops); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("without an operator console: %d", w.Code)
	}
}

// TestLimiterDownFailsOpenExceptLogin: with Redis unreachable, reads pass
// unlimited, login and register answer 503 with Retry-After, and the
// outage is logged once, not once per request.
func TestLimiterDownFailsOpenExceptLogin(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	e := newEdge(t, edgeOptions{rdb: dead, policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(1, time.Minute),
		ratelimit.PolicyLogin: per(1, time.Minute)}})
	for i := 0; i < 3; i++ {
		if w := e.do("GET", "/api/v1/listings", "192.0.2.1:1"); outcome(w) != passed || w.Header().Get("X-RateLimit-Limit") != "" {
			t.Fatalf("read %d with Redis down: %d %v", i, w.Code, w.Header())
		}
	}
	for _, path := range []string{"/api/v1/auth/login", "/api/v1/auth/register"} {
		w := e.do("POST", path, "192.0.2.1:1")
		if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "unavailable" || w.Header().Get("Retry-After") != "5" {
			t.Fatalf("%s with Redis down: %d %v %s", path, w.Code, w.Header(), w.Body)
		}
	}
	if n := len(e.securityLines(security.EventLimiterDown)); n != 1 {
		t.Fatalf("%d limiter_unavailable lines, want 1", n)
	}
}

// TestSecurityWatch: probes are logged and counted but served as usual;
// a burst of 401s from one address is logged once.
func TestSecurityWatch(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeOptions{policies: map[string]ratelimit.Limit{ratelimit.PolicyAnon: per(100, time.Minute)}, authBurst: 3})
	if w := e.do("GET", "/api/v1/listings?q=%27+OR+1%3D1--", "192.0.2.3:1"); outcome(w) != passed {
		t.Fatalf("a probe is not refused for its pattern: %d", w.Code)
	}
	if w := e.do("GET", "/static/..%2f..%2fetc%2fpasswd", "192.0.2.3:1"); w.Code != http.StatusNotFound {
		t.Fatalf("traversal probe: %d", w.Code)
	}
	e.do("GET", "/api/v1/listings?q=a+cosy+flat", "192.0.2.3:1")
	l := e.securityLines(security.EventSuspicious)
	if len(l) != 2 || l[0]["pattern"] != security.PatternSQLInjection || l[1]["pattern"] != security.PatternPathTraversal ||
		l[0]["client_ip"] != "192.0.2.3" || l[0]["request_id"] == nil || e.events.Count(security.EventSuspicious) != 2 {
		t.Fatalf("suspicious lines: %v", l)
	}
	for i := 0; i < 4; i++ {
		if w := e.do("GET", "/api/v1/users/me", "192.0.2.4:1", "Authorization", "Bearer nope"); w.Code != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", w.Code)
		}
	}
	if l := e.securityLines(security.EventAuthFailureBurst); len(l) != 1 || l[0]["client_ip"] != "192.0.2.4" {
		t.Fatalf("burst lines: %v", l)
	}
}
