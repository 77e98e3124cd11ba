package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/internal/testkit"
)

func newTestServer(t *testing.T, cfg Config, logs *strings.Builder) *Server {
	t.Helper()
	if logs == nil {
		logs = &strings.Builder{}
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1024
	}
	cfg.JWTSecret, cfg.JWTIssuer, cfg.JWTAudience, cfg.JWTTTL = strings.Repeat("s", 32), "iss", "aud", time.Minute
	cfg.DataDir = t.TempDir()
	s, err := NewServer(cfg, Deps{Log: slog.New(slog.NewTextHandler(logs, nil)), DB: testkit.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func do(s http.Handler, method, path string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) ErrorObject {
	t.Helper()
	var b ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("body is not the error shape: %s", w.Body.String())
	}
	if b.Error.Code == "" || b.Error.Message == "" || b.Error.RequestID == "" {
		t.Fatalf("incomplete error: %s", w.Body.String())
	}
	return b.Error
}

func TestErrorsHaveOneShape(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{Env: "production"}, nil)
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/no/such/route", 404, "not_found"},
		{"DELETE", "/health/liveness", 405, "method_not_allowed"},
		{"GET", "/api/v1/users/me", 401, "unauthorized"},
	}
	for _, c := range cases {
		w := do(s, c.method, c.path, "", nil)
		if w.Code != c.status {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, w.Code, c.status)
			continue
		}
		if e := errorOf(t, w); e.Code != c.code || e.RequestID != w.Header().Get(HeaderRequestID) {
			t.Errorf("%s %s: %+v (request id header %q)", c.method, c.path, e, w.Header().Get(HeaderRequestID))
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("content type %q", ct)
		}
	}
}

func TestRequestIDIsEchoedOrMade(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, nil)
	w := do(s, "GET", "/health/liveness", "", map[string]string{HeaderRequestID: "client-id-123"})
	if got := w.Header().Get(HeaderRequestID); got != "client-id-123" {
		t.Errorf("echoed %q", got)
	}
	w = do(s, "GET", "/health/liveness", "", map[string]string{HeaderRequestID: "bad id\nwith newline<script>"})
	if got := w.Header().Get(HeaderRequestID); got == "" || strings.ContainsAny(got, " \n<") {
		t.Errorf("unsafe request id accepted: %q", got)
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, nil)
	w := do(s, "GET", "/health/liveness", "", nil)
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "strict-origin-when-cross-origin",
		"Content-Security-Policy": cspAPI,
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"X-Powered-By", "Server", "Strict-Transport-Security"} {
		if got := w.Header().Get(k); got != "" {
			t.Errorf("%s = %q over plain HTTP", k, got)
		}
	}
	w = do(s, "GET", "/health/liveness", "", map[string]string{"X-Forwarded-Proto": "https"})
	if !strings.Contains(w.Header().Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over HTTPS: %v", w.Header())
	}
}

func TestPanicBecomesA500WithoutStack(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	s := newTestServer(t, Config{Env: "production"}, &logs)
	s.engine.GET("/test/panic", func(*gin.Context) { panic("secret internals at main.go:42") })
	w := do(s, "GET", "/test/panic", "", nil)
	if w.Code != 500 {
		t.Fatalf("status %d", w.Code)
	}
	e := errorOf(t, w)
	if e.Code != "internal" || strings.Contains(w.Body.String(), "secret internals") || strings.Contains(w.Body.String(), "goroutine") {
		t.Fatalf("response leaks the panic: %s", w.Body.String())
	}
	if !strings.Contains(logs.String(), "panic in handler") || !strings.Contains(logs.String(), "secret internals") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{MaxBodyBytes: 1024}, nil)
	s.engine.POST("/test/echo", bodyLimit(1024), func(c *gin.Context) {
		var v map[string]any
		if err := c.ShouldBindJSON(&v); err != nil {
			renderError(c, err)
			return
		}
		c.JSON(200, v)
	})
	w := do(s, "POST", "/test/echo", `{"a":"`+strings.Repeat("x", 2000)+`"}`, map[string]string{"Content-Type": "application/json"})
	if w.Code != 413 || errorOf(t, w).Code != "too_large" {
		t.Fatalf("oversize body: %d %s", w.Code, w.Body.String())
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{CORSOrigins: []string{"https://app.example.com"}}, nil)
	w := do(s, "OPTIONS", "/api/v1/bookings", "", map[string]string{"Origin": "https://app.example.com",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("allowed origin: %q (%d)", got, w.Code)
	}
	if got := strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")); !strings.Contains(got, "idempotency-key") {
		t.Errorf("Access-Control-Allow-Headers %q lacks Idempotency-Key", got)
	}
	// A browser client may read where its booking is, and that it was
	// replayed.
	w = do(s, "GET", "/health/liveness", "", map[string]string{"Origin": "https://app.example.com"})
	for _, h := range []string{"Location", "Idempotent-Replayed", "X-Request-Id"} {
		if !strings.Contains(strings.ToLower(w.Header().Get("Access-Control-Expose-Headers")), strings.ToLower(h)) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", w.Header().Get("Access-Control-Expose-Headers"), h)
		}
	}
	w = do(s, "OPTIONS", "/api/v1/bookings", "", map[string]string{"Origin": "https://evil.example.com",
		"Access-Control-Request-Method": "POST"})
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("foreign origin allowed: %q", got)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		proxies []string
		want    string
	}{{nil, "10.0.0.5"}, {[]string{"10.0.0.0/8"}, "203.0.113.9"}} {
		s := newTestServer(t, Config{TrustedProxies: c.proxies}, nil)
		var got string
		s.engine.GET("/test/ip", func(ctx *gin.Context) { got = ctx.ClientIP() })
		req := httptest.NewRequest("GET", "/test/ip", nil)
		req.RemoteAddr = "10.0.0.5:4444"
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		s.ServeHTTP(httptest.NewRecorder(), req)
		if got != c.want {
			t.Errorf("proxies %v: client IP %q, want %q", c.proxies, got, c.want)
		}
	}
}
