package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/rentalportal/portal"
)

// Bookings creates the bookings of concurrent callers (the API's requests)
// together on PostgreSQL: the bookings asked for while createSlots batches
// are on their way go in the next, which reads all their listings in one
// statement and writes every booking, history row, domain event and outbox
// row in one more, under one commit. Each caller gets the answer
// CreateBooking would have given it alone — the same checks, the same
// errors, the same rows —; a booking whose listing changed between the read
// and the write, and every booking of a batch the database refuses as a
// whole (a deadlock with another batch, say), is created on its own. A
// booking that finds a slot free is created at once, alone. On SQLite it is
// CreateBooking.
type Bookings struct {
	db    *DB
	batch *batched[NewBooking, CreateResult]
}

// Batches of new bookings: how many may be on their way at once, and how
// many bookings one may carry (each takes 38–44 of the statement's
// parameters, with its two or three outbox messages; PostgreSQL allows
// 65,535). Two, unlike the worker's transitions (transitionSlots), whose
// figure is throughput: a request's latency is the batch it waits behind
// plus its own, and with two on their way a slow batch (autovacuum taking
// a core, a slow fsync) holds up only the half that queued behind it. In
// four alternating pairs of the bookings benchmark, the open-loop p99 at
// 1,500/s was 17.9–27.2 ms with two against 22.5–42.5 ms with one, for
// about 10 % more PostgreSQL time per booking (smaller batches) and the
// same most answered.
const (
	createSlots    = 2
	createMaxBatch = 64
)

// CreateResult is what CreateBooking returns.
type CreateResult struct {
	Booking *Booking
	History []HistoryEntry
	Err     error
}

// NewBookings returns the batched booking creation of db.
func NewBookings(db *DB) *Bookings {
	alone := func(ctx context.Context, nb NewBooking) CreateResult {
		b, h, err := CreateBooking(ctx, db, nb)
		return CreateResult{Booking: b, History: h, Err: err}
	}
	many := func(ctx context.Context, nbs []NewBooking) []CreateResult { return CreateBookings(ctx, db, nbs) }
	failed := func(err error) CreateResult { return CreateResult{Err: err} }
	return &Bookings{db: db, batch: newBatched(createSlots, createMaxBatch, alone, many, failed)}
}

// Create is CreateBooking, batched with concurrent calls.
func (c *Bookings) Create(ctx context.Context, nb NewBooking) (*Booking, []HistoryEntry, error) {
	if c.db.Engine != Postgres {
		return CreateBooking(ctx, c.db, nb)
	}
	r := c.batch.do(ctx, nb)
	return r.Booking, r.History, r.Err
}

// plannedBooking is a booking of a batch, ready to write.
type plannedBooking struct {
	i       int // in the batch
	listing *listingToBook
	b       *Booking
	h       *HistoryEntry
	evArgs  []any
}

// planBatched plans nb, booking i of a batch, from its listing as read.
func planBatched(i int, l *listingToBook, nb NewBooking) (*plannedBooking, error) {
	b, h, ev, err := planNewBooking(l, nb)
	if err != nil {
		return nil, err
	}
	eArgs, err := eventArgs(ev)
	if err != nil {
		return nil, err
	}
	return &plannedBooking{i: i, listing: l, b: b, h: h, evArgs: eArgs}, nil
}

// CreateBookings creates a batch of bookings, each answered as
// CreateBooking would have answered it alone, in order. On PostgreSQL they
// share one read of their listings and one statement that writes all the
// bookings the checks let through (a booking whose listing changed in
// between, and every booking of a statement the database refuses as a
// whole, is then created alone); on SQLite they are created one by one.
func CreateBookings(ctx context.Context, db *DB, nbs []NewBooking) []CreateResult {
	out := make([]CreateResult, len(nbs))
	alone := func(i int) { out[i].Booking, out[i].History, out[i].Err = CreateBooking(ctx, db, nbs[i]) }
	if db.Engine != Postgres || len(nbs) == 1 {
		for i := range nbs {
			alone(i)
		}
		return out
	}
	ids := make([]string, 0, len(nbs))
	for _, nb := range nbs {
		ids = append(ids, nb.ListingID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	listings, err := selectByIDs(ctx, db, `SELECT id, owner_id, price_per_day, currency, active, title, timezone
		FROM listings WHERE id IN (?) AND deleted_at IS NULL`, ids, func(l *listingToBook) string { return l.ID })
	if err != nil {
		for i := range nbs {
			alone(i)
		}
		return out
	}
	var planned []*plannedBooking
	// A booking ID asked for twice in one batch (a client's retry with the
	// same Idempotency-Key while the first is on its way): the first goes
	// in the batch, the others alone after it, to find it there.
	seen := make(map[string]bool, len(nbs))
	var again []int
	for i, nb := range nbs {
		if seen[nb.ID] {
			again = append(again, i)
			continue
		}
		seen[nb.ID] = true
		l, ok := listings[nb.ListingID]
		if !ok {
			out[i].Err = portal.WrapError(portal.ENOTFOUND, sql.ErrNoRows, "listing not found")
			continue
		}
		if out[i].Err = vetListing(l, nb); out[i].Err != nil {
			continue
		}
		p, err := planBatched(i, l, nb)
		if err != nil {
			out[i].Err = err
			continue
		}
		planned = append(planned, p)
	}
	defer func() {
		for _, i := range again {
			alone(i)
		}
	}()
	if len(planned) == 0 {
		return out
	}
	outcome, err := insertBookings(ctx, db, planned)
	if err != nil {
		// Refused as a whole: each on its own, from a fresh read.
		for _, p := range planned {
			alone(p.i)
		}
		return out
	}
	for _, p := range planned {
		switch o := outcome[p.b.ID]; {
		case o.inserted:
			out[p.i] = CreateResult{Booking: p.b, History: []HistoryEntry{*p.h}}
		case o.held:
			// The listing held at the price read, and the booking was not
			// written: its dates overlap a booking that holds them.
			out[p.i].Err = overlapError(errOverlap)
		default:
			// The listing changed since it was read (deleted, deactivated,
			// repriced): read it again, alone.
			alone(p.i)
		}
	}
	return out
}

type insertOutcome struct{ inserted, held bool }

// insertBookings writes the planned bookings in one statement, which first
// locks their listings FOR SHARE and checks each still takes bookings at the
// price and currency read; a booking whose listing does not hold, or whose
// dates overlap one that holds them (in the table or earlier in the batch),
// or whose ID is taken, is skipped with nothing of it written. The outcome
// says, by booking ID, which were written and whose listings held.
func insertBookings(ctx context.Context, q Queryer, planned []*plannedBooking) (map[string]insertOutcome, error) {
	// Inserted in (listing, start date) order, the order in which concurrent
	// batches (of this API process and of others) insert theirs too.
	planned = slices.Clone(planned)
	slices.SortFunc(planned, func(a, b *plannedBooking) int {
		if c := strings.Compare(a.b.ListingID, b.b.ListingID); c != 0 {
			return c
		}
		return a.b.StartDate.Time().Compare(b.b.StartDate.Time())
	})
	var rows, evs, outs [][]any
	for _, p := range planned {
		rows = append(rows, append(append(append([]any(nil), bookingArgs(p.b)...), p.listing.PricePerDay), historyRow(p.h)...))
		evs = append(evs, append([]any{p.b.ID}, p.evArgs...))
		for _, m := range toOutbox(p.b.Outbox) {
			outs = append(outs, append([]any{p.b.ID}, outboxArgs(m, p.b.CreatedAt)...))
		}
	}
	var st batchStatement
	st.WriteString(`WITH v (id, listing_id, renter_id, owner_id, start_date, end_date, status, total_amount, currency,
		expires_at, created_at, updated_at, price_per_day, hid, from_status, cause, source, source_ref, actor_id) AS (VALUES `)
	st.values(`(?::text, ?::text, ?::text, ?::text, ?::date, ?::date, ?::text, ?::bigint, ?::text, ?::timestamptz,
		?::timestamptz, ?::timestamptz, ?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text)`, rows)
	st.WriteString(`),
	l AS (SELECT id, price_per_day, currency FROM listings
		WHERE id IN (SELECT listing_id FROM v) AND deleted_at IS NULL AND active ORDER BY id FOR SHARE),
	ok AS (SELECT v.* FROM v JOIN l ON l.id = v.listing_id AND l.price_per_day = v.price_per_day AND l.currency = v.currency),
	b AS (INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at)
		SELECT id, listing_id, renter_id, owner_id, start_date, end_date, status, total_amount, currency,
			expires_at, created_at, updated_at FROM ok ORDER BY listing_id, start_date
		ON CONFLICT DO NOTHING RETURNING id),
	h AS (INSERT INTO booking_history (id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at)
		SELECT v.hid, v.id, v.from_status, v.status, v.cause, v.source, v.source_ref, v.actor_id, v.created_at
		FROM v JOIN b ON b.id = v.id)`)
	st.eventsAndOutbox("b", evs, outs)
	st.WriteString(`
	SELECT v.id, b.id IS NOT NULL AS inserted, ok.id IS NOT NULL AS held
		FROM v LEFT JOIN b ON b.id = v.id LEFT JOIN ok ON ok.id = v.id`)
	var res []struct {
		ID       string `db:"id"`
		Inserted bool   `db:"inserted"`
		Held     bool   `db:"held"`
	}
	if err := Select(ctx, q, &res, st.String(), st.args...); err != nil {
		return nil, fmt.Errorf("insert bookings: %w", err)
	}
	out := make(map[string]insertOutcome, len(res))
	for _, r := range res {
		out[r.ID] = insertOutcome{inserted: r.Inserted, held: r.Held}
	}
	return out, nil
}

// historyRow is a new booking's first history row as insertBookings' VALUES
// list carries it (its to_status is the booking's status).
func historyRow(h *HistoryEntry) []any {
	return []any{h.ID, h.FromStatus, h.Cause, h.Source, h.SourceRef, h.ActorID}
}
