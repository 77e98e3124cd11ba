package api

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/security"
)

// securityWatch logs requests whose path or query looks like a probe
// (never refusing them for it), and counts 401/403 answers per client
// address to log bursts.
func (s *Server) securityWatch(c *gin.Context) {
	if s.deps.Security == nil {
		c.Next()
		return
	}
	target := c.Request.RequestURI
	if target == "" {
		target = c.Request.URL.RequestURI()
	}
	if kind, ok := security.Suspicious(target); ok {
		if len(target) > 512 {
			target = target[:512]
		}
		s.deps.Security.Event(c.Request.Context(), security.EventSuspicious, slog.String("pattern", kind),
			slog.String("method", c.Request.Method), slog.String("target", target), slog.String("client_ip", c.ClientIP()))
	}
	c.Next()
	if st := c.Writer.Status(); st == http.StatusUnauthorized || st == http.StatusForbidden {
		s.deps.Security.AuthFailure(c.Request.Context(), c.ClientIP(), st)
	}
}
