package web

import (
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// RequestObserver is told about every answered request (the metrics
// registry satisfies it).
type RequestObserver interface {
	ObserveRequest(route, method string, status int, d time.Duration)
}

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// Route returns the route template of a console path, for logs and metric
// labels (bounded: never the raw path).
func Route(path string) string {
	switch path {
	case HomePath, LoginPath, LogoutPath, AuditPath, MePath, RootPath:
		return path
	}
	if strings.HasPrefix(path, RootPath+"/") {
		return RootPath + "/*path"
	}
	return "unmatched"
}

// Standalone wraps the console for the dashboard role, which serves it
// without the API server around it: request IDs, one access-log line per
// request, panic recovery, and request metrics when obs is set.
func (c *Console) Standalone(obs RequestObserver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, id)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.log.ErrorContext(r.Context(), "panic in console", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeError(rec, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			route := Route(r.URL.Path)
			if obs != nil {
				obs.ObserveRequest(route, r.Method, status, d)
			}
			c.log.InfoContext(r.Context(), "http request", "request_id", id, "method", r.Method, "route", route,
				"path", r.URL.Path, "status", status, "latency_ms", float64(d.Microseconds())/1000,
				"client_ip", c.proxies.clientIP(r))
		}()
		c.ServeHTTP(rec, r)
	})
}
