package store

import (
	"context"
	"errors"
	"time"

	"github.com/rentalportal/portal/internal/batch"
)

// batched runs one kind of database call (a transition, a new booking) for
// concurrent callers in batches (internal/batch): a batch of one is the
// call alone, in its caller's context; a larger batch runs many, which
// answers each request as alone would have. A call whose caller stopped
// waiting (its context ended while it queued) is answered with that and
// not run, as it would not have run alone. A batch serves several callers,
// so it runs under none of their contexts, but within the latest of their
// deadlines (and batchTimeout).
type batched[Req, Res any] struct {
	b      *batch.Batcher[*batchedCall[Req, Res]]
	alone  func(ctx context.Context, req Req) Res
	many   func(ctx context.Context, reqs []Req) []Res
	failed func(err error) Res
}

// batchTimeout bounds one batch: it serves several callers, so it does not
// end with any one caller's context.
const batchTimeout = 30 * time.Second

// errNotRun answers a call whose batch failed before answering it.
var errNotRun = errors.New("the batch carrying this call failed")

type batchedCall[Req, Res any] struct {
	ctx context.Context
	req Req
	res Res
}

// newBatched returns a batched call: slots batches on their way at once,
// at most maxBatch calls in one. failed makes the answer of a call that
// did not run.
func newBatched[Req, Res any](slots, maxBatch int, alone func(context.Context, Req) Res,
	many func(context.Context, []Req) []Res, failed func(error) Res) *batched[Req, Res] {
	bt := &batched[Req, Res]{alone: alone, many: many, failed: failed}
	bt.b = batch.New(slots, maxBatch, bt.run)
	return bt
}

// do runs req, alone or in a batch, and returns its answer.
func (bt *batched[Req, Res]) do(ctx context.Context, req Req) Res {
	if err := ctx.Err(); err != nil {
		return bt.failed(err)
	}
	c := &batchedCall[Req, Res]{ctx: ctx, req: req, res: bt.failed(errNotRun)}
	bt.b.Do(c)
	return c.res
}

func (bt *batched[Req, Res]) run(calls []*batchedCall[Req, Res]) {
	if len(calls) == 1 {
		c := calls[0]
		c.res = bt.alone(c.ctx, c.req)
		return
	}
	ctxs := make([]context.Context, len(calls))
	for i, c := range calls {
		ctxs[i] = c.ctx
	}
	ctx, cancel, waiting := batchContext(ctxs, batchTimeout)
	defer cancel()
	var live []*batchedCall[Req, Res]
	var reqs []Req
	for i, c := range calls {
		if waiting[i] {
			live = append(live, c)
			reqs = append(reqs, c.req)
		} else {
			c.res = bt.failed(c.ctx.Err())
		}
	}
	if len(live) == 0 {
		return
	}
	for i, r := range bt.many(ctx, reqs) {
		live[i].res = r
	}
}

// batchContext is the context a batch serving callers with contexts ctxs
// runs under: none of theirs (it serves all of them), but within the latest
// of their deadlines and at most limit from now. live says which callers
// are still waiting (their context has not ended); with none, ctx is
// already cancelled.
func batchContext(ctxs []context.Context, limit time.Duration) (ctx context.Context, cancel context.CancelFunc, live []bool) {
	live = make([]bool, len(ctxs))
	deadline := time.Now().Add(limit)
	var latest time.Time
	var first context.Context
	for i, c := range ctxs {
		if c.Err() != nil {
			continue
		}
		live[i] = true
		if first == nil {
			first = c
		}
		if dl, ok := c.Deadline(); ok && dl.After(latest) {
			latest = dl
		} else if !ok {
			latest = deadline
		}
	}
	if first == nil {
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		return ctx, cancel, live
	}
	if latest.Before(deadline) {
		deadline = latest
	}
	ctx, cancel = context.WithDeadline(context.WithoutCancel(first), deadline)
	return ctx, cancel, live
}
