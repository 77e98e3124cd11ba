package imaging

import (
	"context"
	"runtime"

	"golang.org/x/sync/semaphore"
)

// Limiter bounds the memory that image processing holds at once: each task
// acquires its estimate (EstimateBytes) before it downloads and decodes, so
// many small images run side by side while a few large ones take turns, and
// the sum never passes the budget. One image larger than the whole budget
// still runs, alone.
type Limiter struct {
	sem    *semaphore.Weighted
	budget int64
}

// NewLimiter returns a limiter for budget bytes.
func NewLimiter(budget int64) *Limiter {
	return &Limiter{sem: semaphore.NewWeighted(budget), budget: budget}
}

// Budget is the limiter's capacity in bytes.
func (l *Limiter) Budget() int64 { return l.budget }

// Acquire waits until n bytes are free (or ctx ends) and returns the
// function that gives them back.
func (l *Limiter) Acquire(ctx context.Context, n int64) (func(), error) {
	n = max(1, min(n, l.budget))
	if err := l.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { l.sem.Release(n) }, nil
}

// Slots sizes an image worker: as many concurrent tasks as the budget holds
// typical 12 MP camera JPEGs, but no more than two per core (the work is
// CPU-bound; the second overlaps downloads and uploads), and at least one.
// The Limiter keeps the sum within the budget whatever the mix: larger
// images take more of it and so run fewer at once.
func Slots(budget int64, largestEdge int) int {
	typical := EstimateBytes(Info{Format: "jpeg", Width: 4000, Height: 3000}, 6<<20, largestEdge)
	n := int(budget / typical)
	return max(1, min(n, 2*runtime.GOMAXPROCS(0)))
}
