package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
)

// Transitions applies the transitions of concurrent callers (a worker's
// task handlers) together on PostgreSQL: the transitions that arrive while
// one batch is on its way go in the next, which reads all their bookings in
// one statement and writes every compare-and-set, history row, domain event
// and outbox row in one more. Each caller gets the answer TransitionBooking
// would have given it alone — the same checks, the same errors, the same
// rows —, and a batch the database refuses as a whole (a deadlock with
// another process, say) is replayed one transition at a time. On SQLite it
// is TransitionBooking.
type Transitions struct {
	db    *DB
	batch *batched[TransitionRequest, TransitionResult]
}

// Batches of transitions: how many may be on their way at once, and how
// many transitions one may carry. One at a time: a transition that comes
// while none is on its way still runs at once, and under load the next
// batch gathers everything that queued meanwhile. Two slots split the same
// load into twice as many, smaller batches: in alternating runs of the
// transitions benchmark, one slot moved 3,263–3,495 expiries/s against
// 2,910–3,167/s with two, with 25 % less PostgreSQL time per transition.
const (
	transitionSlots    = 1
	transitionMaxBatch = 64
)

// TransitionRequest is one transition of a batch: TransitionBooking's
// arguments.
type TransitionRequest struct {
	ID     string
	Event  booking.Event
	Source Source
	// Check, if set, vets the booking as read; its error is returned as is.
	Check func(*Booking) error
}

// TransitionResult is what TransitionBooking would have returned.
type TransitionResult struct {
	Booking *Booking
	Err     error
}

// NewTransitions returns the batched transitions of db.
func NewTransitions(db *DB) *Transitions {
	alone := func(ctx context.Context, r TransitionRequest) TransitionResult {
		b, err := TransitionBooking(ctx, db, r.ID, r.Event, r.Source, r.Check)
		return TransitionResult{Booking: b, Err: err}
	}
	many := func(ctx context.Context, reqs []TransitionRequest) []TransitionResult {
		return TransitionBookings(ctx, db, reqs)
	}
	failed := func(err error) TransitionResult { return TransitionResult{Err: err} }
	return &Transitions{db: db, batch: newBatched(transitionSlots, transitionMaxBatch, alone, many, failed)}
}

// Apply is TransitionBooking, batched with concurrent calls.
func (t *Transitions) Apply(ctx context.Context, id string, ev booking.Event, src Source, check func(*Booking) error) (*Booking, error) {
	if t.db.Engine != Postgres {
		return TransitionBooking(ctx, t.db, id, ev, src, check)
	}
	r := t.batch.do(ctx, TransitionRequest{ID: id, Event: ev, Source: src, Check: check})
	return r.Booking, r.Err
}

// TransitionBookings applies a batch of transitions, each answered as
// TransitionBooking would have answered it alone, in order. On PostgreSQL
// the transitions of distinct bookings share one read and one write (a
// write the database refuses as a whole is replayed one transition at a
// time); a booking that appears again is applied after them, on its own,
// and sees the earlier transition. On SQLite they run one by one.
func TransitionBookings(ctx context.Context, db *DB, reqs []TransitionRequest) []TransitionResult {
	out := make([]TransitionResult, len(reqs))
	var first, again []int
	seen := make(map[string]bool, len(reqs))
	for i, r := range reqs {
		if seen[r.ID] || db.Engine != Postgres {
			again = append(again, i)
			continue
		}
		seen[r.ID] = true
		first = append(first, i)
	}
	if len(first) > 0 {
		transitionDistinct(ctx, db, reqs, first, out)
	}
	for _, i := range again {
		r := reqs[i]
		out[i].Booking, out[i].Err = TransitionBooking(ctx, db, r.ID, r.Event, r.Source, r.Check)
	}
	return out
}

// transitionDistinct applies the transitions reqs[idx] (of distinct
// bookings) into out: one read, then one write of all those the checks and
// the state machine let through.
func transitionDistinct(ctx context.Context, db *DB, reqs []TransitionRequest, idx []int, out []TransitionResult) {
	oneByOne := func(idx []int) {
		for _, i := range idx {
			r := reqs[i]
			out[i].Booking, out[i].Err = TransitionBooking(ctx, db, r.ID, r.Event, r.Source, r.Check)
		}
	}
	// In ID order: concurrent batches (other worker processes) lock their
	// rows in the same order, which keeps them from deadlocking each other.
	idx = slices.Clone(idx)
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(reqs[a].ID, reqs[b].ID) })
	ids := make([]string, len(idx))
	for k, i := range idx {
		ids[k] = reqs[i].ID
	}
	rows, err := bookingsForEvent(ctx, db, ids)
	if err != nil {
		oneByOne(idx)
		return
	}
	var planned []*transition
	var plannedIdx []int
	for _, i := range idx {
		r := reqs[i]
		row, ok := rows[r.ID]
		if !ok {
			out[i].Err = fmt.Errorf("get booking %s: %w", r.ID, portal.WrapError(portal.ENOTFOUND, sql.ErrNoRows, "not found"))
			continue
		}
		tr, err := planTransition(row, r.Event, r.Source, r.Check)
		if err != nil {
			out[i].Booking, out[i].Err = &row.Booking, err
			continue
		}
		planned = append(planned, tr)
		plannedIdx = append(plannedIdx, i)
	}
	if len(planned) == 0 {
		return
	}
	moved, err := transitionsOneStatement(ctx, db, planned)
	if err != nil {
		// Refused as a whole: each on its own, from a fresh read.
		oneByOne(plannedIdx)
		return
	}
	for k, tr := range planned {
		if moved[tr.old.ID] {
			out[plannedIdx[k]].Booking, out[plannedIdx[k]].Err = tr.result(nil)
		} else {
			out[plannedIdx[k]].Booking, out[plannedIdx[k]].Err = tr.result(ErrStale)
		}
	}
}

// bookingsForEvent reads bookings with their listing facts, by ID.
func bookingsForEvent(ctx context.Context, q Queryer, ids []string) (map[string]*bookingForEvent, error) {
	out, err := selectByIDs(ctx, q, `SELECT `+bookingColumnsOf("b")+`, l.title, l.timezone
		FROM bookings b JOIN listings l ON l.id = b.listing_id WHERE b.id IN (?)`, ids, func(b *bookingForEvent) string { return b.ID })
	if err != nil {
		return nil, fmt.Errorf("get bookings: %w", err)
	}
	return out, nil
}
