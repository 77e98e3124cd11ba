package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/ratelimit"
)

// TestEdgeConfig: the limits parse from their text form with defaults,
// a bad value names its variable, and the configuration logs them as text.
func TestEdgeConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RateLimitEnabled || cfg.RateLimitAnon != (ratelimit.Limit{Count: 60, Period: time.Minute, Burst: 60}) ||
		cfg.RateLimitUser.Count != 300 || cfg.RateLimitLogin.Count != 10 || cfg.RateLimitRegister.Count != 5 ||
		cfg.RateLimitUpload.Count != 30 || cfg.RateLimitBooking.Count != 20 ||
		cfg.LoginFailureLimit != (ratelimit.Threshold{Count: 10, Window: 15 * time.Minute}) ||
		cfg.RateBlockDuration != 15*time.Minute || cfg.RateLimitTimeout != 200*time.Millisecond {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = loadConfig(envOf(map[string]string{"RATE_LIMIT_USER": "1000/m:100", "RATE_LIMIT_UPLOAD": "off",
		"RATE_BLOCK_AFTER_VIOLATIONS": "off"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimitUser != (ratelimit.Limit{Count: 1000, Period: time.Minute, Burst: 100}) || !cfg.RateLimitUpload.Off() || !cfg.RateBlockAfter.Off() {
		t.Fatalf("parsed: %+v %+v %+v", cfg.RateLimitUser, cfg.RateLimitUpload, cfg.RateBlockAfter)
	}
	for env, want := range map[string]string{
		"RATE_LIMIT_ANON":             "sixty",
		"RATE_LIMIT_LOGIN":            "10/fortnight",
		"LOGIN_FAILURE_LIMIT":         "10/15m:2",
		"SECURITY_AUTH_FAILURE_BURST": "0/m",
		"RATE_BLOCK_DURATION":         "0s",
		"LOGIN_ACCOUNT_THROTTLE":      "off",
		"RATE_LIMIT_REDIS_TIMEOUT":    "1ms",
		"RATE_LIMIT_ENABLED":          "maybe",
	} {
		_, err := loadConfig(envOf(map[string]string{env: want}))
		if err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s=%s: err = %v, want it named", env, want, err)
		}
	}
	var buf bytes.Buffer
	cfg, _ = loadConfig(envOf(map[string]string{"JWT_SECRET": "do-not-log-me-do-not-log-me-do-not-log-me"}))
	slog.New(slog.NewTextHandler(&buf, nil)).Info("configuration", "config", cfg)
	if out := buf.String(); !strings.Contains(out, "RATE_LIMIT_ANON=60/m") || strings.Contains(out, "do-not-log-me") ||
		!strings.Contains(out, "JWT_SECRET=<redacted>") {
		t.Errorf("logged configuration: %s", out)
	}
}

// TestEdgeRedisNeverRetries: the edge's Redis client (rate-limit scripts,
// failure counters) sends each command once, with the short timeouts — a
// retry after a timeout could count a request twice — for a plain and a
// Sentinel REDIS_URL alike; the rest of the URL is kept.
func TestEdgeRedisNeverRetries(t *testing.T) {
	for _, uri := range []string{"redis://:pw@127.0.0.1:6390/2", "rediss://127.0.0.1:6390/2",
		"redis-sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380?master=portal"} {
		opt, err := asynq.ParseRedisURI(uri)
		if err != nil {
			t.Fatal(err)
		}
		c, err := edgeRedis(opt, 150*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc, ok := c.(*redis.Client)
		if !ok {
			t.Fatalf("%s: %T", uri, c)
		}
		o := rc.Options()
		// go-redis stores MaxRetries -1 (never retry) as 0; its default is 3.
		if o.MaxRetries != 0 || o.ReadTimeout != 150*time.Millisecond || o.WriteTimeout != 150*time.Millisecond ||
			o.DialTimeout != 150*time.Millisecond || o.DB != map[bool]int{true: 0, false: 2}[strings.HasPrefix(uri, "redis-sentinel:")] {
			t.Fatalf("%s: retries %d, timeouts %s/%s/%s, db %d", uri, o.MaxRetries, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.DB)
		}
		if strings.HasPrefix(uri, "rediss:") != (o.TLSConfig != nil) {
			t.Fatalf("%s: TLS %v", uri, o.TLSConfig != nil)
		}
	}
}
