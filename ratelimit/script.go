package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// allowLua is one request's whole question to Redis: is the subject
// blocked, and if not, may it spend one unit of its bucket? The GCRA is
// redis_rate's (go-redis/redis_rate v10, allowN): same key, same stored
// theoretical arrival time (seconds since 2017 as a float), same
// arithmetic, so Usage and Reset, which go through redis_rate, read and
// clear the buckets this writes. It differs in what it answers — integers
// (microseconds) instead of float strings, the block's JSON when there is
// one — and in refusing a blocked subject without spending its bucket.
//
// KEYS[1] is the bucket ("rate:" + bucket), KEYS[2] the block key;
// ARGV are burst, rate, period in seconds and cost.
//
// It answers {1, remaining, -1, reset µs} when allowed, {0, 0, retry µs,
// reset µs} when refused, and {-1, block JSON} when blocked.
const allowLua = `
local block = redis.call("GET", KEYS[2])
if block then
  return {-1, block}
end

local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst

local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", KEYS[1])
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)

local new_tat = tat + increment
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / emission_interval

if remaining < 0 then
  return {0, 0, math.ceil(-diff * 1000000), math.ceil((tat - now) * 1000000)}
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", KEYS[1], new_tat, "EX", math.ceil(reset_after))
end
return {1, math.floor(remaining), -1, math.ceil(reset_after * 1000000)}
`

var (
	allowScript = redis.NewScript(allowLua)
	// The script's body and hash, boxed once.
	allowSrc, allowSHA any = allowLua, allowScript.Hash()
)

// scriptedPolicy is what Allow's script needs of a policy, made once.
type scriptedPolicy struct {
	bucketPrefix string // the bucket key but for the subject
	args         bucketArgs
}

// bucketArgs are a limit's script arguments, formatted once.
type bucketArgs [4]any

func newBucketArgs(l Limit) bucketArgs {
	return bucketArgs{strconv.Itoa(l.Burst), strconv.Itoa(l.Count),
		strconv.FormatFloat(l.Period.Seconds(), 'f', -1, 64), "1"}
}

// scriptCall is one request's script call and, once run, its answer.
type scriptCall struct {
	// args is the whole command: EVALSHA sha 2 bucket blockkey ARGV...,
	// the keys pointing at keys (the call allocates nothing more for them).
	args             [9]any
	bucket, blockKey string

	cmd *redis.Cmd
	// The answer.
	blocked    string // the block's JSON, when blocked
	allowed    bool
	remaining  int
	retryAfter time.Duration
	resetAfter time.Duration
	err        error

	// For calls that waited in the batcher's queue: done is closed when the
	// call is answered, or when its caller must send lead, the batch it is
	// in; state is under the batcher's lock.
	done  chan struct{}
	lead  []*scriptCall
	state int
}

func newScriptCall(p *scriptedPolicy, blockPrefix, subject string) *scriptCall {
	c := &scriptCall{}
	keys := p.bucketPrefix + subject + blockPrefix + subject // one allocation for both
	c.bucket, c.blockKey = keys[:len(p.bucketPrefix)+len(subject)], keys[len(p.bucketPrefix)+len(subject):]
	c.args = [9]any{"evalsha", allowSHA, "2", &c.bucket, &c.blockKey, p.args[0], p.args[1], p.args[2], p.args[3]}
	return c
}

// queue adds the call's script to a pipeline (or runs it on a client), by
// SHA or, after NOSCRIPT, in full.
func (c *scriptCall) queue(ctx context.Context, p processor, full bool) {
	if full {
		c.args[0], c.args[1] = "eval", allowSrc
	} else {
		c.args[0], c.args[1] = "evalsha", allowSHA
	}
	c.cmd = redis.NewCmd(ctx, c.args[:]...)
	_ = p.Process(ctx, c.cmd)
}

// read takes the call's answer from its command.
func (c *scriptCall) read() {
	v, err := c.cmd.Slice()
	c.cmd = nil
	if err != nil {
		c.err = err
		return
	}
	c.err = c.parse(v)
}

func (c *scriptCall) parse(v []any) error {
	if len(v) == 2 {
		s, ok := v[1].(string)
		if !ok {
			return errors.New("rate limit script: unexpected answer")
		}
		c.blocked = s
		return nil
	}
	if len(v) != 4 {
		return errors.New("rate limit script: unexpected answer")
	}
	var n [4]int64
	for i := range n {
		x, ok := v[i].(int64)
		if !ok {
			return fmt.Errorf("rate limit script: unexpected answer %T", v[i])
		}
		n[i] = x
	}
	c.allowed, c.remaining = n[0] == 1, int(n[1])
	c.retryAfter, c.resetAfter = time.Duration(n[2])*time.Microsecond, time.Duration(n[3])*time.Microsecond
	if n[2] < 0 {
		c.retryAfter = -1
	}
	return nil
}

// processor is a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }
