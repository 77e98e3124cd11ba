// Package store is the platform's source of truth: SQL through sqlx on
// PostgreSQL (pgx) or, for the embedded default, SQLite (modernc.org/sqlite),
// with embedded versioned migrations, one file per aggregate, transactions
// and the transactional outbox. It knows SQL and nothing of HTTP or Redis.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Engine names a SQL engine.
type Engine string

// The two engines the store runs on.
const (
	Postgres Engine = "postgres"
	SQLite   Engine = "sqlite"
)

//go:embed migrations
var migrations embed.FS

// Options tune a connection pool.
type Options struct {
	// MaxOpenConns bounds the pool (PostgreSQL); 0 means 20.
	MaxOpenConns int
	// SearchPath, if set, is the PostgreSQL schema the connection uses (tests
	// give each test its own).
	SearchPath string
}

// DB is a connection pool to one engine.
type DB struct {
	*sqlx.DB
	Engine Engine
	// Path is the SQLite file, or "" on PostgreSQL.
	Path string
}

// Queryer runs statements inside or outside a transaction: both *sqlx.DB
// and *sqlx.Tx satisfy it.
type Queryer interface {
	sqlx.ExtContext
	Rebind(query string) string
}

// Open connects to PostgreSQL when databaseURL is set, and otherwise opens
// (creating it if needed) the SQLite file sqlitePath.
func Open(ctx context.Context, databaseURL, sqlitePath string, opt Options) (*DB, error) {
	if databaseURL != "" {
		return openPostgres(ctx, databaseURL, opt)
	}
	return openSQLite(ctx, sqlitePath)
}

func openPostgres(ctx context.Context, databaseURL string, opt Options) (*DB, error) {
	dsn := databaseURL
	if opt.SearchPath != "" {
		u, err := url.Parse(databaseURL)
		if err != nil {
			return nil, fmt.Errorf("parse DATABASE_URL: %w", redactURLError(err))
		}
		q := u.Query()
		q.Set("search_path", opt.SearchPath)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	db, err := sqlx.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", redactURLError(err))
	}
	n := opt.MaxOpenConns
	if n <= 0 {
		n = 20
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, Translate(fmt.Errorf("connect to postgres: %w", redactURLError(err)))
	}
	return &DB{DB: db, Engine: Postgres}, nil
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create sqlite directory: %w", err)
	}
	// WAL lets readers run beside the one writer; busy_timeout makes a writer
	// wait for the lock instead of failing; _txlock=immediate takes the write
	// lock at BEGIN, which serializes read-then-write transactions (the
	// booking overlap check) and avoids SQLite's upgrade deadlock.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_time_format=sqlite&_txlock=immediate"
	db, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{DB: db, Engine: SQLite, Path: path}, nil
}

// Migrate applies every embedded migration not yet applied. On PostgreSQL a
// session advisory lock lets many replicas start at once.
func (db *DB) Migrate(ctx context.Context) error {
	p, err := db.migrationProvider()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", db.Engine, err)
	}
	return nil
}

// MigrationVersion returns the newest applied migration version.
func (db *DB) MigrationVersion(ctx context.Context) (int64, error) {
	p, err := db.migrationProvider()
	if err != nil {
		return 0, err
	}
	return p.GetDBVersion(ctx)
}

func (db *DB) migrationProvider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+string(db.Engine))
	if err != nil {
		return nil, err
	}
	var opts []goose.ProviderOption
	dialect := goose.DialectSQLite3
	if db.Engine == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 120))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, db.DB.DB, sub, opts...)
}

// Ping checks the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.DB.PingContext(ctx); err != nil {
		return Translate(err)
	}
	return nil
}

// InTx runs fn in a transaction and commits it if fn returns nil. A
// serialization failure or deadlock (PostgreSQL) or a busy database (SQLite)
// rolls back and runs fn again, a few times, with jitter: fn must only touch
// the database through tx.
func (db *DB) InTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		err = db.inTx(ctx, fn)
		if err == nil || !isRetryable(err) {
			return Translate(err)
		}
		select {
		case <-ctx.Done():
			return Translate(ctx.Err())
		case <-time.After(time.Duration(rand.IntN(10*(i+1))+1) * time.Millisecond):
		}
	}
	return Translate(err)
}

func (db *DB) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Get runs a query that returns one row into dest, rebinding ? placeholders
// for the engine; no row is ENOTFOUND.
func Get(ctx context.Context, q Queryer, dest any, query string, args ...any) error {
	return Translate(sqlx.GetContext(ctx, q, dest, q.Rebind(query), args...))
}

// selectByIDs runs query, whose one IN (?) takes ids, and returns the rows
// keyed by id(row): the rows among ids that exist.
func selectByIDs[T any](ctx context.Context, q Queryer, query string, ids []string, id func(*T) string) (map[string]*T, error) {
	out := make(map[string]*T, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := In(q, query, ids)
	if err != nil {
		return nil, err
	}
	var rows []T
	if err := Select(ctx, q, &rows, query, args...); err != nil {
		return nil, err
	}
	for i := range rows {
		out[id(&rows[i])] = &rows[i]
	}
	return out, nil
}

// Select runs a query into a slice, rebinding ? placeholders for the engine.
func Select(ctx context.Context, q Queryer, dest any, query string, args ...any) error {
	return Translate(sqlx.SelectContext(ctx, q, dest, q.Rebind(query), args...))
}

// Exec runs a statement, rebinding ? placeholders, and returns the rows affected.
func Exec(ctx context.Context, q Queryer, query string, args ...any) (int64, error) {
	res, err := q.ExecContext(ctx, q.Rebind(query), args...)
	if err != nil {
		return 0, Translate(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, Translate(err)
	}
	return n, nil
}

// In expands a query with a slice argument for IN (?) and rebinds it.
func In(q Queryer, query string, args ...any) (string, []any, error) {
	query, args, err := sqlx.In(query, args...)
	if err != nil {
		return "", nil, err
	}
	return q.Rebind(query), args, nil
}

// Now is the store's clock reading: UTC, truncated to microseconds so that
// both engines store and return the same value.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// RedactURL hides the password of a connection URL for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable url>"
	}
	return u.Redacted()
}

// redactURLError strips anything that looks like a connection string from
// driver errors, which sometimes quote it with its password.
func redactURLError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return errors.New("invalid database URL (details redacted)")
	}
	return err
}
