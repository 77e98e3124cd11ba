package web

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

type link struct {
	Name, URL, Desc string
}

// render writes a page; a template error is a bug, answered with 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		c.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	securityHeaders(w, cspHTML)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// home is the landing page: version, role, and links to everything an
// operator or API consumer looks for first. It shows no data, so it needs
// no login.
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	api := strings.TrimRight(c.cfg.APIBaseURL, "/")
	metrics := c.cfg.MetricsURL
	if metrics == "" {
		metrics = api + "/metrics"
	}
	data := map[string]any{
		"Title": "Home", "Version": c.cfg.Version, "Role": c.cfg.Role, "LogoutPath": LogoutPath,
		"Links": []link{
			{"API documentation", api + "/api/docs", "Swagger UI of the whole HTTP API (try requests with a bearer token)"},
			{"OpenAPI document", api + "/api/openapi.json", "The contract, as OpenAPI 3 JSON"},
			{"Dashboard", RootPath + "/", "Asynqmon: queues, tasks, retries, archived tasks (operator login)"},
			{"Audit log", AuditPath, "Every change an operator made in the dashboard (JSON, operator login)"},
			{"Metrics", metrics, "Prometheus text format: HTTP, tasks, queues, Go runtime"},
			{"Health", api + "/health", "Summary of the dependencies; also /health/liveness and /health/readiness"},
		},
	}
	if op, ok := c.fromSession(r); ok {
		data["Operator"], data["OperatorRole"] = op.Name, op.Role
	}
	c.render(w, r, http.StatusOK, "home.html", data)
}

// loginPage serves the sign-in form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, r, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	c.render(w, r, status, "login.html", map[string]any{
		"Title": "Sign in", "Version": c.cfg.Version, "Error": msg, "Next": safeNext(next), "LoginPath": LoginPath,
	})
}
