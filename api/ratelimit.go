package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/security"
)

// RateLimiter counts requests per policy and subject and keeps the block
// list (ratelimit.Limiter satisfies it). Its errors are Redis errors.
type RateLimiter interface {
	Allow(ctx context.Context, policy, subject string) (ratelimit.Decision, error)
	Blocks(ctx context.Context) ([]ratelimit.Block, error)
	Unblock(ctx context.Context, subject string) (bool, error)
	Reset(ctx context.Context, subject string) error
	Usage(ctx context.Context, subject string) ([]ratelimit.Usage, error)
	Blocked(ctx context.Context, subject string) (*ratelimit.Block, error)
}

// LoginGuard is the brake on password guessing (ratelimit.LoginGuard
// satisfies it). Check returns a *ratelimit.Denied when the attempt must
// wait, other errors when Redis fails.
type LoginGuard interface {
	Check(ctx context.Context, ip, account string) error
	Failed(ctx context.Context, ip, account string) (ratelimit.LoginFailure, error)
	Succeeded(ctx context.Context, ip, account string) error
}

// The rate-limit headers (X-RateLimit-Limit, -Remaining, -Reset), in the
// canonical form Header.Set would make of them on every request.
const (
	headerLimit     = "X-Ratelimit-Limit"
	headerRemaining = "X-Ratelimit-Remaining"
	headerReset     = "X-Ratelimit-Reset"
)

// limiterWarnEvery bounds how often an unreachable limiter is logged.
const limiterWarnEvery = 30 * time.Second

// unavailableRetry is the Retry-After of logins refused while Redis is down.
const unavailableRetry = 5 * time.Second

// routePolicy is the policy of a route that has a limit of its own ("" for
// the defaults): route templates, so every upload POST counts as one.
func routePolicy(method, route string) string {
	if method != http.MethodPost {
		return ""
	}
	switch {
	case route == "/api/v1/auth/login":
		return ratelimit.PolicyLogin
	case route == "/api/v1/auth/register":
		return ratelimit.PolicyRegister
	case route == "/api/v1/bookings":
		return ratelimit.PolicyBooking
	case strings.HasPrefix(route, "/api/v1/upload/"):
		return ratelimit.PolicyUpload
	}
	return ""
}

// rateLimit counts the request against its policy before auth and the
// handler run (so a 501 or 401 counts like any answer). Login and register count per client
// IP; any other request with a valid access token counts per user (its
// route's policy or the user default); without one, per client IP at the
// anonymous default — so guessing tokens on user routes is limited too.
// The client IP is the peer's address unless the peer is a trusted proxy
// (TRUSTED_PROXIES), which alone may set X-Forwarded-For.
//
// Every counted response carries X-RateLimit-Limit (the bucket size),
// X-RateLimit-Remaining and X-RateLimit-Reset (seconds until the bucket is
// full again); a refusal is 429 rate_limited with Retry-After.
//
// When Redis fails, requests pass (fail open), except login and register,
// which answer 503 with Retry-After (fail closed: a guesser must not get
// an unlimited window out of an outage).
func (s *Server) rateLimit(c *gin.Context) {
	if s.deps.Limiter == nil {
		c.Next()
		return
	}
	policy, subject := s.limitSubject(c)
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RateLimitTimeout)
	d, err := s.deps.Limiter.Allow(ctx, policy, subject)
	cancel()
	if err != nil {
		if s.limiterDown(c, policy, err) {
			c.Next()
		}
		return
	}
	if d.Limit > 0 {
		h := c.Writer.Header()
		h[headerLimit] = []string{strconv.Itoa(d.Limit)}
		h[headerRemaining] = []string{strconv.Itoa(d.Remaining)}
		h[headerReset] = []string{strconv.Itoa(ceilSeconds(d.ResetAfter))}
	}
	if d.Allowed {
		c.Next()
		return
	}
	s.refuse(c, d, subject)
}

// limitSubject picks the policy and subject of a request.
func (s *Server) limitSubject(c *gin.Context) (policy, subject string) {
	policy = routePolicy(c.Request.Method, c.FullPath())
	if policy == ratelimit.PolicyLogin || policy == ratelimit.PolicyRegister {
		return policy, ratelimit.IPSubject(c.ClientIP())
	}
	if uid, ok := s.bearerUser(c); ok {
		if policy == "" {
			policy = ratelimit.PolicyUser
		}
		return policy, ratelimit.UserSubject(uid)
	}
	return ratelimit.PolicyAnon, ratelimit.IPSubject(c.ClientIP())
}

// bearerUser returns the user of a valid access token, if the request has one.
func (s *Server) bearerUser(c *gin.Context) (string, bool) {
	scheme, token, ok := strings.Cut(c.GetHeader("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	p, err := s.tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		return "", false
	}
	c.Set(ctxVerified, p) // requireUser need not verify it again
	return p.UserID, true
}

// ctxVerified holds the Principal of the request's access token once the
// rate limiter has verified it.
const ctxVerified = "verified_principal"

// refuse answers 429 and records the security events: a new block always,
// a rate-limit refusal once per violation window (the rest are counted).
func (s *Server) refuse(c *gin.Context, d ratelimit.Decision, subject string) {
	ctx := c.Request.Context()
	sec := s.deps.Security
	msg := "rate limit exceeded: retry later"
	switch {
	case d.Block != nil:
		msg = "too many requests: temporarily blocked"
		sec.Count(security.EventRateLimited)
	case d.Violations == 1: // the first refusal in its window: later ones are only counted
		sec.Event(ctx, security.EventRateLimited, slog.String("key", subject), slog.String("policy", d.Policy),
			slog.String("route", c.FullPath()), slog.String("client_ip", c.ClientIP()))
	default:
		sec.Count(security.EventRateLimited)
	}
	if d.NewBlock != nil {
		sec.Event(ctx, security.EventBlocked, slog.String("key", subject), slog.String("reason", d.NewBlock.Reason),
			slog.Time("until", d.NewBlock.Until), slog.String("client_ip", c.ClientIP()))
	}
	renderError(c, WithRetryAfter(portal.Errorf(portal.ERATELIMITED, "%s", msg), time.Duration(ceilSeconds(d.RetryAfter))*time.Second))
}

// limiterDown handles a failed limiter call: it warns at most every
// limiterWarnEvery, answers 503 for login and register and returns false,
// or returns true to let the request through.
func (s *Server) limiterDown(c *gin.Context, policy string, err error) bool {
	s.warnLimiterDown(c.Request.Context(), err)
	if policy == ratelimit.PolicyLogin || policy == ratelimit.PolicyRegister {
		renderError(c, WithRetryAfter(portal.WrapError(portal.EUNAVAILABLE, err,
			"sign-in is briefly unavailable: try again shortly"), unavailableRetry))
		return false
	}
	return true
}

func (s *Server) warnLimiterDown(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := s.limiterWarned.Load()
	if now-last < int64(limiterWarnEvery) || !s.limiterWarned.CompareAndSwap(last, now) {
		return
	}
	effect := "requests pass unlimited; login and register answer 503"
	if s.deps.Security == nil {
		s.deps.Log.WarnContext(ctx, "rate limiter unavailable", "err", err, "effect", effect)
		return
	}
	s.deps.Security.Event(ctx, security.EventLimiterDown, slog.String("err", err.Error()), slog.String("effect", effect))
}

// ceilSeconds rounds up to whole seconds (at least 1), so that waiting
// that long is always enough.
func ceilSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Login hooks: the login handler calls checkLogin before it verifies the
// password (and stops with its error), then loginFailed after a wrong
// password or an unknown email (both alike), or loginSucceeded.

// checkLogin returns nil when the attempt may proceed, 429 rate_limited
// with Retry-After when the address is blocked or the account slowed down,
// or 503 unavailable when Redis cannot say (logins fail closed).
func (s *Server) checkLogin(c *gin.Context, email string) error {
	if s.deps.LoginGuard == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RateLimitTimeout)
	defer cancel()
	err := s.deps.LoginGuard.Check(ctx, c.ClientIP(), email)
	if err == nil {
		return nil
	}
	if d, ok := ratelimit.IsDenied(err); ok {
		msg := "too many requests: temporarily blocked"
		switch d.Reason {
		case "login_failures":
			msg = "too many failed sign-ins: try again later"
		case "account_throttled":
			msg = "too many failed sign-ins for this account: try again shortly"
		}
		return WithRetryAfter(portal.Errorf(portal.ERATELIMITED, "%s", msg), time.Duration(ceilSeconds(d.RetryAfter))*time.Second)
	}
	s.warnLimiterDown(c.Request.Context(), err)
	return WithRetryAfter(portal.WrapError(portal.EUNAVAILABLE, err, "sign-in is briefly unavailable: try again shortly"), unavailableRetry)
}

// loginFailed records a failed login; it blocks the address once it has
// failed too often and logs what that led to.
func (s *Server) loginFailed(c *gin.Context, email string) {
	if s.deps.LoginGuard == nil {
		return
	}
	ctx := c.Request.Context()
	tctx, cancel := context.WithTimeout(ctx, s.cfg.RateLimitTimeout)
	defer cancel()
	ip := c.ClientIP()
	f, err := s.deps.LoginGuard.Failed(tctx, ip, email)
	if err != nil {
		s.warnLimiterDown(ctx, err)
		return
	}
	if f.Blocked != nil {
		s.deps.Security.Event(ctx, security.EventBlocked, slog.String("key", f.Blocked.Key),
			slog.String("reason", f.Blocked.Reason), slog.Time("until", f.Blocked.Until),
			slog.Int("failures", f.IPFailures), slog.String("client_ip", ip))
	}
	if f.AccountThrottled {
		s.deps.Security.Event(ctx, security.EventAccountThrottled, slog.String("account", ratelimit.AccountSubject(email)),
			slog.Int("failures", f.AccountFailures), slog.String("client_ip", ip))
	}
}

// loginSucceeded forgets the account's failures.
func (s *Server) loginSucceeded(c *gin.Context, email string) {
	if s.deps.LoginGuard == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RateLimitTimeout)
	defer cancel()
	if err := s.deps.LoginGuard.Succeeded(ctx, c.ClientIP(), email); err != nil {
		s.warnLimiterDown(c.Request.Context(), err)
	}
}
