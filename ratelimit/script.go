package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// allowLua is the whole question of n requests of one subject, made at
// once, to Redis: is the subject blocked, and if not, which of them may
// spend a unit of its bucket? The GCRA is redis_rate's (go-redis/redis_rate
// v10, allowN with cost 1), run once per request in a loop, so the n
// answers are exactly those of n calls in a row at one instant: same key,
// same stored theoretical arrival time (seconds since 2017 as a float),
// same arithmetic in the same order. Usage and Reset, which go through
// redis_rate, read and clear the buckets this writes. It differs in asking
// for n requests in one round, in answering integers (microseconds)
// instead of float strings, in answering the block's JSON when there is one,
// in refusing a blocked subject without spending its bucket, and in
// counting the refusals as violations (a count in a fixed window that
// starts with the first) in the same round.
//
// KEYS[1] is the bucket ("rate:" + bucket), KEYS[2] the block key, KEYS[3]
// the violation count; ARGV are burst, rate, period in seconds, n, and the
// violation window in milliseconds.
//
// It answers {-1, block JSON} when blocked, else {a, retry µs, reset µs,
// violations, remaining 1, reset 1, ..., remaining a, reset a}: the first
// a requests are allowed, each with its remaining and reset; the others
// are refused, with the retry and reset after the allowed ones, and the
// violation count after them (0 when none is refused).
const allowLua = `
local block = redis.call("GET", KEYS[2])
if block then
  return {-1, block}
end

local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval
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

local out = {0, -1, 0, 0}
local allowed = 0
for i = 1, n do
  local new_tat = tat + increment
  local allow_at = new_tat - burst_offset
  local diff = now - allow_at
  local remaining = diff / emission_interval
  if remaining < 0 then
    -- Refused, and so are the rest: a refusal changes nothing.
    out[2] = math.ceil(-diff * 1000000)
    break
  end
  tat = new_tat
  allowed = i
  out[3 + 2 * i] = math.floor(remaining)
  out[4 + 2 * i] = math.ceil((new_tat - now) * 1000000)
end
out[1] = allowed
out[3] = math.ceil((tat - now) * 1000000)

local reset_after = tat - now
if allowed > 0 and reset_after > 0 then
  redis.call("SET", KEYS[1], tat, "EX", math.ceil(reset_after))
end
local refused = n - allowed
if refused > 0 then
  local v = redis.call("INCRBY", KEYS[3], refused)
  if v == refused then
    redis.call("PEXPIRE", KEYS[3], ARGV[5])
  end
  out[4] = v
end
return out
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

// scriptKeys are the prefixes of the script's other keys and its window.
type scriptKeys struct {
	block, viol string // the block and violation keys but for the subject
	window      any    // the violation window in milliseconds
}

// bucketArgs are a limit's script arguments but n, formatted once.
type bucketArgs [3]any

func newBucketArgs(l Limit) bucketArgs {
	return bucketArgs{strconv.Itoa(l.Burst), strconv.Itoa(l.Count), strconv.FormatFloat(l.Period.Seconds(), 'f', -1, 64)}
}

// scriptCall is one request's question and, once answered, its answer.
// Calls of one bucket in a round trip share one script run: the first
// holds the command, the others are its same.
type scriptCall struct {
	// args is the whole command: EVALSHA sha 3 KEYS... ARGV..., the keys
	// pointing at keys (no allocation of their own).
	args [11]any
	keys [3]string // bucket, block, violations
	same []*scriptCall
	cmd  *redis.Cmd

	// The answer.
	blocked    string // the block's JSON, when blocked
	allowed    bool
	remaining  int
	retryAfter time.Duration
	resetAfter time.Duration
	violations int // when refused: the subject's count, this one included
	err        error

	// For calls that waited in the batcher's queue: done is closed when the
	// call is answered, or when its caller must send the next batch; state
	// is under the batcher's lock.
	done  chan struct{}
	state int
}

func newScriptCall(p *scriptedPolicy, k *scriptKeys, subject string) *scriptCall {
	c := &scriptCall{}
	all := p.bucketPrefix + subject + k.block + subject + k.viol + subject // one allocation for the three
	i := len(p.bucketPrefix) + len(subject)
	j := i + len(k.block) + len(subject)
	c.keys = [3]string{all[:i], all[i:j], all[j:]}
	c.args = [11]any{"evalsha", allowSHA, "3", &c.keys[0], &c.keys[1], &c.keys[2],
		p.args[0], p.args[1], p.args[2], 1, k.window}
	return c
}

// queue adds the script run of c and its same to a pipeline (or runs it
// on a client), by SHA or, after NOSCRIPT, in full.
func (c *scriptCall) queue(ctx context.Context, p processor, full bool) {
	if full {
		c.args[0], c.args[1] = "eval", allowSrc
	} else {
		c.args[0], c.args[1] = "evalsha", allowSHA
	}
	c.args[9] = 1 + len(c.same)
	c.cmd = redis.NewCmd(ctx, c.args[:]...)
	_ = p.Process(ctx, c.cmd)
}

// read answers c and its same from their command.
func (c *scriptCall) read() {
	v, err := c.cmd.Slice()
	c.cmd = nil
	if err == nil {
		err = c.parse(v)
	}
	if err != nil {
		c.err = err
		for _, o := range c.same {
			o.err = err
		}
	}
}

func (c *scriptCall) parse(v []any) error {
	if len(v) == 2 && v[0] == int64(-1) {
		s, ok := v[1].(string)
		if !ok {
			return errors.New("rate limit script: unexpected answer")
		}
		c.blocked = s
		for _, o := range c.same {
			o.blocked = s
		}
		return nil
	}
	n := func(i int) int64 { x, _ := v[i].(int64); return x }
	for _, x := range v {
		if _, ok := x.(int64); !ok {
			return fmt.Errorf("rate limit script: unexpected answer %T", x)
		}
	}
	if len(v) < 4 || n(0) < 0 || n(0) > int64(1+len(c.same)) || len(v) != 4+2*int(n(0)) {
		return errors.New("rate limit script: unexpected answer")
	}
	allowed := int(n(0))
	// The refusals' violations are the last of the count, in order.
	violation := int(n(3)) - len(c.same) + allowed
	for i := 0; i <= len(c.same); i++ {
		o := c
		if i > 0 {
			o = c.same[i-1]
		}
		if i < allowed {
			o.allowed, o.remaining, o.retryAfter = true, int(n(4+2*i)), -1
			o.resetAfter = time.Duration(n(5+2*i)) * time.Microsecond
			continue
		}
		o.retryAfter, o.resetAfter = time.Duration(n(1))*time.Microsecond, time.Duration(n(2))*time.Microsecond
		o.violations = violation
		violation++
	}
	return nil
}

// processor is a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }
