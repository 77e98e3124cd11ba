package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/go-playground/validator/v10"
	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/web"
)

// Config is every setting of the platform, parsed from the environment once
// at start-up. Fields tagged secret:"true" never reach a log.
type Config struct {
	AppEnv    string `env:"APP_ENV" envDefault:"development" validate:"oneof=development production"`
	Version   string `env:"-"`
	HTTPAddr  string `env:"HTTP_ADDR" envDefault:":8080" validate:"listenaddr"`
	PublicURL string `env:"PUBLIC_BASE_URL" validate:"omitempty,url"`

	// DashboardAddr is where the dashboard role listens when run alone.
	DashboardAddr string `env:"DASHBOARD_ADDR" envDefault:":8081" validate:"listenaddr"`
	// MetricsAddr, if set, serves /metrics on its own listener instead of the API's.
	MetricsAddr string `env:"METRICS_ADDR" validate:"omitempty,listenaddr"`
	// MetricsToken, if set, is the bearer token a scrape of /metrics must send.
	MetricsToken string `env:"METRICS_TOKEN" secret:"true"`
	// OpenAPIServersSpec is the servers list of /api/openapi.json: name=url,...
	OpenAPIServersSpec string `env:"OPENAPI_SERVERS"`

	// Operator console: accounts (name:role:bcrypt-hash,...), the key that
	// signs session cookies (derived from JWT_SECRET when empty), how long a
	// login lasts, and the per-address brake on password guessing.
	OperatorUsersSpec     string        `env:"OPERATOR_USERS" secret:"true"`
	OperatorSessionKey    string        `env:"OPERATOR_SESSION_KEY" secret:"true" validate:"omitempty,min=32"`
	OperatorSessionTTL    time.Duration `env:"OPERATOR_SESSION_TTL" envDefault:"12h" validate:"min=1m,max=720h"`
	OperatorMaxFailures   int           `env:"OPERATOR_LOGIN_MAX_FAILURES" envDefault:"10" validate:"min=1,max=100000"`
	OperatorFailureWindow time.Duration `env:"OPERATOR_LOGIN_WINDOW" envDefault:"15m" validate:"min=1s,max=24h"`
	operatorUsers         []web.User
	openAPIServers        []api.OpenAPIServer

	DataDir        string `env:"DATA_DIR" envDefault:"./data" validate:"required"`
	DatabaseURL    string `env:"DATABASE_URL" secret:"url" validate:"omitempty,postgresurl"`
	DBMaxOpenConns int    `env:"DB_MAX_OPEN_CONNS" envDefault:"20" validate:"min=1,max=1000"`
	MigrateOnStart bool   `env:"MIGRATE_ON_START" envDefault:"true"`

	RedisURL string `env:"REDIS_URL" secret:"url" validate:"omitempty,redisurl"`

	JWTSecret   string        `env:"JWT_SECRET" secret:"true"`
	JWTIssuer   string        `env:"JWT_ISSUER" envDefault:"rentalportal"`
	JWTAudience string        `env:"JWT_AUDIENCE" envDefault:"rentalportal-api"`
	JWTTTL      time.Duration `env:"JWT_TTL" envDefault:"15m" validate:"min=1m,max=24h"`

	// Accounts: the bcrypt cost of password hashes (production needs >= 10).
	BcryptCost int `env:"BCRYPT_COST" envDefault:"12" validate:"min=4,max=31"`
	// Bookings: how long a new booking waits for its payment before it
	// expires, its longest stay in nights, and how far ahead it may start.
	BookingPaymentTTL     time.Duration `env:"BOOKING_PAYMENT_TTL" envDefault:"30m" validate:"min=1s,max=24h"`
	BookingMaxNights      int           `env:"BOOKING_MAX_NIGHTS" envDefault:"90" validate:"min=1,max=3650"`
	BookingMaxAdvanceDays int           `env:"BOOKING_MAX_ADVANCE_DAYS" envDefault:"365" validate:"min=1,max=3650"`

	StripeSecretKey     string        `env:"STRIPE_SECRET_KEY" secret:"true"`
	StripeWebhookSecret []string      `env:"STRIPE_WEBHOOK_SECRET" secret:"true"`
	StripeAPIBase       string        `env:"STRIPE_API_BASE" validate:"omitempty,url"`
	StripeLivemode      bool          `env:"STRIPE_LIVEMODE" envDefault:"false"`
	StripeTimeout       time.Duration `env:"STRIPE_TIMEOUT" envDefault:"3s" validate:"min=100ms,max=1m"`
	WebhookTolerance    time.Duration `env:"STRIPE_WEBHOOK_TOLERANCE" envDefault:"300s" validate:"min=1s,max=1h"`
	// Webhook inbox: body limit and group commit (rows per transaction, how
	// long a batch waits for more rows, how many batches commit at once).
	WebhookMaxBytes      int64         `env:"STRIPE_WEBHOOK_MAX_BYTES" envDefault:"262144" validate:"min=1024,max=16777216"`
	WebhookBatchRows     int           `env:"STRIPE_WEBHOOK_BATCH_ROWS" envDefault:"256" validate:"min=1,max=2000"`
	WebhookBatchWindow   time.Duration `env:"STRIPE_WEBHOOK_BATCH_WINDOW" envDefault:"0s" validate:"min=0,max=50ms"`
	WebhookBatchFlushers int           `env:"STRIPE_WEBHOOK_BATCH_FLUSHERS" envDefault:"4" validate:"min=1,max=64"`

	S3Bucket         string `env:"S3_BUCKET"`
	S3Region         string `env:"S3_REGION" envDefault:"us-east-1"`
	S3Endpoint       string `env:"S3_ENDPOINT" validate:"omitempty,url"`
	S3ForcePathStyle bool   `env:"S3_FORCE_PATH_STYLE" envDefault:"false"`
	S3AccessKey      string `env:"S3_ACCESS_KEY_ID" secret:"true"`
	S3SecretKey      string `env:"S3_SECRET_ACCESS_KEY" secret:"true"`
	S3SSE            string `env:"S3_SSE" validate:"omitempty,oneof=AES256 aws:kms"`
	CDNBaseURL       string `env:"CDN_BASE_URL" validate:"omitempty,url"`
	BlobSigningKey   string `env:"BLOB_SIGNING_KEY" secret:"true"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" validate:"oneof=debug info warn error"`
	LogFormat string `env:"LOG_FORMAT" validate:"omitempty,oneof=json text"`
	LogFile   string `env:"LOG_FILE"`

	CORSAllowedOrigins []string      `env:"CORS_ALLOWED_ORIGINS"`
	TrustedProxies     []string      `env:"TRUSTED_PROXIES"`
	MaxBodyBytes       int64         `env:"MAX_BODY_BYTES" envDefault:"1048576" validate:"min=1024"`
	ShutdownTimeout    time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s" validate:"min=1s,max=10m"`
	DiskMinFreeMB      int64         `env:"HEALTH_DISK_MIN_FREE_MB" envDefault:"512" validate:"min=0"`

	WorkerConcurrency int `env:"WORKER_CONCURRENCY" envDefault:"40" validate:"min=1,max=1000"`
	WorkerFetchers    int `env:"WORKER_FETCHERS" envDefault:"2" validate:"min=1,max=16"`
	// TaskCheckInterval: 10 ms on Redis, 100 ms on the embedded Redis
	// when not set (see defaultTaskCheckInterval).
	TaskCheckInterval time.Duration `env:"WORKER_TASK_CHECK_INTERVAL" validate:"min=1ms,max=10s"`
	SchedulerEnabled  bool          `env:"SCHEDULER_ENABLED" envDefault:"true"`

	// Uploads: per-kind size limits, files per multi-upload, link lifetimes,
	// and how long a presigned upload may stay pending or an image
	// processing before maintenance steps in.
	UploadMaxImageBytes    int64         `env:"UPLOAD_MAX_IMAGE_BYTES" envDefault:"20971520" validate:"min=1024"`
	UploadMaxDocumentBytes int64         `env:"UPLOAD_MAX_DOCUMENT_BYTES" envDefault:"26214400" validate:"min=1024"`
	UploadMaxFiles         int           `env:"UPLOAD_MAX_FILES" envDefault:"10" validate:"min=1,max=100"`
	UploadMaxInFlight      int           `env:"UPLOAD_MAX_IN_FLIGHT" envDefault:"16" validate:"min=1,max=10000"`
	UploadURLTTL           time.Duration `env:"UPLOAD_URL_TTL" envDefault:"15m" validate:"min=10s,max=168h"`
	UploadPresignTTL       time.Duration `env:"UPLOAD_PRESIGN_TTL" envDefault:"15m" validate:"min=10s,max=168h"`
	UploadPendingTTL       time.Duration `env:"UPLOAD_PENDING_TTL" envDefault:"24h" validate:"min=1m"`
	UploadStuckAfter       time.Duration `env:"UPLOAD_STUCK_AFTER" envDefault:"10m" validate:"min=1m"`
	// Images: the pixel limit checked from the header before decoding, the
	// memory the image worker may hold at once (it sizes the images queue's
	// concurrency; IMAGE_CONCURRENCY overrides the derived value) and the
	// variants' JPEG quality.
	ImageMaxPixels      int64 `env:"IMAGE_MAX_PIXELS" envDefault:"50000000" validate:"min=1"`
	ImageMemoryBudgetMB int64 `env:"IMAGE_MEMORY_BUDGET_MB" envDefault:"512" validate:"min=32"`
	ImageConcurrency    int   `env:"IMAGE_CONCURRENCY" envDefault:"0" validate:"min=0,max=64"`
	ImageJPEGQuality    int   `env:"IMAGE_JPEG_QUALITY" envDefault:"85" validate:"min=1,max=100"`

	// Relay settings: how long an unsent outbox row waits before the sweeper
	// relays it (the API relays right after commit, so this only catches crashes).
	OutboxGrace time.Duration `env:"OUTBOX_SWEEP_GRACE" envDefault:"30s" validate:"min=1s"`
	// StripeEventRetention: processed Stripe events older than this are
	// purged by maintenance:cleanup (0 keeps them); at least the 30 days
	// Stripe keeps its own events (which reconciliation can list again).
	StripeEventRetention time.Duration `env:"STRIPE_EVENT_RETENTION" envDefault:"2160h"`
	// OutboxPollInterval is how often each worker process relays outbox
	// rows that are older than one interval and still unsent.
	OutboxPollInterval time.Duration `env:"OUTBOX_POLL_INTERVAL" envDefault:"1s" validate:"min=100ms,max=1m"`

	// Edge protection (ratelimit/, security/): limits are COUNT/PERIOD[:BURST]
	// ("60/m", "300/m:50") or "off"; thresholds COUNT/WINDOW ("10/15m") or "off".
	RateLimitEnabled  bool            `env:"RATE_LIMIT_ENABLED" envDefault:"true"`
	RateLimitAnon     ratelimit.Limit `env:"RATE_LIMIT_ANON" envDefault:"60/m"`
	RateLimitUser     ratelimit.Limit `env:"RATE_LIMIT_USER" envDefault:"300/m"`
	RateLimitLogin    ratelimit.Limit `env:"RATE_LIMIT_LOGIN" envDefault:"10/m"`
	RateLimitRegister ratelimit.Limit `env:"RATE_LIMIT_REGISTER" envDefault:"5/m"`
	RateLimitUpload   ratelimit.Limit `env:"RATE_LIMIT_UPLOAD" envDefault:"30/m"`
	RateLimitBooking  ratelimit.Limit `env:"RATE_LIMIT_BOOKING" envDefault:"20/m"`
	RateLimitTimeout  time.Duration   `env:"RATE_LIMIT_REDIS_TIMEOUT" envDefault:"200ms" validate:"min=10ms,max=5s"`
	// RateLimitLocalCredit: requests of a subject far from its limit an API
	// process may allow without asking Redis (ratelimit/credit.go).
	RateLimitLocalCredit int                 `env:"RATE_LIMIT_LOCAL_CREDIT" envDefault:"8" validate:"min=0,max=64"`
	RateBlockDuration    time.Duration       `env:"RATE_BLOCK_DURATION" envDefault:"15m" validate:"min=1s,max=168h"`
	RateBlockAfter       ratelimit.Threshold `env:"RATE_BLOCK_AFTER_VIOLATIONS" envDefault:"100/10m"`
	LoginFailureLimit    ratelimit.Threshold `env:"LOGIN_FAILURE_LIMIT" envDefault:"10/15m"`
	LoginAccountThrottle ratelimit.Limit     `env:"LOGIN_ACCOUNT_THROTTLE" envDefault:"1/10s"`
	AuthFailureBurst     ratelimit.Threshold `env:"SECURITY_AUTH_FAILURE_BURST" envDefault:"20/m"`
	// Mail: the SMTP server (empty → .eml files under DATA_DIR/mail), the
	// sender, the addresses told of operator-facing events (disputes,
	// failed payouts, restricted accounts), and the retry backoff of
	// notify tasks (base·2ⁿ with jitter, capped).
	SMTPURL         string        `env:"SMTP_URL" secret:"url" validate:"omitempty,smtpurl"`
	MailFrom        string        `env:"MAIL_FROM" envDefault:"Rental Portal <no-reply@localhost>" validate:"mailaddress"`
	OperatorEmails  []string      `env:"OPERATOR_NOTIFY_EMAILS" validate:"dive,email"`
	NotifyRetryBase time.Duration `env:"NOTIFY_RETRY_BASE" envDefault:"1s" validate:"min=10ms,max=1m"`
	NotifyRetryMax  time.Duration `env:"NOTIFY_RETRY_MAX" envDefault:"5m" validate:"min=1s,max=24h"`

	// Cron overrides of the scheduler entries (worker/schedule.go), keyed
	// by the entry's Env name.
	CronBookingsTick       string `env:"CRON_BOOKINGS_TICK"`
	CronMaintenanceSweep   string `env:"CRON_MAINTENANCE_SWEEP"`
	CronPaymentsReconcile  string `env:"CRON_PAYMENTS_RECONCILE"`
	CronMaintenanceCleanup string `env:"CRON_MAINTENANCE_CLEANUP"`
}

// cronOverrides returns the cron spec overrides by variable name.
func (c *Config) cronOverrides() func(string) string {
	m := map[string]string{
		"CRON_BOOKINGS_TICK":       c.CronBookingsTick,
		"CRON_MAINTENANCE_SWEEP":   c.CronMaintenanceSweep,
		"CRON_PAYMENTS_RECONCILE":  c.CronPaymentsReconcile,
		"CRON_MAINTENANCE_CLEANUP": c.CronMaintenanceCleanup,
	}
	return func(k string) string { return m[k] }
}

// embedded reports which parts run on the embedded defaults.
func (c *Config) embeddedDB() bool    { return c.DatabaseURL == "" }
func (c *Config) embeddedRedis() bool { return c.RedisURL == "" }
func (c *Config) localBlobs() bool    { return c.S3Bucket == "" }
func (c *Config) production() bool    { return c.AppEnv == "production" }

// defaultTaskCheckInterval is how often an idle worker polls when
// WORKER_TASK_CHECK_INTERVAL is not set. On Redis, 10 ms: the pickup
// latency the platform's end-to-end target needs, for about 1.5 % of a
// core of Redis per idle worker. The embedded Redis runs each poll's Lua
// scripts in an interpreter written in Go, inside the platform's own
// process: at 10 ms the idle `all` process took 16 % of a core (and 20
// garbage collections a second), at 100 ms 4.6 %. A development machine
// runs on batteries more often than it needs 10 ms pickups.
func defaultTaskCheckInterval(cfg *Config) time.Duration {
	if cfg.embeddedRedis() {
		return 100 * time.Millisecond
	}
	return 10 * time.Millisecond
}

// loadConfig parses and validates the configuration from getenv. An error
// names every variable at fault.
func loadConfig(getenv func(string) string) (*Config, error) {
	var cfg Config
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return nil, err
	}
	environ := map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			environ[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return nil, configParseError(err, params)
	}
	for i, s := range cfg.StripeWebhookSecret {
		cfg.StripeWebhookSecret[i] = strings.TrimSpace(s)
	}
	for i, s := range cfg.OperatorEmails {
		cfg.OperatorEmails[i] = strings.ToLower(strings.TrimSpace(s))
	}
	if cfg.LogFormat == "" {
		cfg.LogFormat = "text"
		if cfg.production() {
			cfg.LogFormat = "json"
		}
	}
	if _, set := environ["WORKER_TASK_CHECK_INTERVAL"]; !set {
		cfg.TaskCheckInterval = defaultTaskCheckInterval(&cfg)
	}
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	if cfg.BlobSigningKey == "" {
		cfg.BlobSigningKey = cfg.JWTSecret
	}
	return &cfg, nil
}

// configParseError rewrites the parser's errors to name environment
// variables rather than Go fields.
func configParseError(err error, params []env.FieldParams) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("configuration: %w", err)
	}
	fields := map[string]string{}
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		fields[t.Field(i).Name] = t.Field(i).Tag.Get("env")
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("%s: cannot parse as %s: %v", fields[pe.Name], pe.Type, pe.Err))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	_ = params
	return fmt.Errorf("configuration: %s", strings.Join(msgs, "; "))
}

func validateConfig(cfg *Config) error {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string { return f.Tag.Get("env") })
	_ = v.RegisterValidation("postgresurl", func(fl validator.FieldLevel) bool {
		u, err := url.Parse(fl.Field().String())
		return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host != ""
	})
	_ = v.RegisterValidation("listenaddr", func(fl validator.FieldLevel) bool {
		_, port, err := net.SplitHostPort(fl.Field().String())
		n, perr := strconv.Atoi(port)
		return err == nil && perr == nil && n >= 0 && n <= 65535
	})
	_ = v.RegisterValidation("redisurl", func(fl validator.FieldLevel) bool {
		_, err := asynq.ParseRedisURI(fl.Field().String())
		return err == nil
	})
	registerMailRules(v)
	var msgs []string
	if err := v.Struct(cfg); err != nil {
		var ve validator.ValidationErrors
		if !errors.As(err, &ve) {
			return err
		}
		for _, fe := range ve {
			msgs = append(msgs, fmt.Sprintf("%s: %s", fe.Field(), describeRule(fe)))
		}
	}
	if cfg.production() {
		if len(cfg.JWTSecret) < 32 {
			msgs = append(msgs, "JWT_SECRET: production needs a secret of at least 32 characters")
		}
		if cfg.DatabaseURL == "" {
			msgs = append(msgs, "DATABASE_URL: production needs PostgreSQL (the embedded SQLite is for development)")
		}
		if cfg.RedisURL == "" {
			msgs = append(msgs, "REDIS_URL: production needs Redis (the embedded one keeps no tasks across restarts)")
		}
		if cfg.BcryptCost < 10 {
			msgs = append(msgs, "BCRYPT_COST: production needs a cost of at least 10")
		}
		if cfg.StripeSecretKey != "" && len(cfg.StripeWebhookSecret) == 0 {
			msgs = append(msgs, "STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set in production")
		}
	}
	if r := cfg.StripeEventRetention; r != 0 && r < 30*24*time.Hour {
		msgs = append(msgs, "STRIPE_EVENT_RETENTION: must be 0 (keep for ever) or at least 720h (Stripe keeps its events for 30 days, and reconciliation may list them again)")
	}
	if cfg.LoginAccountThrottle.Off() {
		msgs = append(msgs, "LOGIN_ACCOUNT_THROTTLE: must be a rate such as 1/10s (accounts are slowed, never blocked)")
	}
	var err error
	if cfg.operatorUsers, err = web.ParseUsers(cfg.OperatorUsersSpec, !cfg.production()); err != nil {
		msgs = append(msgs, "OPERATOR_USERS: "+err.Error())
	}
	if cfg.openAPIServers, err = api.ParseServers(cfg.OpenAPIServersSpec); err != nil {
		msgs = append(msgs, "OPENAPI_SERVERS: "+err.Error())
	}
	msgs = append(msgs, mailRules(cfg)...)
	if cfg.WorkerFetchers > cfg.WorkerConcurrency {
		msgs = append(msgs, fmt.Sprintf("WORKER_FETCHERS: must be at most WORKER_CONCURRENCY (%d): each fetcher runs at least one task", cfg.WorkerConcurrency))
	}
	if cfg.S3Bucket == "" && (cfg.S3Endpoint != "" || cfg.CDNBaseURL != "") {
		msgs = append(msgs, "S3_BUCKET: required when S3_ENDPOINT or CDN_BASE_URL is set")
	}
	if len(msgs) > 0 {
		sort.Strings(msgs)
		return fmt.Errorf("configuration: %s", strings.Join(msgs, "; "))
	}
	return nil
}

func describeRule(fe validator.FieldError) string {
	switch fe.Tag() {
	case "oneof":
		return fmt.Sprintf("must be one of %s, got %q", strings.ReplaceAll(fe.Param(), " ", ", "), fe.Value())
	case "min":
		return fmt.Sprintf("must be at least %s", fe.Param())
	case "max":
		return fmt.Sprintf("must be at most %s", fe.Param())
	case "url":
		return "must be an absolute URL"
	case "postgresurl":
		return "must be a postgres:// URL"
	case "redisurl":
		return "must be a Redis URI (redis://, rediss://, redis-socket:// or redis-sentinel://)"
	case "listenaddr":
		return "must be a listen address host:port (e.g. :8080 or 127.0.0.1:8080)"
	case "required":
		return "is required"
	case "email":
		return fmt.Sprintf("must be an email address, got %q", fe.Value())
	case "smtpurl":
		return "must be an SMTP URL: smtp://[user:pass@]host[:port][?starttls=required|opportunistic|none] or smtps://..."
	case "mailaddress":
		return fmt.Sprintf("must be an email address, optionally with a name (Name <addr@example.com>), got %q", fe.Value())
	}
	return fmt.Sprintf("fails rule %q", fe.Tag())
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// LogValue implements slog.LogValuer: the configuration with secrets
// replaced and URL passwords hidden, safe to log.
func (c *Config) LogValue() slog.Value {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var attrs []slog.Attr
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("env")
		if key == "" || key == "-" {
			continue
		}
		fv := v.Field(i)
		switch f.Tag.Get("secret") {
		case "true":
			s := "<unset>"
			if !fv.IsZero() {
				s = "<redacted>"
			}
			attrs = append(attrs, slog.String(key, s))
		case "url":
			s := fv.String()
			if s != "" {
				if u, err := url.Parse(s); err == nil {
					s = u.Redacted()
				} else {
					s = "<redacted>"
				}
			}
			attrs = append(attrs, slog.String(key, s))
		default:
			attrs = append(attrs, slog.Any(key, fv.Interface()))
		}
	}
	return slog.GroupValue(attrs...)
}
