package api

import (
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal/blob"
)

// routes registers the whole HTTP surface, grouped by who may call it.
func (s *Server) routes(r *gin.Engine) {
	api := securityHeaders(cspAPI, s.cfg.Env == "development")
	html := securityHeaders(cspHTML, s.cfg.Env == "development")
	limit := bodyLimit(s.cfg.MaxBodyBytes)

	// Probes: no auth, no dependencies beyond what each checks.
	probes := r.Group("/health", api)
	probes.GET("", s.health)
	probes.GET("/database", s.healthDatabase)
	probes.GET("/queues", s.healthQueues)
	probes.GET("/memory", s.healthMemory)
	probes.GET("/disk", s.healthDisk)
	probes.GET("/liveness", s.liveness)
	probes.GET("/readiness", s.readiness)

	if s.deps.Metrics != nil {
		r.GET("/metrics", gin.WrapH(s.deps.Metrics))
	}

	// Documentation.
	r.GET("/api/openapi.json", api, notImplemented)
	r.GET("/api/docs", html, notImplemented)

	// Stripe: authenticated by the webhook signature.
	r.POST("/webhooks/stripe", api, notImplemented)

	// Anonymous clients.
	v1 := r.Group("/api/v1", api, limit)
	v1.POST("/auth/register", notImplemented)
	v1.POST("/auth/login", notImplemented)
	v1.GET("/listings", notImplemented)
	v1.GET("/listings/:id", notImplemented)

	// Authenticated users.
	user := v1.Group("", s.requireUser)
	user.GET("/users/me", notImplemented)
	user.POST("/listings", notImplemented)
	user.PATCH("/listings/:id", notImplemented)
	user.DELETE("/listings/:id", notImplemented)
	user.POST("/bookings", notImplemented)
	user.GET("/bookings", notImplemented)
	user.GET("/bookings/:id", notImplemented)
	user.POST("/bookings/:id/cancel", notImplemented)
	user.GET("/upload/:id", s.getUpload)
	user.DELETE("/upload/:id", s.deleteUpload)
	user.GET("/upload/:id/signed-url", s.signedURL)
	user.POST("/upload/presigned-upload", s.presignUpload)
	user.POST("/upload/:id/complete", s.completeUpload)
	user.GET("/notifications", notImplemented)
	user.POST("/notifications/:id/read", notImplemented)

	// Authenticated users' files: streamed, with per-kind size limits
	// instead of the JSON body limit.
	files := r.Group("/api/v1/upload", api, s.requireUser)
	files.POST("/image", s.uploadImage)
	files.POST("/images", s.uploadImages)
	files.POST("/document", s.uploadDocument)

	// Local blobs (the embedded storage): authenticated by the link's
	// signature and expiry.
	r.GET(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.serveBlob)
	r.HEAD(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.serveBlob)
	r.PUT(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.putBlob)

	// Operators: the dashboard, in the "all" role.
	if s.deps.Dashboard != nil {
		r.Any("/monitoring", html, gin.WrapH(s.deps.Dashboard))
		r.Any("/monitoring/*path", html, gin.WrapH(s.deps.Dashboard))
	}
}
