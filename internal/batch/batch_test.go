package batch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type item struct {
	n        int
	answered bool
}

// TestEveryCallIsRunOnceWithinTheLimits: many concurrent callers, a slow
// run: each item is run exactly once and answered before its Do returns;
// never more than slots runs at once; no batch over maxBatch; and callers
// that arrive while the slots are busy share runs.
func TestEveryCallIsRunOnceWithinTheLimits(t *testing.T) {
	t.Parallel()
	const callers, slots, maxBatch = 200, 2, 16
	var runs atomic.Int32
	var mu sync.Mutex
	running, peak := 0, 0
	seen := map[int]int{}
	var biggest int
	b := New(slots, maxBatch, func(items []*item) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		runs.Add(1)
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		running--
		biggest = max(biggest, len(items))
		for _, it := range items {
			seen[it.n]++
			it.answered = true
		}
	})
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it := &item{n: i}
			b.Do(it)
			if !it.answered {
				t.Errorf("item %d returned unanswered", i)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < callers; i++ {
		if seen[i] != 1 {
			t.Errorf("item %d run %d times", i, seen[i])
		}
	}
	if peak > slots {
		t.Errorf("%d runs at once, limit %d", peak, slots)
	}
	if biggest > maxBatch {
		t.Errorf("a batch of %d, limit %d", biggest, maxBatch)
	}
	if r := runs.Load(); r >= callers {
		t.Errorf("%d runs for %d calls: nothing was batched", r, callers)
	}
	// Idle again: a lone call runs at once, alone.
	before := runs.Load()
	b.Do(&item{n: -1})
	if runs.Load() != before+1 || b.inflightNow() != 0 || b.queued() != 0 {
		t.Errorf("after the load: runs %d→%d, inflight %d, queued %d", before, runs.Load(), b.inflightNow(), b.queued())
	}
}

// TestPanickingRunWakesItsBatch: a run that panics still wakes the other
// callers of its batch and passes its slot on; the panic reaches the
// caller that ran it.
func TestPanickingRunWakesItsBatch(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	b := New(1, 8, func(items []*item) {
		if items[0].n == 0 {
			<-block // hold the only slot while others queue
			return
		}
		panic("boom")
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Do(&item{n: 0}) }()
	for b.inflightNow() == 0 {
		time.Sleep(time.Millisecond)
	}
	var panics atomic.Int32
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if recover() != nil {
					panics.Add(1)
				}
			}()
			b.Do(&item{n: i})
		}()
	}
	for b.queued() < 3 {
		time.Sleep(time.Millisecond)
	}
	close(block)
	wg.Wait() // would hang if the batch's other callers were not woken
	if panics.Load() != 1 {
		t.Fatalf("%d callers saw the panic, want the one that ran the batch", panics.Load())
	}
	if b.inflightNow() != 0 {
		t.Fatal("the slot was not given back")
	}
}

func (b *Batcher[T]) inflightNow() int { b.mu.Lock(); defer b.mu.Unlock(); return b.inflight }
func (b *Batcher[T]) queued() int      { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) }
