package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/store"
)

// Secrets the processes under test and the bench share.
const (
	benchJWTSecret     = "bench-jwt-secret-0123456789abcdef-0123456789"
	benchJWTIssuer     = "bench"
	benchWebhookSecret = "whsec_bench_0123456789abcdef"
	// generousLimit never refuses: the figures are of the limiter asking
	// Redis, as in production, not of its refusals.
	generousLimit = "1000000/s:1000000"
)

// stack is a scenario's world: its own PostgreSQL schema (migrated), its
// own Redis database, the processes of the real binary it starts, and a
// connection of the bench's own to both for seeding and checking.
type stack struct {
	env      Env
	name     string
	dbURL    string
	redisURL string
	db       *store.DB
	rc       redis.UniversalClient
	client   *asynq.Client
	insp     *asynq.Inspector
	dataDir  string
	procs    []*proc
	mail     *smtpSink // the workers' SMTP server, once one started
}

// newStack makes a fresh schema and flushes Redis database redisDB (kept
// apart from other scenarios' so nothing they left behind counts).
func newStack(ctx context.Context, env Env, name string, redisDB int) (*stack, error) {
	if err := resetSchema(ctx, env.PGURL, name); err != nil {
		return nil, err
	}
	s := &stack{env: env, name: name, dbURL: schemaURL(env.PGURL, name), dataDir: filepath.Join(env.Tmp, name)}
	ru, err := url.Parse(env.RedisURL)
	if err != nil {
		return nil, err
	}
	ru.Path = "/" + strconv.Itoa(redisDB)
	s.redisURL = ru.String()
	db, err := store.Open(ctx, env.PGURL, "", store.Options{MaxOpenConns: 8, SearchPath: name + ",public"})
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := db.Migrate(ctx); err != nil {
		s.close()
		return nil, err
	}
	opt, err := asynq.ParseRedisURI(s.redisURL)
	if err != nil {
		s.close()
		return nil, err
	}
	s.rc = opt.MakeRedisClient().(redis.UniversalClient)
	s.client = asynq.NewClientFromRedisClient(s.rc)
	s.insp = asynq.NewInspectorFromRedisClient(s.rc)
	if err := s.rc.FlushDB(ctx).Err(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close stops the stack's processes and drops what it made.
func (s *stack) close() {
	for _, p := range s.procs {
		p.stop()
	}
	if s.mail != nil {
		s.mail.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.rc != nil {
		_ = s.rc.FlushDB(ctx).Err()
		_ = s.rc.Close()
	}
	if s.db != nil {
		_, _ = s.db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+s.name+` CASCADE`)
		_ = s.db.Close()
	}
}

// baseEnv is the configuration every process of the stack gets:
// production mode, the stack's PostgreSQL schema and Redis database.
func (s *stack) baseEnv(extra map[string]string) map[string]string {
	e := map[string]string{
		"APP_ENV": "production", "DATABASE_URL": s.dbURL, "REDIS_URL": s.redisURL, "DATA_DIR": s.dataDir,
		"JWT_SECRET": benchJWTSecret, "JWT_ISSUER": benchJWTIssuer, "JWT_AUDIENCE": benchJWTIssuer,
		"STRIPE_WEBHOOK_SECRET": benchWebhookSecret,
	}
	for k, v := range extra {
		e[k] = v
	}
	for k, v := range s.env.Set {
		e[k] = v
	}
	return e
}

// startAPI starts `rentalportal api` and waits for its readiness; it
// returns the process and its base URL.
func (s *stack) startAPI(ctx context.Context, extra map[string]string) (*proc, string, error) {
	return s.startRole(ctx, "api", "HTTP_ADDR", extra)
}

// startWorker starts `rentalportal worker`, sending its emails to the
// stack's SMTP sink as production sends them to its mail server, and waits
// for its readiness; it returns the process and the base URL of its probes
// and /metrics.
func (s *stack) startWorker(ctx context.Context, extra map[string]string) (*proc, string, error) {
	if s.mail == nil {
		m, err := startSMTPSink()
		if err != nil {
			return nil, "", err
		}
		s.mail = m
	}
	e := map[string]string{"SMTP_URL": s.mail.url()}
	for k, v := range extra {
		e[k] = v
	}
	return s.startRole(ctx, "worker", "METRICS_ADDR", e)
}

// startRole starts one role listening on a free address (in the variable
// addrVar) and waits for its readiness there.
func (s *stack) startRole(ctx context.Context, role, addrVar string, extra map[string]string) (*proc, string, error) {
	e := s.baseEnv(extra)
	e[addrVar] = freeAddr()
	base := "http://" + e[addrVar]
	p, err := s.start(ctx, s.env.Binary, []string{role}, e, base+"/health/readiness")
	return p, base, err
}

// start runs a process, waits until probe answers 200, and stops it with
// the stack.
func (s *stack) start(ctx context.Context, bin string, args []string, env map[string]string, probe string) (*proc, error) {
	p, err := startProc(ctx, bin, args, env)
	if err != nil {
		return nil, err
	}
	if _, err := waitHTTP(ctx, probe, 20*time.Second); err != nil {
		p.stop()
		return nil, p.failed(fmt.Errorf("%v: %w", args, err))
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// stopProc stops one of the stack's processes before the stack ends.
func (s *stack) stopProc(p *proc) {
	p.stop()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
}

// token is an access token the processes of the stack accept.
func token(userID, role string) (string, error) {
	t, _, err := api.NewTokens(benchJWTSecret, benchJWTIssuer, benchJWTIssuer, time.Hour).Issue(api.Principal{UserID: userID, Role: role})
	return t, err
}

// market is seeded data: one owner, renters, active listings.
type market struct {
	prefix   string
	owner    string
	renters  []string
	listings []string
}

// seedMarket writes an owner, renters and listings in three statements
// (no bcrypt: the bench signs the renters' tokens itself).
func seedMarket(ctx context.Context, db *store.DB, prefix string, renters, listings int) (*market, error) {
	m := &market{prefix: prefix}
	now := store.Now()
	if _, err := store.Exec(ctx, db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		SELECT ? || '-' || g, ? || '-' || g || '@example.com', 'x', 'Bench ' || g, CASE WHEN g = 0 THEN 'owner' ELSE 'renter' END, ?, ?
		FROM generate_series(0, ?) g`, prefix+"-u", prefix+"-u", now, now, renters); err != nil {
		return nil, fmt.Errorf("seed users: %w", err)
	}
	m.owner = prefix + "-u-0"
	for i := 1; i <= renters; i++ {
		m.renters = append(m.renters, fmt.Sprintf("%s-u-%d", prefix, i))
	}
	if _, err := store.Exec(ctx, db, `INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at)
		SELECT ? || '-' || g, ?, 'Bench listing ' || g, 1000 + g, 'EUR', ?, ? FROM generate_series(0, ?) g`,
		prefix+"-l", m.owner, now, now, listings-1); err != nil {
		return nil, fmt.Errorf("seed listings: %w", err)
	}
	for i := 0; i < listings; i++ {
		m.listings = append(m.listings, fmt.Sprintf("%s-l-%d", prefix, i))
	}
	return m, analyze(ctx, db, "users", "listings")
}

// analyze gives freshly seeded tables their planner statistics, as a
// database in service has them. Without them, until autovacuum's next round
// (up to a minute, most of a scenario), PostgreSQL guesses: it took
// "deleted_at IS NULL" to hold for 0.5 % of the listings, and read all 2,000
// of them through a partial index, twice per booking batch, where the
// primary key finds the few it needs.
func analyze(ctx context.Context, db *store.DB, tables ...string) error {
	if _, err := store.Exec(ctx, db, "ANALYZE "+strings.Join(tables, ", ")); err != nil {
		return fmt.Errorf("analyze %v: %w", tables, err)
	}
	return nil
}

// seedPendingBookings writes n pending_payment bookings of the market,
// numbered from first, each on its own listing and night (booking g books
// listing g mod L for the night 1 + 2·(g div L) days ahead), with IDs
// <idPrefix>-<g>, expiring at expiresAt.
func seedPendingBookings(ctx context.Context, db *store.DB, m *market, idPrefix string, first, n int, expiresAt time.Time) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	L := len(m.listings)
	now := store.Now()
	if _, err := store.Exec(ctx, db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at)
		SELECT ? || '-' || g, ? || '-l-' || (g % ?), ? || '-u-' || (1 + g % ?), ?,
			current_date + 1 + 2 * (g / ?), current_date + 2 + 2 * (g / ?), 'pending_payment', 1000, 'EUR', ?, ?, ?
		FROM generate_series(?::integer, ?::integer) g`,
		idPrefix, m.prefix, L, m.prefix, len(m.renters), m.owner, L, L, expiresAt, now, now, first, first+n-1); err != nil {
		return nil, fmt.Errorf("seed bookings: %w", err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", idPrefix, first+i)
	}
	return ids, analyze(ctx, db, "bookings")
}
