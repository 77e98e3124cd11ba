package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the calls of one round trip (one script run: a few µs
// of Redis time per subject).
const maxBatch = 256

// batcher sends the script calls of concurrent requests to Redis together:
// a call that finds fewer than max round trips in flight is sent at once,
// on its caller's goroutine (no hand-off, no added wait when idle); calls
// that arrive while max are in flight queue, and when a round trip ends,
// the first caller queued is woken to send everything queued by then in
// one script run (woken to send instead of to read an answer: no extra
// goroutine, no extra wake-up). Each request is still counted on its own,
// atomically in Redis: the calls of one bucket in a round trip share one
// script run, which answers each of them as if they had come one after
// the other. What batching saves is the round trip per request — a write
// and a read system call on each side, a wake-up of Redis, the goroutine
// switches in between — which on a busy machine costs more than the
// script itself.
type batcher struct {
	rdb    redis.UniversalClient
	max    int
	window any // the script's violation window argument

	mu       sync.Mutex
	inflight int
	queue    []*scriptCall

	trips, calls atomic.Int64
}

// The states of a queued call (under batcher.mu).
const (
	callQueued    = iota // in the queue
	callBatched          // in a batch another caller sends
	callLeading          // its caller must send the next batch
	callAbandoned        // its caller stopped waiting before it was batched
)

func newBatcher(rdb redis.UniversalClient, maxInflight int, window time.Duration) *batcher {
	if maxInflight <= 0 {
		maxInflight = 1
	}
	return &batcher{rdb: rdb, max: maxInflight, window: window.Milliseconds()}
}

// do runs c and returns when it is answered (c's fields hold the answer),
// or when ctx ends before c was sent (the error is then ctx's). A call
// already in a batch on its way is waited for even past ctx: its script
// run counts in Redis (a refusal counts towards a block), so its answer
// must reach the caller; the round trip is bounded by the latest deadline
// of the calls it carries and by the client's timeouts.
func (b *batcher) do(ctx context.Context, c *scriptCall) error {
	b.mu.Lock()
	if b.inflight < b.max {
		b.inflight++
		b.mu.Unlock()
		b.send(ctx, []*scriptCall{c}, c)
		return nil
	}
	c.done = make(chan struct{})
	c.deadline, _ = ctx.Deadline()
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
		if state == callQueued {
			return ctx.Err()
		}
		// In a batch on its way, or chosen to send the next one (others
		// wait on it): done is, or will be, closed.
		<-c.done
	}
	if c.state == callLeading {
		// Take what queued until now, the wake-up included: the longer the
		// previous round trip and this hand-over took, the bigger the batch.
		b.mu.Lock()
		batch := b.take([]*scriptCall{c})
		b.mu.Unlock()
		// The batch serves other callers too: it must not end when this
		// one's request does, but at the latest deadline among its callers
		// (and within the client's timeouts). When every one of them has
		// passed, nobody waits for an answer any more: nothing is sent,
		// so nothing is counted.
		dl, bounded := latestDeadline(batch)
		if bounded && !time.Now().Before(dl) {
			b.answer(batch, c, context.DeadlineExceeded)
			b.handOver()
			return context.DeadlineExceeded
		}
		sctx := context.WithoutCancel(ctx)
		if bounded {
			var cancel context.CancelFunc
			sctx, cancel = context.WithDeadline(sctx, dl)
			defer cancel()
		}
		b.send(sctx, batch, c)
	}
	return nil
}

// latestDeadline is the latest deadline of the calls of batch; bounded is
// false when one of them has none.
func latestDeadline(batch []*scriptCall) (dl time.Time, bounded bool) {
	for _, c := range batch {
		if c.deadline.IsZero() {
			return time.Time{}, false
		}
		if c.deadline.After(dl) {
			dl = c.deadline
		}
	}
	return dl, true
}

// answer wakes the callers of batch but self, with err if not nil (else
// with what exec answered).
func (b *batcher) answer(batch []*scriptCall, self *scriptCall, err error) {
	for _, c := range batch {
		if c != self {
			if err != nil {
				c.err = err
			}
			close(c.done)
		}
	}
}

// take moves up to maxBatch queued calls (those still waited for) from
// the queue to batch.
func (b *batcher) take(batch []*scriptCall) []*scriptCall {
	n := 0
	for _, c := range b.queue {
		if len(batch) == maxBatch {
			break
		}
		n++
		if c.state == callQueued { // not abandoned
			c.state = callBatched
			batch = append(batch, c)
		}
	}
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the array go
	}
	return batch
}

// send runs batch (which holds self, the caller's own call) as one round
// trip, answers the other callers, and passes the round trip slot on.
func (b *batcher) send(ctx context.Context, batch []*scriptCall, self *scriptCall) {
	// Even if the round trip panics, every caller of the batch is answered
	// (with an error) and the slot is passed on: a slot lost would leave
	// every later call queued until its context ends.
	answered := false
	defer func() {
		if !answered {
			b.answer(batch, self, errBatchFailed)
		}
		b.handOver()
	}()
	b.exec(ctx, batch)
	answered = true
	b.answer(batch, self, nil)
}

// errBatchFailed answers the calls of a round trip that panicked.
var errBatchFailed = errors.New("rate limit: the round trip carrying this call failed")

// handOver passes the round trip slot to the first caller still queued,
// woken to send what has queued by the time it runs, or gives it back.
func (b *batcher) handOver() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) > 0 {
		c := b.queue[0]
		b.queue = b.queue[1:]
		if c.state == callQueued { // not abandoned
			c.state = callLeading
			close(c.done)
			return
		}
	}
	b.queue = nil
	b.inflight--
}

// exec answers the calls in one round trip: one script run for all of
// them, which counts the calls of a bucket together; a script Redis does
// not have cached (a fresh or flushed server) is sent again in full.
func (b *batcher) exec(ctx context.Context, batch []*scriptCall) {
	b.trips.Add(1)
	b.calls.Add(int64(len(batch)))
	runs := group(batch)
	err := runScript(ctx, b.rdb, b.window, runs, false)
	if isNoScript(err) {
		err = runScript(ctx, b.rdb, b.window, runs, true)
	}
	if err != nil {
		for _, c := range batch {
			c.err = err
		}
	}
}

// group gathers the calls of each bucket behind the first of them (its
// same) and returns those first ones.
func group(batch []*scriptCall) []*scriptCall {
	if len(batch) == 1 {
		return batch
	}
	runs := make([]*scriptCall, 0, len(batch))
	var index map[string]*scriptCall // for big batches
	if len(batch) > 16 {
		index = make(map[string]*scriptCall, len(batch))
	}
next:
	for _, c := range batch {
		if index != nil {
			if r := index[c.keys[0]]; r != nil {
				r.same = append(r.same, c)
				continue
			}
			index[c.keys[0]] = c
		} else {
			for _, r := range runs {
				if r.keys[0] == c.keys[0] {
					r.same = append(r.same, c)
					continue next
				}
			}
		}
		runs = append(runs, c)
	}
	return runs
}
