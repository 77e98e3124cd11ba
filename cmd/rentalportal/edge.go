package main

import (
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/security"
)

// edgeDeps adds the rate limiter, the login guard and the security
// monitor to the API's dependencies. They get a Redis client of their own
// with timeouts as short as RATE_LIMIT_REDIS_TIMEOUT: every request waits
// on it, so a hung Redis must cost milliseconds (then fail open), not the
// seconds the queue client may wait.
func (p *platform) edgeDeps(deps *api.Deps, events security.Observer) error {
	rdb, err := edgeRedis(p.redisOpt, p.cfg.RateLimitTimeout)
	if err != nil {
		return err
	}
	p.closers = append(p.closers, rdb.Close)
	deps.Security = security.New(p.log, events, rdb, security.Config{
		BurstCount: p.cfg.AuthFailureBurst.Count, BurstWindow: p.cfg.AuthFailureBurst.Window,
		Timeout: p.cfg.RateLimitTimeout,
	})
	if !p.cfg.RateLimitEnabled {
		p.log.Warn("rate limiting is disabled (RATE_LIMIT_ENABLED=false)")
		return nil
	}
	l := ratelimit.New(rdb, ratelimit.Config{
		Policies: map[string]ratelimit.Limit{
			ratelimit.PolicyAnon:     p.cfg.RateLimitAnon,
			ratelimit.PolicyUser:     p.cfg.RateLimitUser,
			ratelimit.PolicyLogin:    p.cfg.RateLimitLogin,
			ratelimit.PolicyRegister: p.cfg.RateLimitRegister,
			ratelimit.PolicyUpload:   p.cfg.RateLimitUpload,
			ratelimit.PolicyBooking:  p.cfg.RateLimitBooking,
		},
		BlockFor:    p.cfg.RateBlockDuration,
		BlockAfter:  p.cfg.RateBlockAfter,
		LocalCredit: p.cfg.RateLimitLocalCredit,
	})
	deps.Limiter = l
	deps.LoginGuard = ratelimit.NewLoginGuard(l, ratelimit.LoginConfig{
		Failures: p.cfg.LoginFailureLimit, AccountThrottle: p.cfg.LoginAccountThrottle,
	})
	return nil
}

// edgeRedis makes a client for the same Redis as opt with short timeouts
// and no retries: everything the edge sends counts something (a rate-limit
// script run, a failure counter), and a command retried after a timeout
// may have run already — counted twice. A failed call fails open (or
// closed, for login) instead, which is what the timeout is for.
func edgeRedis(opt asynq.RedisConnOpt, timeout time.Duration) (redis.UniversalClient, error) {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{Network: o.Network, Addr: o.Addr, Username: o.Username,
			Password: o.Password, DB: o.DB, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, MaxRetries: -1}), nil
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, Username: o.Username,
			Password: o.Password, DB: o.DB, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, MaxRetries: -1}), nil
	case asynq.RedisClusterClientOpt:
		// A cluster client must follow MOVED/ASK redirects (MaxRedirects,
		// which also covers its network retries): keep asynq's settings.
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		opt = o
	}
	c, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("REDIS_URL: unsupported connection type")
	}
	return c, nil
}
