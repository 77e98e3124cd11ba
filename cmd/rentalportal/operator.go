package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/rentalportal/portal/metrics"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/web"
)

// startMetrics builds this process's metrics registry. With METRICS_ADDR it
// serves /metrics on a listener of its own (in any role) and returns no
// handler to mount; otherwise it returns the handler for the role's own
// HTTP server (the API's, or the dashboard's) and the URL it will have
// there is decided by the caller.
func (p *platform) startMetrics(ctx context.Context, g *errgroup.Group, role string, runWorker bool,
	links *[]string) (reg *metrics.Registry, mount http.Handler, url string, err error) {
	reg = metrics.New(metrics.Options{Version: version, Role: role})
	reg.WatchQueues(p.inspector, p.log)
	if runWorker {
		queueOf := map[string]string{}
		for _, t := range tasks.Types() {
			spec, _ := tasks.SpecOf(t)
			queueOf[t] = spec.Queue
		}
		reg.KnownTasks(queueOf)
	}
	h := reg.Handler(p.cfg.MetricsToken)
	// Worker and scheduler serve /metrics beside their probes (on
	// METRICS_ADDR, or the default probe address): the caller mounts it.
	if p.cfg.MetricsAddr == "" || (role != roleAll && role != roleAPI && role != roleDashboard) {
		if p.cfg.production() && p.cfg.MetricsToken == "" && (role == roleAll || role == roleAPI) {
			p.log.Warn("/metrics is served without a token on HTTP_ADDR: set METRICS_TOKEN or METRICS_ADDR")
		}
		return reg, h, "", nil
	}
	ln, err := net.Listen("tcp", p.cfg.MetricsAddr)
	if err != nil {
		return nil, nil, "", fmt.Errorf("METRICS_ADDR %s: %w", p.cfg.MetricsAddr, err)
	}
	url = baseURL(ln.Addr(), p.cfg.MetricsAddr) + "/metrics"
	*links = append(*links, "Metrics:    "+url)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	g.Go(func() error { return serveHTTP(ctx, p.log, "metrics", ln, mux, p.cfg.ShutdownTimeout, nil) })
	return reg, nil, url, nil
}

// newConsole builds the operator console.
func (p *platform) newConsole(role, metricsURL string, links *[]string) (*web.Console, error) {
	users := p.cfg.operatorUsers
	if len(users) == 0 {
		if p.cfg.production() {
			return nil, fmt.Errorf("OPERATOR_USERS: the %s role serves the dashboard; production needs at least one "+
				"operator (name:operator:bcrypt-hash)", role)
		}
		u, err := devOperator(p.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		users = []web.User{u}
		*links = append(*links, "Operator:   user \"operator\", password in "+filepath.Join(p.cfg.DataDir, devOperatorFile)+
			" (development default; set OPERATOR_USERS)")
	}
	for _, u := range p.cfg.operatorUsers {
		if u.Plain() {
			p.log.Warn("OPERATOR_USERS has a plain-text password: development only, use a bcrypt hash "+
				"(htpasswd -nbBC 12 '' 'password' | tr -d ':\\n')", "user", u.Name)
		}
	}
	apiBase := ""
	if role == roleDashboard {
		apiBase = p.cfg.PublicURL
	}
	c, err := web.New(web.Config{
		Version:            version,
		Role:               role,
		Users:              users,
		SessionKey:         sessionKey(p.cfg),
		SessionTTL:         p.cfg.OperatorSessionTTL,
		MaxLoginFailures:   p.cfg.OperatorMaxFailures,
		LoginFailureWindow: p.cfg.OperatorFailureWindow,
		TrustedProxies:     p.cfg.TrustedProxies,
		APIBaseURL:         apiBase,
		MetricsURL:         metricsURL,
	}, web.Deps{Log: p.log, Queues: p.redisOpt, Redis: p.redis, Audit: p.db})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, c.Close)
	return c, nil
}

// sessionKey is OPERATOR_SESSION_KEY, or else a key derived from
// JWT_SECRET: every replica that shares the JWT secret verifies the same
// sessions, and the JWT secret itself never signs a cookie.
func sessionKey(cfg *Config) []byte {
	if cfg.OperatorSessionKey != "" {
		return []byte(cfg.OperatorSessionKey)
	}
	m := hmac.New(sha256.New, []byte(cfg.JWTSecret))
	m.Write([]byte("rentalportal operator sessions"))
	return m.Sum(nil)
}

// devOperatorFile holds the development operator's password.
const devOperatorFile = ".operator-password"

// devOperator is the development default when OPERATOR_USERS is empty: user
// "operator" (role operator) with a random password generated once into
// DATA_DIR/.operator-password (mode 0600), so `make run` has a working
// dashboard login without putting a password in any file of the repository.
func devOperator(dataDir string) (web.User, error) {
	path := filepath.Join(dataDir, devOperatorFile)
	b, err := os.ReadFile(path)
	pw := strings.TrimSpace(string(b))
	if err != nil || len(pw) < 16 {
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return web.User{}, fmt.Errorf("DATA_DIR %s: %w", dataDir, err)
		}
		pw = randomSecret()[:24]
		if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
			return web.User{}, fmt.Errorf("write development operator password: %w", err)
		}
	}
	return web.NewUser("operator", web.RoleOperator, pw), nil
}

// consoleAuth lets the API check operator credentials the console's way.
type consoleAuth struct{ c *web.Console }

func (a consoleAuth) AuthenticateOperator(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	id, ok := a.c.Authenticate(w, r)
	return id.Name, id.Role, ok
}
