package api

import (
	"github.com/gin-gonic/gin"
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
	v1.POST("/auth/register", s.register)
	v1.POST("/auth/login", s.login)
	v1.GET("/listings", s.listListings)
	v1.GET("/listings/:id", s.getListing)

	// Authenticated users.
	user := v1.Group("", s.requireUser)
	user.GET("/users/me", s.me)
	user.POST("/listings", s.createListing)
	user.PATCH("/listings/:id", s.patchListing)
	user.DELETE("/listings/:id", s.deleteListing)
	user.POST("/bookings", s.createBooking)
	user.GET("/bookings", s.listBookings)
	user.GET("/bookings/:id", s.getBooking)
	user.POST("/bookings/:id/cancel", s.cancelBooking)
	user.POST("/upload/image", notImplemented)
	user.POST("/upload/images", notImplemented)
	user.POST("/upload/document", notImplemented)
	user.GET("/upload/:id", notImplemented)
	user.DELETE("/upload/:id", notImplemented)
	user.GET("/upload/:id/signed-url", notImplemented)
	user.POST("/upload/presigned-upload", notImplemented)
	user.POST("/upload/:id/complete", notImplemented)
	user.GET("/notifications", s.listNotifications)
	user.POST("/notifications/:id/read", s.readNotification)

	// Operators: the dashboard, in the "all" role.
	if s.deps.Dashboard != nil {
		r.Any("/monitoring", html, gin.WrapH(s.deps.Dashboard))
		r.Any("/monitoring/*path", html, gin.WrapH(s.deps.Dashboard))
	}
}
