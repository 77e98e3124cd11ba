// Package web is the operator console: Asynqmon under /monitoring behind
// operator auth (a login form setting a signed session cookie, or Basic
// auth for scripts), an audit log of every change an operator makes there,
// and a landing page at / that links the API docs, dashboard, metrics and
// health probes.
//
// One http.Handler serves all of it: the dashboard role listens with it
// alone (Standalone), and the API server mounts it in the all role (every
// path it answers is listed in api/routes.go).
package web

import (
	"bytes"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// Paths the console answers.
const (
	RootPath   = "/monitoring"
	LoginPath  = "/ops/login"
	LogoutPath = "/ops/logout"
	AuditPath  = "/ops/audit"
	MePath     = "/ops/me"
	HomePath   = "/"
)

// Config is what the console takes from the platform's configuration.
type Config struct {
	Version string
	Role    string
	// Users may log in; with none, nobody can.
	Users []User
	// SessionKey signs session cookies (at least 32 bytes); every replica
	// of the dashboard needs the same one.
	SessionKey []byte
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// MaxLoginFailures per client address per LoginFailureWindow, after
	// which logins from it are refused with 429 until the window ends
	// (defaults 10 and 15m).
	MaxLoginFailures   int
	LoginFailureWindow time.Duration
	// TrustedProxies may set X-Forwarded-For and X-Forwarded-Proto.
	TrustedProxies []string
	// APIBaseURL and MetricsURL are where the landing page links the API
	// (docs, health) and the metrics; empty means this origin.
	APIBaseURL string
	MetricsURL string
}

// Deps are the console's collaborators.
type Deps struct {
	Log *slog.Logger
	// Queues is the Redis that holds the queues, for Asynqmon.
	Queues asynq.RedisConnOpt
	// Redis keeps the failed-login counters, shared by every replica.
	Redis redis.UniversalClient
	Audit AuditLog
}

// Console serves the operator console.
type Console struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// Asynqmon, built on first use: a process that only checks operator
	// credentials (the api role) never pays for it.
	monOnce  sync.Once
	full     *asynqmon.HTTPHandler
	readOnly *asynqmon.HTTPHandler
	users    *userSet
	sessions *sessions
	brake    *brake
	proxies  proxies
}

// New returns the console.
func New(cfg Config, deps Deps) (*Console, error) {
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Queues == nil || deps.Redis == nil {
		return nil, errors.New("web: the console needs Redis")
	}
	if len(cfg.SessionKey) < 32 {
		return nil, errors.New("web: the session key must be at least 32 bytes")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxLoginFailures <= 0 {
		cfg.MaxLoginFailures = 10
	}
	if cfg.LoginFailureWindow <= 0 {
		cfg.LoginFailureWindow = 15 * time.Minute
	}
	px, err := parseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, deps: deps, log: deps.Log.With("component", "console"), proxies: px,
		users:    newUserSet(cfg.Users),
		sessions: &sessions{key: cfg.SessionKey, ttl: cfg.SessionTTL, now: time.Now},
		brake:    &brake{rdb: deps.Redis, max: cfg.MaxLoginFailures, window: cfg.LoginFailureWindow},
	}
	if len(cfg.Users) == 0 {
		c.log.Warn("no operator users configured (OPERATOR_USERS): nobody can open the dashboard")
	}
	return c, nil
}

// monitors returns the two Asynqmons, building them on first use: viewers
// get the read-only one, whose UI hides every action (and whose API refuses
// them too, behind our own 403).
func (c *Console) monitors() (full, readOnly *asynqmon.HTTPHandler) {
	c.monOnce.Do(func() {
		c.full = asynqmon.New(asynqmon.Options{RootPath: RootPath, RedisConnOpt: c.deps.Queues})
		c.readOnly = asynqmon.New(asynqmon.Options{RootPath: RootPath, RedisConnOpt: c.deps.Queues, ReadOnly: true})
	})
	return c.full, c.readOnly
}

// Close releases Asynqmon's Redis connections, if it was ever used.
func (c *Console) Close() error {
	var err error
	c.monOnce.Do(func() {}) // nothing is built after Close
	if c.full != nil {
		err = errors.Join(c.full.Close(), c.readOnly.Close())
	}
	return err
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if w.Header().Get(HeaderRequestID) == "" {
		w.Header().Set(HeaderRequestID, newRequestID())
	}
	p := r.URL.Path
	switch {
	case p == HomePath:
		c.only(w, r, c.home, http.MethodGet, http.MethodHead)
	case p == LoginPath && r.Method == http.MethodPost:
		c.login(w, r)
	case p == LoginPath:
		c.only(w, r, c.loginPage, http.MethodGet, http.MethodHead)
	case p == LogoutPath:
		c.only(w, r, c.logout, http.MethodPost)
	case p == MePath:
		c.only(w, r, c.me, http.MethodGet)
	case p == AuditPath:
		c.only(w, r, c.auditPage, http.MethodGet)
	case p == RootPath || strings.HasPrefix(p, RootPath+"/"):
		c.monitoring(w, r)
	default:
		writeError(w, http.StatusNotFound, codeNotFound, "no route "+r.Method+" "+p)
	}
}

func (c *Console) only(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, methods ...string) {
	for _, m := range methods {
		if r.Method == m {
			h(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, codeMethod, "method "+r.Method+" not allowed here")
}

func (c *Console) me(w http.ResponseWriter, r *http.Request) {
	op, ok := c.authenticate(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"operator": op.Name, "role": op.Role, "read_only": op.Role != RoleOperator})
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.authenticate(w, r, false); !ok {
		return
	}
	c.listAudit(w, r)
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// monitoring serves Asynqmon to operators: viewers get the read-only
// handler and a 403 for any change; every change an operator (or viewer)
// attempts through its API is audited with the status it ended with.
func (c *Console) monitoring(w http.ResponseWriter, r *http.Request) {
	apiPrefix := RootPath + "/api/"
	isAPI := strings.HasPrefix(r.URL.Path, apiPrefix)
	op, ok := c.authenticate(w, r, !isAPI && isSafeMethod(r.Method))
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasPrefix(r.URL.Path, RootPath+"/static/") {
		// Asynqmon's scripts have content hashes in their names: the
		// browser may keep them (privately: they are behind the login).
		w.Header().Set("Cache-Control", "private, max-age=86400")
	}
	full, readOnly := c.monitors()
	if isSafeMethod(r.Method) {
		h := full
		if op.Role != RoleOperator {
			h = readOnly
		}
		if isAPI {
			securityHeaders(w, cspJSON)
			h.ServeHTTP(&assetTypes{ResponseWriter: w, path: r.URL.Path, fallback: "application/json; charset=utf-8"}, r)
			return
		}
		securityHeaders(w, cspHTML)
		aw := &assetTypes{ResponseWriter: w, path: r.URL.Path, fallback: "text/html; charset=utf-8"}
		h.ServeHTTP(aw, r)
		aw.finish()
		return
	}
	if !isAPI {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeMethod, "method "+r.Method+" not allowed here")
		return
	}
	t := parseAction(r.Method, strings.TrimPrefix(r.URL.Path, RootPath+"/api"))
	if strings.Contains(t.Action, "batch_") {
		t.TaskID = batchTaskIDs(r)
	}
	switch {
	case !c.sameOrigin(r):
		writeError(w, http.StatusForbidden, codeForbidden, "cross-site request refused")
		c.audit(r, op, t, http.StatusForbidden)
	case op.Role != RoleOperator:
		writeError(w, http.StatusForbidden, codeForbidden, "viewers cannot change queues or tasks")
		c.audit(r, op, t, http.StatusForbidden)
	default:
		securityHeaders(w, cspJSON)
		rec := &statusRecorder{ResponseWriter: w}
		full.ServeHTTP(&assetTypes{ResponseWriter: rec, path: r.URL.Path, fallback: "application/json; charset=utf-8"}, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		c.audit(r, op, t, rec.status)
	}
}

// sameOrigin refuses changes a browser sends from another site (on top of
// the SameSite=Strict cookie): an Origin header must name this host, and
// Sec-Fetch-Site must not say cross-site. Scripts send neither.
func (c *Console) sameOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" && c.proxies.trusts(peer(r)) {
		host = strings.TrimSpace(strings.Split(fh, ",")[0])
	}
	return strings.EqualFold(u.Host, host)
}

// assetTypes gives Asynqmon's answers the content types it leaves out or
// sniffs wrong: it sets none on its JSON and its index page (inside the API
// server the gzip middleware compresses before net/http could sniff, so
// they would go out untyped), and an SVG sniffs as text/xml, which a
// browser will not draw as an image. With nosniff, the type must be right.
// It also takes out of the index page the stylesheets Asynqmon loads from
// Google Fonts: the console works offline and calls no third party (the
// CSP would block them anyway; the UI falls back to the system font).
type assetTypes struct {
	http.ResponseWriter
	path string
	// fallback is the type of an answer with none and no known extension:
	// JSON for the API, HTML (the index) for everything else.
	fallback string
	checked  bool
	// html answers are held until finish, to be rewritten.
	html   bool
	status int
	buf    bytes.Buffer
}

var externalStylesheet = regexp.MustCompile(`<link rel="stylesheet" href="https?://[^"]*"/?>`)

func (a *assetTypes) fix() {
	if a.checked {
		return
	}
	a.checked = true
	ct := a.Header().Get("Content-Type")
	if ct == "" || strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(ct, "text/xml") ||
		strings.HasPrefix(ct, "application/octet-stream") {
		t := mime.TypeByExtension(path.Ext(a.path))
		switch {
		case ct == "" && t == "":
			t = a.fallback
		case ct == "" && strings.HasSuffix(a.path, ".js"):
			t = a.fallback // a missing script: Asynqmon answers with its index page
		}
		if t != "" {
			a.Header().Set("Content-Type", t)
		}
	}
	a.html = strings.HasPrefix(a.Header().Get("Content-Type"), "text/html")
}

func (a *assetTypes) WriteHeader(code int) {
	a.fix()
	if a.html {
		a.status = code
		return
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *assetTypes) Write(b []byte) (int, error) {
	a.fix()
	if a.html {
		return a.buf.Write(b)
	}
	return a.ResponseWriter.Write(b)
}

// finish writes a held page, without third-party stylesheets.
func (a *assetTypes) finish() {
	if !a.html {
		return
	}
	body := externalStylesheet.ReplaceAll(a.buf.Bytes(), nil)
	a.Header().Del("Content-Length")
	if a.status != 0 {
		a.ResponseWriter.WriteHeader(a.status)
	}
	_, _ = a.ResponseWriter.Write(body)
}

func (a *assetTypes) Unwrap() http.ResponseWriter { return a.ResponseWriter }
