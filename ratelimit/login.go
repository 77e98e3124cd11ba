package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoginGuard is the brake on password guessing. The login handler calls
// Check before it verifies a password, then Failed or Succeeded.
//
// Failures are counted per client address and per account within a
// window. An address over the limit is blocked for the limiter's BlockFor
// (every anonymous request from it is refused, not only logins). An account
// over the limit is never blocked — that would let anyone lock a victim out
// by failing on purpose — but slowed: attempts on it, from anywhere, pass
// at AccountThrottle's rate until a login to it succeeds or the window
// ends. Distributed guessing gets a few tries a minute; the owner waits
// seconds at worst.
type LoginGuard struct {
	l   *Limiter
	cfg LoginConfig
}

// LoginConfig configures a LoginGuard.
type LoginConfig struct {
	// Failures per address and per account within the window (off: no
	// brake).
	Failures Threshold
	// AccountThrottle is the rate of attempts on an account over Failures
	// (default 1/10s).
	AccountThrottle Limit
}

// NewLoginGuard returns the guard; blocks go on l's block list.
func NewLoginGuard(l *Limiter, cfg LoginConfig) *LoginGuard {
	if cfg.AccountThrottle.Off() {
		cfg.AccountThrottle = Limit{Count: 1, Period: 10 * time.Second, Burst: 1}
	}
	return &LoginGuard{l: l, cfg: cfg}
}

// Check says whether a login attempt for account from ip may proceed. It
// returns a *Denied when the address is blocked or the account is slowed
// down, and other errors when Redis fails (logins then fail closed).
func (g *LoginGuard) Check(ctx context.Context, ip, account string) error {
	b, err := g.l.Blocked(ctx, IPSubject(ip))
	if err != nil {
		return err
	}
	if b != nil {
		return &Denied{Reason: b.Reason, RetryAfter: b.Until.Sub(g.l.now())}
	}
	if g.cfg.Failures.Off() {
		return nil
	}
	acct := AccountSubject(account)
	n, err := g.l.rdb.Get(ctx, g.l.key("fail", acct)).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read login failures: %w", err)
	}
	if n < g.cfg.Failures.Count {
		return nil
	}
	res, err := g.l.allowLimit(ctx, policyLoginAccount, acct, g.cfg.AccountThrottle)
	if err != nil {
		return fmt.Errorf("account throttle: %w", err)
	}
	if res.Allowed == 0 {
		return &Denied{Reason: "account_throttled", RetryAfter: res.RetryAfter}
	}
	return nil
}

// LoginFailure says what a failed login led to.
type LoginFailure struct {
	// IPFailures and AccountFailures are the counts in the window, this
	// one included.
	IPFailures      int
	AccountFailures int
	// Blocked is set when this failure blocked the address.
	Blocked *Block
	// AccountThrottled is true when this failure started slowing the account.
	AccountThrottled bool
}

// Failed records a failed login (wrong password, or no such account: count
// both the same so the answer reveals nothing).
func (g *LoginGuard) Failed(ctx context.Context, ip, account string) (LoginFailure, error) {
	var out LoginFailure
	if g.cfg.Failures.Off() {
		return out, nil
	}
	ipSub, acct := IPSubject(ip), AccountSubject(account)
	w := g.cfg.Failures.Window
	ipN, err := g.l.incrWindow(ctx, g.l.key("fail", ipSub), w)
	if err != nil {
		return out, fmt.Errorf("count login failure: %w", err)
	}
	acctN, err := g.l.incrWindow(ctx, g.l.key("fail", acct), w)
	if err != nil {
		return out, fmt.Errorf("count login failure: %w", err)
	}
	out.IPFailures, out.AccountFailures = int(ipN), int(acctN)
	out.AccountThrottled = acctN == int64(g.cfg.Failures.Count)
	if ipN >= int64(g.cfg.Failures.Count) {
		b, err := g.l.Block(ctx, ipSub, "login_failures", g.l.cfg.BlockFor)
		if err != nil {
			return out, err
		}
		out.Blocked = &b
		// The block is the sentence: after it the address starts afresh.
		_ = g.l.rdb.Del(ctx, g.l.key("fail", ipSub)).Err()
	}
	return out, nil
}

// Succeeded records a successful login: the account's failures and its
// slow-down are forgotten. The address's failures are not (a guesser with
// an account of its own could otherwise wipe them between guesses).
func (g *LoginGuard) Succeeded(ctx context.Context, ip, account string) error {
	acct := AccountSubject(account)
	if err := g.l.rdb.Del(ctx, g.l.key("fail", acct), "rate:"+g.l.bucket(policyLoginAccount, acct)).Err(); err != nil {
		return fmt.Errorf("forget login failures: %w", err)
	}
	return nil
}
