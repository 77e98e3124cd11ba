// Package testkit gives tests the real services they need: each test its own
// migrated PostgreSQL schema or SQLite file, its own Redis database, the
// S3-compatible server and stripe-mock started by scripts/with-services.sh.
// A missing service skips the test, unless PORTAL_REQUIRE_SERVICES=1 (make
// test and CI), where it fails it.
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/store"
)

// Env reads a service's variable; when it is empty the test is skipped, or
// failed when services are required.
func Env(t testing.TB, name string, fallbacks ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, fallbacks...) {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	Missing(t, name)
	return ""
}

// Missing skips (or, with PORTAL_REQUIRE_SERVICES=1, fails) a test whose
// real service is not configured.
func Missing(t testing.TB, name string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not set: run the tests through `make test` (scripts/with-services.sh starts the real services)", name)
	if os.Getenv("PORTAL_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg + " — PORTAL_REQUIRE_SERVICES=1 forbids skipping")
	}
	t.Skip(msg)
}

// RandomName returns a short random identifier with a prefix.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var pgOnce sync.Once
var pgOnceErr error

// PostgresURL returns TEST_DATABASE_URL (or skips/fails).
func PostgresURL(t testing.TB) string { return Env(t, "TEST_DATABASE_URL") }

// Postgres returns a store on a fresh, migrated schema of the test
// PostgreSQL; the schema is dropped when the test ends.
func Postgres(t testing.TB) *store.DB {
	t.Helper()
	base := PostgresURL(t)
	ctx := context.Background()
	admin, err := store.Open(ctx, base, "", store.Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer admin.Close()
	installBtreeGist(t, ctx, admin)
	schema := RandomName("t_")
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	db, err := store.Open(ctx, base, "", store.Options{MaxOpenConns: 20, SearchPath: schema + ",public"})
	if err != nil {
		t.Fatalf("open test schema: %v", err)
	}
	t.Cleanup(func() {
		db.Close()
		a, err := store.Open(context.Background(), base, "", store.Options{MaxOpenConns: 1})
		if err == nil {
			_, _ = a.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
			a.Close()
		}
	})
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate test schema: %v", err)
	}
	return db
}

// installBtreeGist installs btree_gist in public once per test binary:
// extensions are per database, and every test schema finds its operator
// classes there. Test binaries of other packages may install it at the
// same moment on a fresh cluster, and the loser of that race gets a unique
// violation from CREATE EXTENSION IF NOT EXISTS: the extension is then
// there, which is all that is needed.
func installBtreeGist(t testing.TB, ctx context.Context, admin *store.DB) {
	t.Helper()
	pgOnce.Do(func() {
		if _, pgOnceErr = admin.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public`); pgOnceErr != nil {
			var n int
			if store.Get(ctx, admin, &n, `SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'`) == nil && n == 1 {
				pgOnceErr = nil
			}
		}
	})
	if pgOnceErr != nil {
		t.Fatalf("install btree_gist: %v", pgOnceErr)
	}
}

// PostgresSchemaURL creates a fresh schema (not migrated) and returns a
// DATABASE_URL that uses it, for tests that start the real binary.
func PostgresSchemaURL(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	ctx := context.Background()
	admin, err := store.Open(ctx, base, "", store.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer admin.Close()
	installBtreeGist(t, ctx, admin)
	schema := RandomName("t_")
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		a, err := store.Open(context.Background(), base, "", store.Options{MaxOpenConns: 1})
		if err == nil {
			_, _ = a.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`)
			a.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema+",public")
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLite returns a store on a fresh, migrated SQLite file in the test's
// temporary directory.
func SQLite(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "", filepath.Join(t.TempDir(), "test.db"), store.Options{})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate sqlite: %v", err)
	}
	return db
}

// Engines runs f as a subtest on each SQL engine with its own fresh store.
func Engines(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

// Redis is a test's own Redis database.
type Redis struct {
	URL    string
	Opt    asynq.RedisConnOpt
	Client redis.UniversalClient
}

// RedisDB gives the test its own numbered database of the test Redis
// (started with 1024 databases), flushed before and after.
func RedisDB(t testing.TB) Redis {
	t.Helper()
	base := Env(t, "TEST_REDIS_URL", "REDIS_URL")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opt0, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	opt0.DB = 0
	c0 := redis.NewClient(opt0)
	defer c0.Close()
	n, err := c0.Incr(ctx, "testkit:next-db").Result()
	if err != nil {
		t.Fatalf("test redis unreachable: %v", err)
	}
	dbs := int64(16)
	if v, err := c0.ConfigGet(ctx, "databases").Result(); err == nil {
		if s, ok := v["databases"]; ok {
			fmt.Sscan(s, &dbs)
		}
	}
	db := int(1 + (n-1)%(dbs-1))
	u.Path = fmt.Sprintf("/%d", db)
	r := Redis{URL: u.String()}
	r.Opt, err = asynq.ParseRedisURI(r.URL)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	r.Client = r.Opt.MakeRedisClient().(redis.UniversalClient)
	if err := r.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush test redis db: %v", err)
	}
	t.Cleanup(func() {
		_ = r.Client.FlushDB(context.Background()).Err()
		r.Client.Close()
	})
	return r
}

// StripeAPIBase returns the stripe-mock URL.
func StripeAPIBase(t testing.TB) string {
	return strings.TrimRight(Env(t, "TEST_STRIPE_API_BASE"), "/")
}
