package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// allowLua is the whole question of a round trip's requests to Redis, for
// each subject among them: is it blocked, and if not, which of its n
// requests may spend a unit of its bucket? The GCRA is redis_rate's
// (go-redis/redis_rate v10, allowN with cost 1), run once per request in a
// loop, so the n answers are exactly those of n calls in a row at one
// instant: same key, same stored theoretical arrival time (seconds since
// 2017 as a float), same arithmetic in the same order. Usage and Reset,
// which go through redis_rate, read and clear the buckets this writes. It
// differs in asking for many requests and subjects in one run, in
// answering integers (microseconds) instead of float strings, in answering
// the block's JSON when there is one, in refusing a blocked subject
// without spending its bucket, and in counting the refusals as violations
// (a count in a fixed window that starts with the first) in the same run.
//
// KEYS are, per subject, its bucket ("rate:" + bucket), its block key and
// its violation count. ARGV[1] is the violation window in milliseconds,
// then, per subject, its limit's burst, rate and period in seconds, n, and
// the requests already allowed on local credit (credit.go), which are
// spent before the n are judged.
//
// It answers, per subject in turn, {-1, block JSON} when blocked, else
// {a, retry µs, reset µs, violations, remaining 1, reset 1, ...,
// remaining a, reset a}: the first a requests are allowed, each with its
// remaining and reset; the others are refused, with the retry and reset
// after the allowed ones, and the violation count after them (0 when none
// is refused).
const allowLua = `
-- TIME, then writes: Redis before 5 needs effects replication asked for
-- (asynq supports Redis 4); a no-op since.
redis.replicate_commands()

local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local window = ARGV[1]

local out = {}
for s = 0, #KEYS / 3 - 1 do
  local bucket, block_key, violations = KEYS[3 * s + 1], KEYS[3 * s + 2], KEYS[3 * s + 3]
  local block = redis.call("GET", block_key)
  if block then
    out[#out + 1] = -1
    out[#out + 1] = block
  else
    local burst = tonumber(ARGV[5 * s + 2])
    local rate = tonumber(ARGV[5 * s + 3])
    local period = tonumber(ARGV[5 * s + 4])
    local n = tonumber(ARGV[5 * s + 5])
    local pre = tonumber(ARGV[5 * s + 6])

    local emission_interval = period / rate
    local increment = emission_interval
    local burst_offset = emission_interval * burst

    local tat = redis.call("GET", bucket)
    if not tat then
      tat = now
    else
      tat = tonumber(tat)
    end
    tat = math.max(tat, now)
    -- Requests already allowed on local credit: spent, never judged.
    tat = tat + pre * increment

    local head = #out
    out[head + 1], out[head + 2], out[head + 3], out[head + 4] = 0, -1, 0, 0
    local allowed = 0
    for i = 1, n do
      local new_tat = tat + increment
      local allow_at = new_tat - burst_offset
      local diff = now - allow_at
      local remaining = diff / emission_interval
      if remaining < 0 then
        -- Refused, and so are the rest: a refusal changes nothing.
        out[head + 2] = math.ceil(-diff * 1000000)
        break
      end
      tat = new_tat
      allowed = i
      out[head + 3 + 2 * i] = math.floor(remaining)
      out[head + 4 + 2 * i] = math.ceil((new_tat - now) * 1000000)
    end
    out[head + 1] = allowed
    out[head + 3] = math.ceil((tat - now) * 1000000)

    local reset_after = tat - now
    if (allowed > 0 or pre > 0) and reset_after > 0 then
      redis.call("SET", bucket, tat, "EX", math.ceil(reset_after))
    end
    local refused = n - allowed
    if refused > 0 then
      local v = redis.call("INCRBY", violations, refused)
      if v == refused then
        redis.call("PEXPIRE", violations, window)
      end
      out[head + 4] = v
    end
  end
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
	bucketPrefix string     // the bucket key but for the subject
	args         bucketArgs // burst, rate, period
}

// scriptKeys are the prefixes of the script's keys but the bucket.
type scriptKeys struct {
	block, viol string // the block and violation keys but for the subject
}

// bucketArgs are a limit's script arguments but n, formatted once.
type bucketArgs [3]any

func newBucketArgs(l Limit) bucketArgs {
	return bucketArgs{strconv.Itoa(l.Burst), strconv.Itoa(l.Count), strconv.FormatFloat(l.Period.Seconds(), 'f', -1, 64)}
}

// scriptCall is one request's question and, once answered, its answer.
// The calls of one bucket in a round trip are asked together: the first
// holds the others in same.
type scriptCall struct {
	keys   [3]string // bucket, block, violations
	policy *scriptedPolicy
	same   []*scriptCall
	// pre counts requests allowed on local credit since the subject last
	// asked: the script spends them first, without judging them.
	pre int

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
	// deadline is its caller's (zero: none), for the batch that carries it.
	deadline time.Time
}

func newScriptCall(p *scriptedPolicy, k *scriptKeys, subject string) *scriptCall {
	c := &scriptCall{policy: p}
	all := p.bucketPrefix + subject + k.block + subject + k.viol + subject // one allocation for the three
	i := len(p.bucketPrefix) + len(subject)
	j := i + len(k.block) + len(subject)
	c.keys = [3]string{all[:i], all[i:j], all[j:]}
	return c
}

// runScript asks Redis about runs (each with its same) in one script run,
// by SHA or, after NOSCRIPT, in full, and answers them. The keys go as
// pointers into the calls: no allocation of their own.
func runScript(ctx context.Context, rdb processor, window any, runs []*scriptCall, full bool) error {
	args := make([]any, 0, 4+8*len(runs))
	if full {
		args = append(args, "eval", allowSrc)
	} else {
		args = append(args, "evalsha", allowSHA)
	}
	args = append(args, 3*len(runs))
	for _, c := range runs {
		args = append(args, &c.keys[0], &c.keys[1], &c.keys[2])
	}
	args = append(args, window)
	for _, c := range runs {
		pre := c.pre
		for _, o := range c.same {
			pre += o.pre
		}
		args = append(args, c.policy.args[0], c.policy.args[1], c.policy.args[2], 1+len(c.same), pre)
	}
	cmd := redis.NewCmd(ctx, args...)
	_ = rdb.Process(ctx, cmd)
	v, err := cmd.Slice()
	if err != nil {
		return err
	}
	for _, c := range runs {
		if v, err = c.answer(v); err != nil {
			return err
		}
	}
	if len(v) != 0 {
		return errUnexpected
	}
	return nil
}

var errUnexpected = errors.New("rate limit script: unexpected answer")

// answer takes the answer of c and its same from the head of v and
// returns the rest.
func (c *scriptCall) answer(v []any) ([]any, error) {
	n := func(i int) int64 { x, _ := v[i].(int64); return x }
	if len(v) >= 2 && n(0) == -1 {
		s, ok := v[1].(string)
		if !ok {
			return nil, errUnexpected
		}
		c.blocked = s
		for _, o := range c.same {
			o.blocked = s
		}
		return v[2:], nil
	}
	if len(v) < 4 || n(0) < 0 || n(0) > int64(1+len(c.same)) || len(v) < 4+2*int(n(0)) {
		return nil, errUnexpected
	}
	allowed := int(n(0))
	for _, x := range v[:4+2*allowed] {
		if _, ok := x.(int64); !ok {
			return nil, fmt.Errorf("rate limit script: unexpected answer %T", x)
		}
	}
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
	return v[4+2*allowed:], nil
}

// processor is a client.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }
