// Package batch runs the calls of concurrent goroutines together: a call
// that finds a run slot free runs at once, alone, on its caller's goroutine
// (no hand-off, no added wait when idle); calls that arrive while every
// slot is busy queue, and when a run ends, the first caller queued is woken
// to run everything queued by then in one batch. Under load the batches
// grow by themselves — the longer a run takes, the more calls it finds
// waiting — and each batch costs one round trip instead of one per call.
//
// It is the shape of the rate limiter's batching (ratelimit.batcher),
// without its per-call deadlines: a call, once queued, is always run.
package batch

import "sync"

// Batcher runs batches of T through its run function.
type Batcher[T any] struct {
	run      func([]T)
	slots    int
	maxBatch int

	mu       sync.Mutex
	inflight int
	queue    []*call[T]
}

type call[T any] struct {
	item T
	done chan struct{}
	lead bool // its caller must run the next batch
}

// New returns a Batcher that lets slots runs be in flight at once and puts
// at most maxBatch calls in one run. run answers every item it is given,
// through the items themselves. If it panics, the callers of its batch are
// woken all the same (their items hold what run had set by then: give them
// a failure to start with) and the panic goes on in the goroutine that ran
// the batch.
func New[T any](slots, maxBatch int, run func([]T)) *Batcher[T] {
	return &Batcher[T]{run: run, slots: max(slots, 1), maxBatch: max(maxBatch, 1)}
}

// Do runs item, alone or in a batch with others, and returns when its run
// has ended.
func (b *Batcher[T]) Do(item T) {
	b.mu.Lock()
	if b.inflight < b.slots {
		b.inflight++
		b.mu.Unlock()
		b.runAndHandOver([]T{item}, nil)
		return
	}
	c := &call[T]{item: item, done: make(chan struct{})}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	<-c.done
	if !c.lead {
		return
	}
	// Take what queued until now, this call first.
	b.mu.Lock()
	n := min(len(b.queue), b.maxBatch-1)
	others := b.queue[:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the array go
	}
	b.mu.Unlock()
	items := make([]T, 0, n+1)
	items = append(items, item)
	for _, o := range others {
		items = append(items, o.item)
	}
	b.runAndHandOver(items, others)
}

// runAndHandOver runs items, wakes the callers of others (the items but
// the caller's own), and passes the run slot to the first caller queued,
// or gives it back.
func (b *Batcher[T]) runAndHandOver(items []T, others []*call[T]) {
	defer func() {
		for _, o := range others {
			close(o.done)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.queue) > 0 {
			c := b.queue[0]
			b.queue = b.queue[1:]
			c.lead = true
			close(c.done)
			return
		}
		b.inflight--
	}()
	b.run(items)
}
