package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Policy names. A request is counted against exactly one policy's bucket
// for its subject: a route's own policy when it has one, else the default
// for anonymous (per IP) or authenticated (per user) callers.
const (
	PolicyAnon     = "anon"     // anonymous requests, per client IP
	PolicyUser     = "user"     // authenticated requests, per user
	PolicyLogin    = "login"    // POST /auth/login, per client IP
	PolicyRegister = "register" // POST /auth/register, per client IP
	PolicyUpload   = "upload"   // upload POSTs, per user
	PolicyBooking  = "booking"  // POST /bookings, per user
	// policyLoginAccount slows logins to an account with many recent
	// failures (LoginGuard).
	policyLoginAccount = "login-account"
)

// IPSubject is the subject of a client address. IPv4 addresses count
// alone; IPv6 addresses count by their /64, which one client usually holds
// whole (one address each would let it rotate through billions of keys).
func IPSubject(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return "ip:" + ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// UserSubject is the subject of an authenticated user.
func UserSubject(userID string) string { return "user:" + userID }

// AccountSubject is the subject of a login name (an email address),
// hashed so that keys and logs do not carry addresses.
func AccountSubject(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return "account:" + hex.EncodeToString(sum[:10])
}

// Config is the limiter's configuration.
type Config struct {
	// Policies are the limits by policy name; a missing or off policy
	// limits nothing (blocks still apply).
	Policies map[string]Limit
	// BlockFor is how long a block lasts.
	BlockFor time.Duration
	// BlockAfter blocks a subject refused this many times (429s) within
	// its window; off never blocks for violations.
	BlockAfter Threshold
	// Prefix starts every key (default "rl:").
	Prefix string
}

// Limiter decides whether a subject may make a request now. Every replica
// sharing the Redis shares the counts.
type Limiter struct {
	rdb  redis.UniversalClient
	gcra *redis_rate.Limiter // for calls without a block check
	cfg  Config
	now  func() time.Time
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.Prefix == "" {
		cfg.Prefix = "rl:"
	}
	if cfg.BlockFor <= 0 {
		cfg.BlockFor = 15 * time.Minute
	}
	return &Limiter{rdb: rdb, gcra: redis_rate.NewLimiter(rdb), cfg: cfg, now: time.Now}
}

// Policy returns the limit of a policy.
func (l *Limiter) Policy(name string) Limit { return l.cfg.Policies[name] }

// Decision is the answer for one request.
type Decision struct {
	Policy  string
	Allowed bool
	// Limit is the bucket size (the burst): how many requests may be made
	// at once after a quiet period; 0 when the policy is off.
	Limit int
	// Remaining is how many more may be made right now.
	Remaining int
	// RetryAfter is how long to wait before the next request is allowed
	// (when refused).
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// Block is set when the request was refused because the subject is on
	// the block list.
	Block *Block
	// Violations counts the refusals of the subject in the current window
	// (BlockAfter's, or a minute when it is off), this one included; 0 when
	// allowed or blocked, or when the count failed.
	Violations int
	// NewBlock is set when this refusal put the subject on the block list.
	NewBlock *Block
}

// Allow counts one request of subject against policy. A blocked subject is
// refused without counting. A refusal counts as a violation; enough of
// them within BlockAfter's window block the subject for BlockFor.
//
// Errors are Redis errors: the caller decides whether to fail open.
func (l *Limiter) Allow(ctx context.Context, policy, subject string) (Decision, error) {
	d := Decision{Policy: policy}
	lim := l.cfg.Policies[policy]
	if lim.Off() {
		b, err := l.Blocked(ctx, subject)
		if err != nil {
			return d, err
		}
		d.Allowed = b == nil
		d.blocked(b, lim, l.now())
		return d, nil
	}
	// One round trip: the block check rides in the pipeline of the GCRA
	// script. A blocked subject's bucket is spent too, which changes
	// nothing while the block lasts (far longer than a bucket takes to fill).
	probe := &blockProbe{UniversalClient: l.rdb, key: l.blockKey(subject)}
	res, err := redis_rate.NewLimiter(probe).Allow(ctx, l.bucket(policy, subject), toRate(lim))
	if probe.block != nil {
		b, berr := l.readBlock(probe.block)
		if berr != nil {
			return d, berr
		}
		if b != nil {
			d.blocked(b, lim, l.now())
			return d, nil
		}
	}
	if err != nil {
		return d, fmt.Errorf("rate limit %s: %w", policy, err)
	}
	d.Allowed, d.Limit, d.Remaining, d.ResetAfter = res.Allowed > 0, lim.Burst, res.Remaining, res.ResetAfter
	if d.Allowed {
		return d, nil
	}
	d.RetryAfter = res.RetryAfter
	// Refusals are counted even when they never block: the count tells
	// the caller which refusal is the first of a burst (worth a log line).
	window := l.cfg.BlockAfter.Window
	if l.cfg.BlockAfter.Off() {
		window = time.Minute
	}
	n, err := l.incrWindow(ctx, l.key("viol", subject), window)
	if err != nil {
		return d, nil // the refusal stands; only the count is lost
	}
	d.Violations = int(n)
	if !l.cfg.BlockAfter.Off() && n == int64(l.cfg.BlockAfter.Count) {
		nb, err := l.Block(ctx, subject, "rate_limit_violations", l.cfg.BlockFor)
		if err == nil {
			d.NewBlock = &nb
			_ = l.rdb.Del(ctx, l.key("viol", subject)).Err()
		}
	}
	return d, nil
}

func (d *Decision) blocked(b *Block, lim Limit, now time.Time) {
	if b == nil {
		return
	}
	left := b.Until.Sub(now)
	d.Block, d.Limit, d.RetryAfter, d.ResetAfter = b, lim.Burst, left, left
}

// blockProbe is the Redis client as redis_rate sees it, except that each
// script call is sent in a pipeline behind a GET of the subject's block
// key: the limiter asks both questions in one round trip, which is most of
// its cost, while the GCRA stays the library's.
type blockProbe struct {
	redis.UniversalClient
	key   string
	block *redis.StringCmd
}

// EvalSha implements redis_rate's client interface.
func (p *blockProbe) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.withBlock(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.EvalSha(ctx, sha1, keys, args...) })
}

// Eval implements redis_rate's client interface (after NOSCRIPT).
func (p *blockProbe) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.withBlock(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.Eval(ctx, script, keys, args...) })
}

func (p *blockProbe) withBlock(ctx context.Context, f func(redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	var cmd *redis.Cmd
	// Each command keeps its own result or error.
	_, _ = p.UniversalClient.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		p.block = pipe.Get(ctx, p.key)
		cmd = f(pipe)
		return nil
	})
	return cmd
}

// Usage is the state of one of a subject's buckets.
type Usage struct {
	Policy     string
	Limit      Limit
	Remaining  int
	ResetAfter time.Duration
}

// Usage reads every policy bucket of subject without counting a request,
// sorted by policy name.
func (l *Limiter) Usage(ctx context.Context, subject string) ([]Usage, error) {
	names := make([]string, 0, len(l.cfg.Policies))
	for name, lim := range l.cfg.Policies {
		if !lim.Off() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]Usage, 0, len(names))
	for _, name := range names {
		lim := l.cfg.Policies[name]
		res, err := l.gcra.AllowN(ctx, l.bucket(name, subject), toRate(lim), 0) // cost 0: a look
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", name, subject, err)
		}
		out = append(out, Usage{Policy: name, Limit: lim, Remaining: res.Remaining, ResetAfter: max(res.ResetAfter, 0)})
	}
	return out, nil
}

// Reset forgets every count of subject: its buckets of every policy, its
// rate-limit violations and its failed logins. It does not lift a block.
func (l *Limiter) Reset(ctx context.Context, subject string) error {
	keys := []string{l.key("viol", subject), l.key("fail", subject)}
	for name := range l.cfg.Policies {
		keys = append(keys, "rate:"+l.bucket(name, subject))
	}
	keys = append(keys, "rate:"+l.bucket(policyLoginAccount, subject))
	if err := l.rdb.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("reset %s: %w", subject, err)
	}
	return nil
}

// allowLimit counts one event against an explicit limit.
func (l *Limiter) allowLimit(ctx context.Context, policy, subject string, lim Limit) (*redis_rate.Result, error) {
	return l.gcra.Allow(ctx, l.bucket(policy, subject), toRate(lim))
}

// bucket is the GCRA key (redis_rate prefixes it with "rate:").
func (l *Limiter) bucket(policy, subject string) string {
	return l.cfg.Prefix + policy + ":" + subject
}

func (l *Limiter) key(kind, subject string) string { return l.cfg.Prefix + kind + ":" + subject }

// incrWindow counts one event in a fixed window that starts with the
// first event; the key expires with the window.
func (l *Limiter) incrWindow(ctx context.Context, key string, window time.Duration) (int64, error) {
	var incr *redis.IntCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, key, 0, window)
		incr = p.Incr(ctx, key)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return incr.Val(), nil
}

func toRate(l Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: l.Count, Period: l.Period, Burst: l.Burst}
}

// Denied is the error of a refused login (LoginGuard.Check).
type Denied struct {
	// Reason says why: "login_failures" or "rate_limit_violations" (the
	// address is blocked), or "account_throttled".
	Reason string
	// RetryAfter is how long to wait.
	RetryAfter time.Duration
}

// Error implements error.
func (d *Denied) Error() string {
	return fmt.Sprintf("refused (%s): retry after %s", d.Reason, d.RetryAfter.Round(time.Second))
}

// IsDenied reports whether err is a *Denied, and returns it.
func IsDenied(err error) (*Denied, bool) {
	var d *Denied
	ok := errors.As(err, &d)
	return d, ok
}
