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
	// RoundTrips is how many round trips of Allow calls may be in flight
	// at once (default 1). A call that finds one free is sent at once; the
	// calls that arrive while all are busy are sent together in the next.
	// More than one makes the batches smaller and costs Redis more CPU per
	// request (measured with 2 and 4).
	RoundTrips int
	// LocalCredit is how many requests of a subject far from its limit
	// this process may allow without asking Redis, counted in Redis with
	// the subject's next request that asks (see credit.go); 0 asks Redis
	// about every request.
	LocalCredit int
}

// Limiter decides whether a subject may make a request now. Every replica
// sharing the Redis shares the counts.
type Limiter struct {
	rdb   redis.UniversalClient
	gcra  *redis_rate.Limiter // for calls without a block check
	batch *batcher            // for Allow
	// credits are the subjects' local credit; nil when LocalCredit is 0.
	credits *creditBook
	// scripted are the on policies as Allow's script needs them.
	scripted   map[string]*scriptedPolicy
	scriptKeys scriptKeys
	cfg        Config
	now        func() time.Time
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.Prefix == "" {
		cfg.Prefix = "rl:"
	}
	if cfg.BlockFor <= 0 {
		cfg.BlockFor = 15 * time.Minute
	}
	l := &Limiter{rdb: rdb, gcra: redis_rate.NewLimiter(rdb),
		scripted: map[string]*scriptedPolicy{}, cfg: cfg, now: time.Now}
	l.scriptKeys = scriptKeys{block: l.blockKey(""), viol: l.key("viol", "")}
	l.batch = newBatcher(rdb, cfg.RoundTrips, l.violationWindow())
	l.credits = newCreditBook(cfg.LocalCredit)
	for name, lim := range cfg.Policies {
		if !lim.Off() {
			l.scripted[name] = &scriptedPolicy{bucketPrefix: "rate:" + l.bucket(name, ""), args: newBucketArgs(lim)}
		}
	}
	return l
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
// Concurrent calls share round trips to Redis (see batcher): a call that
// finds Redis idle is sent at once; one that has to queue gives up when
// ctx ends. The round trip a call sends is bounded by the client's read
// and write timeouts, not by ctx.
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
	credits := l.credits
	if policy == PolicyLogin || policy == PolicyRegister {
		credits = nil
	}
	var creditKey string
	if credits != nil {
		creditKey = policy + "\x00" + subject
		if rem, reset, ok := credits.take(creditKey, l.now()); ok {
			d.Allowed, d.Limit, d.Remaining, d.ResetAfter = true, lim.Burst, rem, reset
			return d, nil
		}
	}
	// One script answers both questions, block and bucket, in one round
	// trip, shared with the calls of concurrent requests; it also counts
	// what this process allowed the subject on credit since it last asked.
	c := newScriptCall(l.scripted[policy], &l.scriptKeys, subject)
	if credits != nil {
		c.pre = credits.owed(creditKey)
	}
	err := l.batch.do(ctx, c)
	if err == nil {
		err = c.err
	}
	if err != nil {
		if credits != nil {
			credits.giveBack(creditKey, c.pre)
		}
		return d, fmt.Errorf("rate limit %s: %w", policy, err)
	}
	if credits != nil {
		switch {
		case c.blocked != "":
			// A blocked subject's bucket was not touched: what it used on
			// credit is still owed.
			credits.giveBack(creditKey, c.pre)
		case c.allowed:
			credits.grant(creditKey, c.pre, c.remaining, c.resetAfter, lim.Period/time.Duration(lim.Count), l.now())
		default:
			credits.withdraw(creditKey, c.pre)
		}
	}
	if c.blocked != "" {
		b, err := l.parseBlock([]byte(c.blocked))
		if err != nil {
			return d, err
		}
		if b != nil {
			d.blocked(b, lim, l.now())
			return d, nil
		}
		// The block has ended by this host's clock, not yet by Redis's:
		// count the request without the block check.
		res, err := l.gcra.Allow(ctx, l.bucket(policy, subject), toRate(lim))
		if err != nil {
			return d, fmt.Errorf("rate limit %s: %w", policy, err)
		}
		c.allowed, c.remaining, c.retryAfter, c.resetAfter = res.Allowed > 0, res.Remaining, res.RetryAfter, res.ResetAfter
	}
	d.Allowed, d.Limit, d.Remaining, d.ResetAfter = c.allowed, lim.Burst, c.remaining, c.resetAfter
	if d.Allowed {
		return d, nil
	}
	d.RetryAfter = c.retryAfter
	n := int64(c.violations)
	if n == 0 { // counted apart (the block-ended path above)
		var err error
		if n, err = l.incrWindow(ctx, l.key("viol", subject), l.violationWindow()); err != nil {
			return d, nil // the refusal stands; only the count is lost
		}
	}
	d.Violations = int(n)
	// At the count or past it: the refusal that reached it exactly may
	// have been lost on its way back (its caller gave up, a round trip
	// failed after the script ran). The block is created only if the
	// subject has none, so concurrent refusals past the count make one.
	if !l.cfg.BlockAfter.Off() && n >= int64(l.cfg.BlockAfter.Count) {
		nb, created, err := l.block(ctx, subject, "rate_limit_violations", l.cfg.BlockFor, true)
		if err == nil && created {
			d.NewBlock = &nb
			_ = l.rdb.Del(ctx, l.key("viol", subject)).Err()
		}
	}
	return d, nil
}

// violationWindow is the window of the refusal count: BlockAfter's, or a
// minute when it is off (refusals are counted even when they never block:
// the count tells the caller which refusal is the first of a burst, worth
// a log line).
func (l *Limiter) violationWindow() time.Duration {
	if l.cfg.BlockAfter.Off() {
		return time.Minute
	}
	return l.cfg.BlockAfter.Window
}

// BatchStats counts the round trips of Allow so far and the calls they
// carried (their ratio is the mean batch).
type BatchStats struct{ RoundTrips, Calls int64 }

// BatchStats returns how Allow's calls have shared round trips.
func (l *Limiter) BatchStats() BatchStats {
	return BatchStats{RoundTrips: l.batch.trips.Load(), Calls: l.batch.calls.Load()}
}

func (d *Decision) blocked(b *Block, lim Limit, now time.Time) {
	if b == nil {
		return
	}
	left := b.Until.Sub(now)
	d.Block, d.Limit, d.RetryAfter, d.ResetAfter = b, lim.Burst, left, left
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
