package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/unrolled/secure"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/logging"
)

// Keys of values kept in the gin context.
const (
	ctxLogger    = "logger"
	ctxRequestID = "request_id"
	ctxUserID    = "user_id"
)

// HeaderRequestID carries the request ID in and out.
const HeaderRequestID = "X-Request-ID"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// requestIDMiddleware accepts a sane X-Request-ID from the client or makes
// one, echoes it, and gives the request a logger and context that carry it.
func requestIDMiddleware(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(HeaderRequestID)
		if !validRequestID.MatchString(id) {
			id = newRequestID()
		}
		c.Set(ctxRequestID, id)
		c.Header(HeaderRequestID, id)
		ctx := logging.With(c.Request.Context(), slog.String("request_id", id))
		c.Request = c.Request.WithContext(ctx)
		c.Set(ctxLogger, log)
		c.Next()
	}
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// accessLogMiddleware logs one line per request: method, route template,
// status, latency, size, client IP, and the user once authenticated.
func accessLogMiddleware(log *slog.Logger, skip map[string]bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if skip[route] {
			return
		}
		status := c.Writer.Status()
		level := slog.LevelInfo
		switch {
		case status >= 500:
			level = slog.LevelError
		case status >= 400:
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.String("method", c.Request.Method),
			slog.String("route", route),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", status),
			slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int("bytes", c.Writer.Size()),
			slog.String("client_ip", c.ClientIP()),
		}
		if uid := c.GetString(ctxUserID); uid != "" {
			attrs = append(attrs, slog.String("user_id", uid))
		}
		log.LogAttrs(c.Request.Context(), level, "http request", attrs...)
	}
}

// recoveryMiddleware turns a panic into a 500 in the one error shape. The
// stack goes to the log, never to the client.
func recoveryMiddleware(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if rec := recover(); rec != nil {
				if err, ok := rec.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(rec) // the client went away: let net/http handle it
				}
				log.ErrorContext(c.Request.Context(), "panic in handler",
					"panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
				if c.Writer.Written() {
					c.Abort()
					return
				}
				renderError(c, portal.Errorf(portal.EINTERNAL, "internal error"))
			}
		}()
		c.Next()
	}
}

// CSPs: the JSON API allows nothing; HTML pages (Swagger UI, dashboard,
// landing page) load their own scripts and styles and inline bootstraps.
const (
	cspAPI  = "default-src 'none'; frame-ancestors 'none'"
	cspHTML = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

// securityHeaders sets CSP, HSTS (only over HTTPS, including behind a trusted
// TLS-terminating proxy), nosniff, frame deny and the referrer policy.
func securityHeaders(csp string, development bool) gin.HandlerFunc {
	s := secure.New(secure.Options{
		ContentSecurityPolicy:   csp,
		FrameDeny:               true,
		ContentTypeNosniff:      true,
		ReferrerPolicy:          "strict-origin-when-cross-origin",
		STSSeconds:              31536000,
		STSIncludeSubdomains:    true,
		SSLProxyHeaders:         map[string]string{"X-Forwarded-Proto": "https"},
		CrossOriginOpenerPolicy: "same-origin",
		IsDevelopment:           false,
	})
	_ = development
	return func(c *gin.Context) {
		if err := s.Process(c.Writer, c.Request); err != nil {
			c.Abort()
			return
		}
		// secure writes headers to c.Writer; a redirect or refusal would have
		// been written already.
		if status := c.Writer.Status(); status > 399 && c.Writer.Written() {
			c.Abort()
			return
		}
		c.Next()
	}
}

// bodyLimit bounds the request body; reading past it fails with
// *http.MaxBytesError, which bindJSON reports as 413.
func bodyLimit(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			renderError(c, portal.Errorf(portal.ETOOLARGE, "request body over %d bytes", n))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}
