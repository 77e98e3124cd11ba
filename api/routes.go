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

	// Documentation: the OpenAPI document and Swagger UI with its assets.
	r.GET("/api/openapi.json", api, s.openAPI)
	r.GET("/api/docs", html, s.swaggerUI)
	r.GET("/api/docs/*file", html, s.swaggerUI)

	// Stripe: authenticated by the webhook signature.
	r.POST("/webhooks/stripe", api, s.stripeWebhook)

	// Anonymous clients.
	v1 := r.Group("/api/v1", api, limit, s.rateLimit)
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
	user.GET("/upload/:id", s.getUpload)
	user.DELETE("/upload/:id", s.deleteUpload)
	user.GET("/upload/:id/signed-url", s.signedURL)
	user.POST("/upload/presigned-upload", s.presignUpload)
	user.POST("/upload/:id/complete", s.completeUpload)
	user.GET("/notifications", s.listNotifications)
	user.POST("/notifications/:id/read", s.readNotification)

	// Operators: rate limits and blocks (operator session or Basic auth;
	// viewers read, operators change; changes are audited).
	ops := r.Group("/ops/ratelimits", api, s.requireOperator, s.requireLimiter)
	ops.GET("/blocks", s.listBlocks)
	ops.DELETE("/blocks/:key", s.clearBlock)
	ops.GET("/limits/:key", s.showLimits)
	ops.DELETE("/limits/:key", s.resetLimits)

	// Authenticated users' files: streamed, with per-kind size limits
	// instead of the JSON body limit.
	files := r.Group("/api/v1/upload", api, s.rateLimit, s.requireUser)
	files.POST("/image", s.uploadImage)
	files.POST("/images", s.uploadImages)
	files.POST("/document", s.uploadDocument)

	// Local blobs (the embedded storage): authenticated by the link's
	// signature and expiry.
	r.GET(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.serveBlob)
	r.HEAD(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.serveBlob)
	r.PUT(strings.TrimSuffix(blob.LocalRoute, "/")+"/*key", api, s.putBlob)

	// Operators: the console (web.Console) in the "all" role — landing
	// page, sign-in, audit log, and Asynqmon under /monitoring. It checks
	// operator credentials itself (session cookie or Basic auth).
	if s.deps.Dashboard != nil {
		console := gin.WrapH(s.deps.Dashboard)
		r.GET("/", html, console)
		r.GET("/ops/login", html, console)
		r.POST("/ops/login", html, limit, console)
		r.POST("/ops/logout", html, console)
		r.GET("/ops/me", api, console)
		r.GET("/ops/audit", api, console)
		r.Any("/monitoring", html, console)
		r.Any("/monitoring/*path", html, console)
	}
}
