package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/logging"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/security"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/web"
	"github.com/rentalportal/portal/worker"
)

// The roles one process can play.
const (
	roleAll       = "all"
	roleAPI       = "api"
	roleWorker    = "worker"
	roleScheduler = "scheduler"
	roleDashboard = "dashboard"
)

// platform holds the connections a role shares between its components.
type platform struct {
	cfg       *Config
	log       *slog.Logger
	db        *store.DB
	redisOpt  asynq.RedisConnOpt
	redis     redis.UniversalClient
	mini      *miniredis.Miniredis
	client    *asynq.Client
	inspector *asynq.Inspector
	relay     *relay.Relay
	blobs     blob.Store
	closers   []func() error
}

func (p *platform) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		_ = p.closers[i]()
	}
}

func newLogger(cfg *Config, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	return logging.New(stderr, logging.Options{Level: cfg.LogLevel, Format: cfg.LogFormat, File: cfg.LogFile})
}

// serve runs one role (or all of them) until ctx ends.
func serve(ctx context.Context, role string, getenv func(string) string, stdout, stderr io.Writer) error {
	started := time.Now()
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	cfg.Version = version
	log, logCloser, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer logCloser.Close()
	if role != roleAll && cfg.embeddedRedis() {
		return fmt.Errorf("REDIS_URL is required for the %s role: only \"all\" runs an embedded Redis, "+
			"which other processes cannot share", role)
	}
	if err := devSecrets(cfg); err != nil {
		return err
	}
	if err := devWebhookSecret(cfg); err != nil {
		return err
	}
	log.Debug("configuration", "config", cfg)

	p := &platform{cfg: cfg, log: log}
	defer p.close()
	needDB := role != roleScheduler
	if err := p.openRedis(ctx); err != nil {
		return err
	}
	if needDB {
		if err := p.openDB(ctx); err != nil {
			return err
		}
	}
	if role == roleAll || role == roleAPI || role == roleWorker {
		if err := p.openBlobs(ctx); err != nil {
			return err
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	var links []string
	runAPI := role == roleAll || role == roleAPI
	runWorker := role == roleAll || role == roleWorker
	runScheduler := (role == roleAll && cfg.SchedulerEnabled) || role == roleScheduler
	runDashboard := role == roleAll || role == roleDashboard

	reg, metricsHandler, metricsURL, err := p.startMetrics(gctx, g, role, runWorker, &links)
	if err != nil {
		return err
	}
	var console *web.Console
	// The API serves operator endpoints too (/ops/ratelimits), checked by
	// the console's credentials; a lone api role without OPERATOR_USERS in
	// production simply has none.
	if runDashboard || (runAPI && (len(cfg.operatorUsers) > 0 || !cfg.production())) {
		if console, err = p.newConsole(role, metricsURL, &links); err != nil {
			return err
		}
	}
	if runAPI || runWorker {
		g.Go(func() error { p.relay.Run(gctx); return nil })
	}
	if runAPI {
		deps := p.apiDeps()
		var events security.Observer
		if reg != nil {
			events = reg
		}
		if err := p.edgeDeps(&deps, events); err != nil {
			return err
		}
		deps.Webhooks, deps.Inbox = p.webhookInbox()
		if cfg.StripeSecretKey != "" {
			c, err := payments.New(payments.Config{SecretKey: cfg.StripeSecretKey, APIBase: cfg.StripeAPIBase,
				Timeout: cfg.StripeTimeout})
			if err != nil {
				return err
			}
			deps.Payments = c
		}
		deps.Metrics, deps.HTTPMetrics = metricsHandler, reg
		if role == roleAll {
			deps.Dashboard = console
		}
		if console != nil {
			deps.Operators = consoleAuth{console}
		}
		cfgAPI := p.apiConfig(role)
		cfgAPI.OpenAPIServers = cfg.openAPIServers
		srv, err := api.NewServer(cfgAPI, deps)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
		base := baseURL(ln.Addr(), cfg.HTTPAddr)
		links = append(links, "API:        "+base+"/api/v1", "Swagger UI: "+base+"/api/docs",
			"Health:     "+base+"/health")
		if metricsHandler != nil {
			links = append(links, "Metrics:    "+base+"/metrics")
		}
		if role == roleAll {
			links = append(links, "Home:       "+base+"/", "Dashboard:  "+base+web.RootPath+"/")
		}
		g.Go(func() error { return serveHTTP(gctx, log, "api", ln, srv, cfg.ShutdownTimeout, srv.Drain) })
	}
	if runDashboard && role == roleDashboard {
		ln, err := net.Listen("tcp", cfg.DashboardAddr)
		if err != nil {
			return fmt.Errorf("DASHBOARD_ADDR %s: %w", cfg.DashboardAddr, err)
		}
		base := baseURL(ln.Addr(), cfg.DashboardAddr)
		links = append(links, "Home:       "+base+"/", "Dashboard:  "+base+web.RootPath+"/")
		mux := http.NewServeMux()
		mux.Handle("/", console.Standalone(reg))
		if metricsHandler != nil {
			links = append(links, "Metrics:    "+base+"/metrics")
			mux.Handle("GET /metrics", metricsHandler)
		}
		h := probeHandler(map[string]func(context.Context) error{"redis": redisPinger{p.redis}.Ping, "database": p.db.Ping}, mux)
		g.Go(func() error { return serveHTTP(gctx, log, "dashboard", ln, h, cfg.ShutdownTimeout, nil) })
	}
	if runWorker {
		stripeAPI, err := p.stripeClient()
		if err != nil {
			return err
		}
		mailer, renderer, err := newMailer(cfg, log)
		if err != nil {
			return err
		}
		w := worker.New(worker.Config{
			Concurrency:          cfg.WorkerConcurrency,
			Fetchers:             cfg.WorkerFetchers,
			TaskCheckInterval:    cfg.TaskCheckInterval,
			ShutdownTimeout:      cfg.ShutdownTimeout,
			OutboxGrace:          cfg.OutboxGrace,
			StripeEventRetention: cfg.StripeEventRetention,
			OperatorEmails:       cfg.OperatorEmails,
			NotifyRetryBase:      cfg.NotifyRetryBase,
			NotifyRetryMax:       cfg.NotifyRetryMax,
			Images: worker.ImageConfig{
				MaxPixels:    cfg.ImageMaxPixels,
				Quality:      cfg.ImageJPEGQuality,
				MemoryBudget: cfg.ImageMemoryBudgetMB << 20,
				Concurrency:  cfg.ImageConcurrency,
				PendingTTL:   cfg.UploadPendingTTL,
				StuckAfter:   cfg.UploadStuckAfter,
			},
		}, worker.Deps{Log: log, DB: p.db, Relay: p.relay, Stripe: stripeAPI, Blobs: p.blobs, Observer: reg,
			Mailer: mailer, Notify: renderer})
		g.Go(func() error {
			err := w.Run(gctx, p.redis)
			if c, ok := mailer.(io.Closer); ok {
				_ = c.Close() // the SMTP connections it keeps
			}
			return err
		})
		g.Go(func() error { p.relay.Poll(gctx, cfg.OutboxPollInterval, cfg.OutboxPollInterval); return nil })
	}
	if runScheduler {
		s, err := worker.NewScheduler(worker.Schedule, cfg.cronOverrides(), p.client, log)
		if err != nil {
			return err
		}
		g.Go(func() error { return s.Run(gctx) })
	}

	if !runAPI && role != roleDashboard {
		// Worker and scheduler have no HTTP server: give them one for
		// probes (and metrics) so orchestrators can check them.
		addr := cfg.MetricsAddr
		if addr == "" {
			addr = defaultProbeAddr
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("METRICS_ADDR %s: %w", addr, err)
		}
		deps := map[string]func(context.Context) error{"redis": redisPinger{p.redis}.Ping}
		if p.db != nil {
			deps["database"] = p.db.Ping
		}
		links = append(links, "Probes:     "+baseURL(ln.Addr(), addr)+"/health/readiness")
		var extra http.Handler
		if metricsHandler != nil {
			links = append(links, "Metrics:    "+baseURL(ln.Addr(), addr)+"/metrics")
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", metricsHandler)
			extra = mux
		}
		g.Go(func() error {
			return serveHTTP(gctx, log, "probes", ln, probeHandler(deps, extra), cfg.ShutdownTimeout, nil)
		})
	}
	printBanner(stdout, cfg, role, links, time.Since(started))
	log.Info("started", "role", role, "version", version, "startup_ms", time.Since(started).Milliseconds())
	err = g.Wait()
	log.Info("stopped", "role", role)
	return err
}

// openRedis connects to REDIS_URL, or starts the embedded Redis.
func (p *platform) openRedis(ctx context.Context) error {
	if p.cfg.embeddedRedis() {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		p.mini = m
		p.closers = append(p.closers, func() error { m.Close(); return nil })
		p.redisOpt = asynq.RedisClientOpt{Addr: m.Addr()}
		// miniredis only expires keys when told time has passed.
		tick := time.NewTicker(time.Second)
		stop := make(chan struct{})
		p.closers = append(p.closers, func() error { tick.Stop(); close(stop); return nil })
		go func() {
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					m.SetTime(now)
					m.FastForward(now.Sub(last))
					last = now
				}
			}
		}()
	} else {
		opt, err := asynq.ParseRedisURI(p.cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		p.redisOpt = opt
	}
	c, ok := p.redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("REDIS_URL: unsupported connection type")
	}
	p.redis = c
	p.closers = append(p.closers, c.Close)
	p.client = asynq.NewClientFromRedisClient(c)
	p.inspector = asynq.NewInspectorFromRedisClient(c)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		// Start anyway: readiness reports Redis down, and asynq reconnects.
		p.log.Warn("redis unreachable at start-up", "redis", store.RedactURL(p.cfg.RedisURL), "err", err)
	}
	return nil
}

// openBlobs opens the S3 bucket when S3_BUCKET is set, else the local
// folder DATA_DIR/blobs whose signed links the API serves.
func (p *platform) openBlobs(ctx context.Context) error {
	c := p.cfg
	if c.localBlobs() {
		l, err := blob.NewLocal(filepath.Join(c.DataDir, "blobs"), []byte(c.BlobSigningKey), c.PublicURL)
		if err != nil {
			return fmt.Errorf("BLOB_SIGNING_KEY / DATA_DIR: %w", err)
		}
		p.blobs = l
		return nil
	}
	s, err := blob.NewS3(ctx, blob.S3Config{
		Bucket:          c.S3Bucket,
		Region:          c.S3Region,
		Endpoint:        c.S3Endpoint,
		ForcePathStyle:  c.S3ForcePathStyle,
		AccessKeyID:     c.S3AccessKey,
		SecretAccessKey: c.S3SecretKey,
		SSE:             c.S3SSE,
		CDNBaseURL:      c.CDNBaseURL,
	})
	if err != nil {
		return fmt.Errorf("S3: %w", err)
	}
	p.blobs = s
	return nil
}

// openDB opens the database and applies migrations unless disabled.
func (p *platform) openDB(ctx context.Context) error {
	db, err := store.Open(ctx, p.cfg.DatabaseURL, filepath.Join(p.cfg.DataDir, "portal.db"),
		store.Options{MaxOpenConns: p.cfg.DBMaxOpenConns})
	if err != nil {
		return err
	}
	p.db = db
	p.closers = append(p.closers, db.Close)
	if p.cfg.MigrateOnStart {
		if err := db.Migrate(ctx); err != nil {
			return err
		}
	}
	p.relay = relay.New(db, p.client, p.log)
	return nil
}

func (p *platform) components() map[string]string {
	c := map[string]string{"database": "postgres", "redis": "external", "blob": "s3"}
	if p.cfg.embeddedDB() {
		c["database"] = "sqlite"
	}
	if p.cfg.embeddedRedis() {
		c["redis"] = "embedded"
	}
	if p.cfg.localBlobs() {
		c["blob"] = "local"
	}
	return c
}

func (p *platform) apiConfig(role string) api.Config {
	return api.Config{
		Env:              p.cfg.AppEnv,
		Version:          version,
		Role:             role,
		CORSOrigins:      p.cfg.CORSAllowedOrigins,
		TrustedProxies:   p.cfg.TrustedProxies,
		MaxBodyBytes:     p.cfg.MaxBodyBytes,
		DataDir:          p.cfg.DataDir,
		DiskMinFreeBytes: uint64(p.cfg.DiskMinFreeMB) << 20,
		Components:       p.components(),
		JWTSecret:        p.cfg.JWTSecret,
		JWTIssuer:        p.cfg.JWTIssuer,
		JWTAudience:      p.cfg.JWTAudience,
		JWTTTL:           p.cfg.JWTTTL,

		StripeTimeout:         p.cfg.StripeTimeout,
		BcryptCost:            p.cfg.BcryptCost,
		BookingPaymentTTL:     p.cfg.BookingPaymentTTL,
		BookingMaxNights:      p.cfg.BookingMaxNights,
		BookingMaxAdvanceDays: p.cfg.BookingMaxAdvanceDays,
		RateLimitTimeout:      p.cfg.RateLimitTimeout,
		WebhookMaxBytes:       p.cfg.WebhookMaxBytes,
		Uploads: api.UploadConfig{
			MaxImageBytes:    p.cfg.UploadMaxImageBytes,
			MaxDocumentBytes: p.cfg.UploadMaxDocumentBytes,
			MaxFiles:         p.cfg.UploadMaxFiles,
			MaxInFlight:      p.cfg.UploadMaxInFlight,
			MaxImagePixels:   p.cfg.ImageMaxPixels,
			URLTTL:           p.cfg.UploadURLTTL,
			PresignTTL:       p.cfg.UploadPresignTTL,
		},
	}
}

func (p *platform) apiDeps() api.Deps {
	return api.Deps{
		Log:     p.log,
		DB:      p.db,
		DBStats: p.db.Stats,
		Redis:   redisPinger{p.redis},
		Queues:  p.inspector,
		Relay:   p.relay,
		Blobs:   p.blobs,
	}
}

type redisPinger struct{ c redis.UniversalClient }

func (r redisPinger) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

// serveHTTP serves until ctx ends, then drains: readiness turns 503 first,
// in-flight requests get up to timeout to finish.
func serveHTTP(ctx context.Context, log *slog.Logger, name string, ln net.Listener, h http.Handler,
	timeout time.Duration, drain func()) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s server: %w", name, err)
	case <-ctx.Done():
	}
	if drain != nil {
		drain()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown: in-flight requests cut off", "server", name, "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// baseURL turns a listener address into a URL a person can click.
func baseURL(addr net.Addr, configured string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if h, _, _ := net.SplitHostPort(configured); h == "" || h == "0.0.0.0" || h == "::" {
		host = "localhost"
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":" + port
}

func printBanner(w io.Writer, cfg *Config, role string, links []string, took time.Duration) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nRental Portal %s — role %q (%s)\n", version, role, cfg.AppEnv)
	for _, l := range links {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	if role != roleScheduler {
		if cfg.embeddedDB() {
			fmt.Fprintf(&b, "  Database:   EMBEDDED SQLite file %s (set DATABASE_URL for PostgreSQL)\n",
				filepath.Join(cfg.DataDir, "portal.db"))
		} else {
			fmt.Fprintf(&b, "  Database:   PostgreSQL %s\n", store.RedactURL(cfg.DatabaseURL))
		}
	}
	if cfg.embeddedRedis() {
		fmt.Fprintf(&b, "  Redis:      EMBEDDED in-process Redis (miniredis): queued tasks are LOST when this process stops;\n"+
			"              the sweeper re-derives outstanding work from the database. Set REDIS_URL for a real Redis.\n")
	} else {
		fmt.Fprintf(&b, "  Redis:      %s\n", store.RedactURL(cfg.RedisURL))
	}
	if cfg.localBlobs() {
		fmt.Fprintf(&b, "  Blobs:      EMBEDDED local folder %s (set S3_BUCKET for S3)\n", filepath.Join(cfg.DataDir, "blobs"))
	} else {
		fmt.Fprintf(&b, "  Blobs:      S3 bucket %s\n", cfg.S3Bucket)
	}
	if role == roleAll || role == roleWorker {
		fmt.Fprintf(&b, "  Mail:       %s\n", mailBanner(cfg))
	}
	fmt.Fprintf(&b, "Ready in %dms. Stop with Ctrl-C.\n\n", took.Milliseconds())
	_, _ = io.WriteString(w, b.String())
}

// runMigrate applies the migrations and reports the schema version.
func runMigrate(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, filepath.Join(cfg.DataDir, "portal.db"), store.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	v, err := db.MigrationVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database (%s) migrated to version %d\n", db.Engine, v)
	return nil
}

// devSecrets gives development a JWT secret that survives restarts and is
// shared by every process on the same DATA_DIR: generated once into
// DATA_DIR/.jwt-secret (mode 0600). Production refuses to start without
// JWT_SECRET (loadConfig).
func devSecrets(cfg *Config) error {
	if cfg.JWTSecret != "" {
		return nil
	}
	path := filepath.Join(cfg.DataDir, ".jwt-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		cfg.JWTSecret = strings.TrimSpace(string(b))
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("DATA_DIR %s: %w", cfg.DataDir, err)
		}
		secret := randomSecret()
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write development JWT secret: %w", err)
		}
		cfg.JWTSecret = secret
	}
	if cfg.BlobSigningKey == "" {
		cfg.BlobSigningKey = cfg.JWTSecret
	}
	return nil
}
