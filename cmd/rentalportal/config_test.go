package main

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/worker"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppEnv != "development" || cfg.HTTPAddr != ":8080" || cfg.DataDir != "./data" || cfg.LogFormat != "text" {
		t.Errorf("defaults: %+v", cfg)
	}
	if !cfg.embeddedDB() || !cfg.embeddedRedis() || !cfg.localBlobs() {
		t.Error("with nothing configured every dependency must be embedded")
	}
	if cfg.TaskCheckInterval != 100*time.Millisecond {
		t.Errorf("task check interval on the embedded Redis %v, want 100ms", cfg.TaskCheckInterval)
	}
	if cfg.StripeEventRetention != 90*24*time.Hour {
		t.Errorf("stripe event retention %v, want 90 days", cfg.StripeEventRetention)
	}
	if cfg, err := loadConfig(envOf(map[string]string{"STRIPE_EVENT_RETENTION": "0"})); err != nil || cfg.StripeEventRetention != 0 {
		t.Errorf("STRIPE_EVENT_RETENTION=0 (keep for ever): %v", err)
	}
}

// TestTaskCheckIntervalDefault: an idle worker polls Redis every 10 ms
// unless told otherwise, the embedded Redis every 100 ms; a value set is
// kept on both.
func TestTaskCheckIntervalDefault(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want time.Duration
	}{
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}, 10 * time.Millisecond},
		{map[string]string{}, 100 * time.Millisecond},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "WORKER_TASK_CHECK_INTERVAL": "250ms"}, 250 * time.Millisecond},
		{map[string]string{"WORKER_TASK_CHECK_INTERVAL": "5ms"}, 5 * time.Millisecond},
	}
	for _, c := range cases {
		cfg, err := loadConfig(envOf(c.env))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if cfg.TaskCheckInterval != c.want {
			t.Errorf("%v: task check interval %v, want %v", c.env, cfg.TaskCheckInterval, c.want)
		}
	}
	if _, err := loadConfig(envOf(map[string]string{"WORKER_TASK_CHECK_INTERVAL": "0s"})); err == nil ||
		!strings.Contains(err.Error(), "WORKER_TASK_CHECK_INTERVAL") {
		t.Errorf("0s: %v, want an error naming WORKER_TASK_CHECK_INTERVAL", err)
	}
}

// TestConfigErrorsNameTheVariable checks that every bad value stops start-up
// with a message naming the environment variable at fault.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"APP_ENV": "staging"}, "APP_ENV"},
		{map[string]string{"DB_MAX_OPEN_CONNS": "many"}, "DB_MAX_OPEN_CONNS"},
		{map[string]string{"DB_MAX_OPEN_CONNS": "0"}, "DB_MAX_OPEN_CONNS"},
		{map[string]string{"WORKER_TASK_CHECK_INTERVAL": "fast"}, "WORKER_TASK_CHECK_INTERVAL"},
		{map[string]string{"WORKER_FETCHERS": "0"}, "WORKER_FETCHERS"},
		{map[string]string{"STRIPE_EVENT_RETENTION": "168h"}, "STRIPE_EVENT_RETENTION: must be 0 (keep for ever) or at least 720h"},
		{map[string]string{"STRIPE_EVENT_RETENTION": "-1h"}, "STRIPE_EVENT_RETENTION"},
		{map[string]string{"WORKER_CONCURRENCY": "1"}, "WORKER_FETCHERS: must be at most WORKER_CONCURRENCY"},
		{map[string]string{"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"},
		{map[string]string{"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"HTTP_ADDR": "8080"}, "HTTP_ADDR"},
		{map[string]string{"METRICS_ADDR": "localhost"}, "METRICS_ADDR"},
		{map[string]string{"MIGRATE_ON_START": "perhaps"}, "MIGRATE_ON_START"},
		{map[string]string{"S3_ENDPOINT": "http://minio:9000"}, "S3_BUCKET"},
		{map[string]string{"APP_ENV": "production", "DATABASE_URL": "postgres://db/x", "REDIS_URL": "redis://r:6379"}, "JWT_SECRET"},
		{map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("k", 40), "REDIS_URL": "redis://r:6379"}, "DATABASE_URL"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.env), func(t *testing.T) {
			_, err := loadConfig(envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name %s", err, c.want)
			}
		})
	}
}

func TestConfigAcceptsEveryRedisURIScheme(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"redis://:secret@localhost:6379/2",
		"rediss://user:secret@redis.example.com:6380/0",
		"redis-socket:///var/run/redis.sock?db=1",
		"redis-sentinel://:pw@s1:26379,s2:26379?master=mymaster",
	} {
		if _, err := loadConfig(envOf(map[string]string{"REDIS_URL": u})); err != nil {
			t.Errorf("REDIS_URL=%s refused: %v", u, err)
		}
	}
}

func TestConfigLogValueRedactsSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(map[string]string{
		"DATABASE_URL":          "postgres://app:dbpassword@db:5432/portal",
		"REDIS_URL":             "redis://:redispassword@redis:6379/0",
		"JWT_SECRET":            "jwtsecretjwtsecretjwtsecretjwtsecret",
		"STRIPE_SECRET_KEY":     "sk_test_stripesecret",
		"STRIPE_WEBHOOK_SECRET": "whsec_one,whsec_two",
		"S3_BUCKET":             "b",
		"S3_SECRET_ACCESS_KEY":  "s3secret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", cfg)
	out := b.String()
	for _, secret := range []string{"dbpassword", "redispassword", "jwtsecret", "stripesecret", "whsec_", "s3secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line leaks %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db:5432") || !strings.Contains(out, "S3_BUCKET") {
		t.Errorf("log line lost non-secret values: %s", out)
	}
	if len(cfg.StripeWebhookSecret) != 2 {
		t.Errorf("webhook secrets = %d, want 2 (comma-separated)", len(cfg.StripeWebhookSecret))
	}
}

// TestCronOverridesCoverEverySchedulerEntry: each entry's Env variable is a
// field of Config, so an override cannot be silently ignored.
func TestCronOverridesCoverEverySchedulerEntry(t *testing.T) {
	t.Parallel()
	keys := configKeys()
	for _, e := range worker.Schedule {
		if !keys[e.Env] {
			t.Errorf("cron entry %s: %s is not a Config variable", e.Type, e.Env)
		}
	}
	cfg, err := loadConfig(envOf(map[string]string{"CRON_BOOKINGS_TICK": "*/5 * * * * *"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.cronOverrides()("CRON_BOOKINGS_TICK"); got != "*/5 * * * * *" {
		t.Errorf("override = %q", got)
	}
}
