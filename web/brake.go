package web

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"
)

// brake limits password guessing per client address: each failed login
// (form or Basic auth) counts in a Redis window shared by every replica;
// once a window holds max failures, that address gets 429 until the window
// ends, right or wrong password. IPv6 clients count per /64, since one
// host usually owns the whole prefix.
type brake struct {
	rdb    redis.UniversalClient
	max    int
	window time.Duration
}

const brakePrefix = "rentalportal:ops:login-failures:"

// failScript counts a failure and starts the window on the first one.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n`)

func brakeKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err == nil && addr.Is6() && !addr.Is4In6() {
		p, _ := addr.Prefix(64)
		return brakePrefix + p.String()
	}
	if err == nil {
		return brakePrefix + addr.Unmap().String()
	}
	return brakePrefix + ip
}

// blocked reports whether the address is over its budget, and for how
// long. An unreachable Redis is an error: the caller refuses the login
// (fail closed) rather than allow unlimited guessing.
func (b *brake) blocked(ctx context.Context, ip string) (time.Duration, error) {
	key := brakeKey(ip)
	pipe := b.rdb.Pipeline()
	get := pipe.Get(ctx, key)
	ttl := pipe.PTTL(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("login brake: %w", err)
	}
	n, _ := get.Int()
	if n < b.max {
		return 0, nil
	}
	d := ttl.Val()
	if d <= 0 {
		d = time.Second
	}
	return d, nil
}

// fail counts one failed attempt from the address.
func (b *brake) fail(ctx context.Context, ip string) error {
	if err := failScript.Run(ctx, b.rdb, []string{brakeKey(ip)}, b.window.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("login brake: %w", err)
	}
	return nil
}
