package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the script calls of one pipeline.
const maxBatch = 256

// batcher sends the script calls of concurrent requests to Redis together:
// a call that finds fewer than max round trips in flight is sent at once,
// on its caller's goroutine (no hand-off, no added wait when idle); calls
// that arrive while max are in flight queue, and when a round trip ends,
// everything queued goes in the next one, sent by the goroutine of one of
// its own callers (woken to send instead of to read an answer: no extra
// goroutine, no extra wake-up). Each call is still its own script run,
// atomic in Redis: batching changes how requests travel, not what they
// count. What it saves is the round trip per request — a write and a read
// system call on each side, and the wake-ups in between — which on a busy
// machine costs more than the script itself.
type batcher struct {
	rdb redis.UniversalClient
	max int

	mu       sync.Mutex
	inflight int
	queue    []*scriptCall

	pipelines, calls atomic.Int64
}

// The states of a queued call (under batcher.mu).
const (
	callQueued    = iota // in the queue
	callBatched          // in a batch another caller sends
	callLeading          // in a batch its own caller must send
	callAbandoned        // its caller stopped waiting before it was batched
)

func newBatcher(rdb redis.UniversalClient, maxInflight int) *batcher {
	if maxInflight <= 0 {
		maxInflight = 1
	}
	return &batcher{rdb: rdb, max: maxInflight}
}

// do runs c and returns when it is answered (c's fields hold the answer)
// or ctx ends first (the error is then ctx's; the call may still run).
func (b *batcher) do(ctx context.Context, c *scriptCall) error {
	b.mu.Lock()
	if b.inflight < b.max {
		b.inflight++
		b.mu.Unlock()
		b.send(ctx, []*scriptCall{c}, c)
		return nil
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		b.mu.Lock()
		state := c.state
		if state == callQueued {
			c.state = callAbandoned
		}
		b.mu.Unlock()
		if state != callLeading {
			return ctx.Err()
		}
		// Chosen to send the next batch: others wait on it.
		<-c.done
	}
	if c.lead != nil {
		// The batch serves other callers too: it must not end with this
		// one's context. The client's timeouts bound it.
		b.send(context.WithoutCancel(ctx), c.lead, c)
	}
	return nil
}

// send runs batch (which holds self, the caller's own call) as one round
// trip, answers the other callers, and passes the round trip slot on: to
// one caller of what queued meanwhile, woken to send it, or back.
func (b *batcher) send(ctx context.Context, batch []*scriptCall, self *scriptCall) {
	b.exec(ctx, batch)
	for _, c := range batch {
		if c != self {
			close(c.done)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) > 0 {
		next := b.queue
		if len(next) > maxBatch {
			next = next[:maxBatch:maxBatch]
			b.queue = b.queue[maxBatch:]
		} else {
			b.queue = nil
		}
		live := next[:0]
		for _, c := range next {
			if c.state == callQueued { // not abandoned
				c.state = callBatched
				live = append(live, c)
			}
		}
		if len(live) > 0 {
			lead := live[0]
			lead.state, lead.lead = callLeading, live
			close(lead.done)
			return
		}
	}
	b.inflight--
}

// exec runs the calls' scripts in one pipeline; scripts Redis does not
// have cached (a fresh or flushed server) are sent again in full.
func (b *batcher) exec(ctx context.Context, batch []*scriptCall) {
	b.pipelines.Add(1)
	b.calls.Add(int64(len(batch)))
	b.pipeline(ctx, batch, false)
	var again []*scriptCall
	for _, c := range batch {
		if isNoScript(c.err) {
			c.err = nil
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		b.pipeline(ctx, again, true)
	}
}

func (b *batcher) pipeline(ctx context.Context, batch []*scriptCall, full bool) {
	if len(batch) == 1 {
		// A pipeline of one would cost its own allocations for nothing.
		c := batch[0]
		c.queue(ctx, b.rdb, full)
		c.read()
		return
	}
	// Each command keeps its own result or error.
	_, _ = b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range batch {
			c.queue(ctx, p, full)
		}
		return nil
	})
	for _, c := range batch {
		c.read()
	}
}
