// Package api is the thin HTTP layer: Gin routes (all in routes.go), handlers
// that validate, authorize, write what must be durable and enqueue work
// through the outbox, and the middleware every production API needs. It does
// no heavy work in a request.
package api

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-contrib/gzip"
	"github.com/gin-gonic/gin"
	"golang.org/x/sync/semaphore"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/account"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/security"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// Config is what the API takes from the platform's configuration.
type Config struct {
	Env            string // development or production
	Version        string
	Role           string
	CORSOrigins    []string
	TrustedProxies []string
	MaxBodyBytes   int64
	DataDir        string
	// DiskMinFreeBytes is the free space under which /health/disk is 503.
	DiskMinFreeBytes uint64
	// JWT settings for access tokens.
	JWTSecret   string
	JWTIssuer   string
	JWTAudience string
	JWTTTL      time.Duration
	// WebhookMaxBytes bounds a Stripe webhook body (413 beyond).
	WebhookMaxBytes int64
	// StripeTimeout bounds the PaymentIntent call in a booking request (0: 3s).
	StripeTimeout time.Duration
	// Components says what backs each dependency (database: sqlite|postgres,
	// redis: embedded|external, blob: local|s3).
	Components map[string]string
	// OpenAPIServers is the servers list of /api/openapi.json
	// (OPENAPI_SERVERS); empty means this server ("/").
	OpenAPIServers []OpenAPIServer
	// BcryptCost is the cost of password hashes (0: 12).
	BcryptCost int
	// BookingPaymentTTL is how long a new booking waits for its payment
	// before it expires (0: 30m).
	BookingPaymentTTL time.Duration
	// BookingMaxNights bounds a booking's length (0: 90).
	BookingMaxNights int
	// BookingMaxAdvanceDays bounds how far ahead a booking may start (0: 365).
	BookingMaxAdvanceDays int
	// RateLimitTimeout bounds each call to the limiter's Redis; past it
	// the request is served unlimited (login and register: 503).
	RateLimitTimeout time.Duration
	// Uploads are the limits and link lifetimes of uploads.
	Uploads UploadConfig
}

// Publisher relays committed outbox messages to the queue.
type Publisher interface {
	Publish(ctx context.Context, msgs ...tasks.Message)
}

// Deps are the API's collaborators.
type Deps struct {
	Log     *slog.Logger
	DB      *store.DB
	DBStats func() sql.DBStats
	Redis   Pinger
	Queues  QueueInspector
	Relay   Publisher
	// Webhooks verifies Stripe deliveries and Inbox stores them; without
	// both /webhooks/stripe answers 503.
	Webhooks WebhookVerifier
	Inbox    EventInbox
	// Dashboard, when set, is served under /monitoring (the "all" role).
	Dashboard http.Handler
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Limiter, when set, rate-limits /api/v1 and keeps the block list.
	Limiter RateLimiter
	// LoginGuard, when set, is the login handler's brake on guessing.
	LoginGuard LoginGuard
	// Security logs and counts security events (nil: none).
	Security *security.Monitor
	// Blobs stores uploads (S3, or the local folder served under /blobs/).
	Blobs BlobStore
	// Payments creates PaymentIntents (nil without a Stripe key: bookings
	// wait for a payment webhook).
	Payments PaymentCreator
	// Operators checks operator credentials for the /ops endpoints the API
	// serves (nil: they answer 503).
	Operators OperatorAuth
	// HTTPMetrics, when set, counts every request by route template.
	HTTPMetrics RequestObserver
}

// PaymentCreator creates a booking's PaymentIntent (payments.Client
// satisfies it).
type PaymentCreator interface {
	// CreateIntent creates (or, for the same booking, returns again) the
	// booking's PaymentIntent; errors wrap payments.ErrTemporary or
	// payments.ErrRejected.
	CreateIntent(ctx context.Context, bookingID string, amount int64, currency string) (payments.Intent, error)
}

// Server is the HTTP API.
type Server struct {
	cfg      Config
	deps     Deps
	engine   *gin.Engine
	tokens   *Tokens
	openapi  *openAPIDocument
	started  time.Time
	draining atomic.Bool
	hasher   *account.Hasher
	// limiterWarned is when an unreachable limiter was last logged (ns).
	limiterWarned atomic.Int64
	// uploads bounds the uploads received at once (Uploads.MaxInFlight).
	uploads *semaphore.Weighted
	// bookings creates the bookings of concurrent requests together.
	bookings *store.Bookings
}

// NewServer builds the API with every route of routes.go.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	// Gin's debug mode only prints routes and warnings; our own logs say
	// what matters, in both environments.
	gin.SetMode(gin.ReleaseMode)
	if cfg.StripeTimeout <= 0 {
		cfg.StripeTimeout = 3 * time.Second
	}
	if cfg.RateLimitTimeout <= 0 {
		cfg.RateLimitTimeout = 200 * time.Millisecond
	}
	cfg.Uploads.defaults()
	s := &Server{cfg: cfg, deps: deps, started: time.Now(),
		tokens:  NewTokens(cfg.JWTSecret, cfg.JWTIssuer, cfg.JWTAudience, cfg.JWTTTL),
		uploads: semaphore.NewWeighted(int64(cfg.Uploads.MaxInFlight))}
	doc, err := loadOpenAPI(cfg.OpenAPIServers)
	if err != nil {
		return nil, err
	}
	s.openapi = doc
	if deps.DB != nil {
		s.bookings = store.NewBookings(deps.DB)
	}
	if err := s.setupAccounts(); err != nil {
		return nil, err
	}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	// nil trusts no proxy: the client IP is the peer's address unless it is
	// a configured proxy.
	if err := r.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, portal.WrapError(portal.EINVALID, err, "TRUSTED_PROXIES: %v", err)
	}
	if deps.HTTPMetrics != nil {
		r.Use(metricsMiddleware(deps.HTTPMetrics))
	}
	r.Use(recoveryMiddleware(deps.Log), requestIDMiddleware(deps.Log),
		accessLogMiddleware(deps.Log, map[string]bool{"/health/liveness": true, "/health/readiness": true, "/metrics": true}),
		s.securityWatch)
	if len(cfg.CORSOrigins) > 0 {
		r.Use(cors.New(cors.Config{
			AllowOrigins: cfg.CORSOrigins,
			AllowMethods: []string{"GET", "POST", "PATCH", "DELETE", "OPTIONS"},
			AllowHeaders: []string{"Authorization", "Content-Type", HeaderRequestID, headerIdempotencyKey},
			ExposeHeaders: []string{HeaderRequestID, "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
				"Location", "Idempotent-Replayed"},
			AllowCredentials: false,
			MaxAge:           12 * time.Hour,
		}))
	}
	r.Use(gzip.Gzip(gzip.DefaultCompression, gzip.WithExcludedPathsRegexs([]string{`^/webhooks/`, `^/metrics`, `^/blobs/`})))
	r.NoRoute(securityHeaders(cspAPI, false), func(c *gin.Context) {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(securityHeaders(cspAPI, false), func(c *gin.Context) {
		renderError(c, portal.Errorf("method_not_allowed", "method %s not allowed here", c.Request.Method))
	})
	s.routes(r)
	s.engine = r
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Routes lists the registered routes (method and path template).
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

// Drain makes readiness fail so load balancers stop sending traffic before
// the server shuts down.
func (s *Server) Drain() { s.draining.Store(true) }

func errUnavailable(msg string) error { return portal.Errorf(portal.EUNAVAILABLE, "%s", msg) }
