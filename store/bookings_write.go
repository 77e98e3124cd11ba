package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/tasks"
)

// NewBooking is what CreateBooking needs. The caller picks the ID
// (store.NewID()) so it can build the outbox messages that carry it.
type NewBooking struct {
	ID        string
	ListingID string
	RenterID  string
	Start     booking.Date
	End       booking.Date
	ExpiresAt time.Time
	// Source is recorded in the first history row (nothing → pending_payment).
	Source Source
	// Outbox messages are written in the same transaction (booking:expire),
	// with the notify messages of the booking.created event.
	Outbox []OutboxMessage
}

// CauseCreated is the cause of a booking's first history row.
const CauseCreated = "created"

// CreateBooking writes a pending_payment booking, its first history row, its
// booking.created domain event and its outbox messages (the caller's and
// the event's notify task) atomically; the returned booking's Outbox holds
// them all, for the caller to publish after commit. It reads the listing
// and prices the stay from it; the write holds the listing (SQLite: one
// transaction; PostgreSQL: createBookingOneStatement), so a concurrent
// DeleteListing waits for it, or it for the delete. Errors:
// ENOTFOUND (no such listing, or deleted), EUNPROCESSABLE (inactive listing,
// the renter owns it, the price overflows), EOVERLAP (the dates overlap a
// booking that holds them), ECONFLICT (on PostgreSQL, the listing kept
// changing between the read and the write, three times).
func CreateBooking(ctx context.Context, db *DB, nb NewBooking) (*Booking, []HistoryEntry, error) {
	if db.Engine == Postgres {
		return createBookingOneStatement(ctx, db, nb)
	}
	var b *Booking
	var h *HistoryEntry
	err := db.InTx(ctx, func(tx *sqlx.Tx) error {
		l, err := bookableListing(ctx, tx, nb)
		if err != nil {
			return err
		}
		var ev event.Event
		if b, h, ev, err = planNewBooking(l, nb); err != nil {
			return err
		}
		return writeNewBooking(ctx, tx, b, h, ev)
	})
	if err != nil {
		return nil, nil, err
	}
	return b, []HistoryEntry{*h}, nil
}

// createBookingOneStatement is CreateBooking on PostgreSQL without an
// explicit transaction — two round trips instead of four: the listing is
// read, the booking planned from it, and one statement locks the listing
// FOR SHARE (a concurrent DeleteListing waits for it, or it for the
// delete), checks it still takes bookings at the price read, and only then
// inserts the booking, its history row, event and outbox rows. A listing
// that changed in between is read again.
func createBookingOneStatement(ctx context.Context, db *DB, nb NewBooking) (*Booking, []HistoryEntry, error) {
	for attempt := 0; ; attempt++ {
		l, err := bookableListing(ctx, db, nb)
		if err != nil {
			return nil, nil, err
		}
		b, h, ev, err := planNewBooking(l, nb)
		if err != nil {
			return nil, nil, err
		}
		inserted, err := insertBookingIfListingHolds(ctx, db, l, b, h, ev)
		if err != nil && (!isRetryable(err) || attempt == 2) {
			// A deadlock or serialization failure is tried again, as InTx
			// does; anything else (EOVERLAP, ...) is the answer.
			return nil, nil, err
		}
		if inserted {
			return b, []HistoryEntry{*h}, nil
		}
		if attempt == 2 {
			return nil, nil, portal.Errorf(portal.ECONFLICT, "the listing changed while booking it; try again")
		}
	}
}

// listingToBook is what a booking needs of its listing.
type listingToBook struct {
	ID          string `db:"id"`
	OwnerID     string `db:"owner_id"`
	PricePerDay int64  `db:"price_per_day"`
	Currency    string `db:"currency"`
	Active      bool   `db:"active"`
	Title       string `db:"title"`
	TimeZone    string `db:"timezone"`
}

// bookableListing reads the listing nb books and vets it (vetListing).
// Errors: ENOTFOUND (no such listing, or deleted), EUNPROCESSABLE.
func bookableListing(ctx context.Context, q Queryer, nb NewBooking) (*listingToBook, error) {
	var l listingToBook
	err := Get(ctx, q, &l, `SELECT id, owner_id, price_per_day, currency, active, title, timezone FROM listings
		WHERE id = ? AND deleted_at IS NULL`, nb.ListingID)
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		return nil, portal.WrapError(portal.ENOTFOUND, err, "listing not found")
	}
	if err != nil {
		return nil, fmt.Errorf("read listing %s: %w", nb.ListingID, err)
	}
	if err := vetListing(&l, nb); err != nil {
		return nil, err
	}
	return &l, nil
}

// vetListing says whether nb may book l. Errors: EUNPROCESSABLE (inactive,
// or the renter owns it).
func vetListing(l *listingToBook, nb NewBooking) error {
	switch {
	case l.OwnerID == nb.RenterID:
		return portal.Errorf(portal.EUNPROCESSABLE, "you cannot book your own listing")
	case !l.Active:
		return portal.Errorf(portal.EUNPROCESSABLE, "the listing is not accepting bookings")
	}
	return nil
}

// planNewBooking prices the stay and makes the booking, its first history
// row and its booking.created event; the booking's Outbox holds the
// caller's messages and the event's notify task. Errors: EUNPROCESSABLE
// (the price overflows).
func planNewBooking(l *listingToBook, nb NewBooking) (*Booking, *HistoryEntry, event.Event, error) {
	total, err := booking.Price(l.PricePerDay, nb.Start, nb.End)
	if err != nil {
		return nil, nil, event.Event{}, portal.WrapError(portal.EUNPROCESSABLE, err, "cannot price this stay: %v", err)
	}
	now := Now()
	b := &Booking{ID: nb.ID, ListingID: nb.ListingID, RenterID: nb.RenterID, OwnerID: l.OwnerID,
		StartDate: nb.Start, EndDate: nb.End, Status: booking.PendingPayment, TotalAmount: total,
		Currency: l.Currency, ExpiresAt: nb.ExpiresAt.UTC().Truncate(time.Microsecond), CreatedAt: now, UpdatedAt: now}
	h := &HistoryEntry{ID: NewID(), BookingID: b.ID, ToStatus: string(b.Status), Cause: CauseCreated,
		Source: nb.Source.Kind, SourceRef: nb.Source.Ref, CreatedAt: now}
	if nb.Source.ActorID != "" {
		h.ActorID = &nb.Source.ActorID
	}
	ev := newBookingEvent(b, listing{Title: l.Title, TimeZone: l.TimeZone})
	notes, err := NotifyMessages(ev)
	if err != nil {
		return nil, nil, event.Event{}, err
	}
	b.Outbox = make([]tasks.Message, 0, len(nb.Outbox)+len(notes))
	for _, m := range nb.Outbox {
		b.Outbox = append(b.Outbox, tasks.Message(m))
	}
	b.Outbox = append(b.Outbox, notes...)
	return b, h, ev, nil
}

// CancelBooking cancels a booking in one transaction. A pending_payment
// booking just becomes cancelled. A confirmed (paid) one becomes cancelled,
// gets refund_requested_at, and the refund message is written to the outbox
// in the same transaction; refunding reports whether that happened. The
// booking.cancelled event is recorded too; the returned booking's Outbox
// holds every message written (notify tasks, the refund), to publish. Errors: ENOTFOUND, ECONFLICT (the booking's state
// does not allow cancelling, or it changed concurrently).
func CancelBooking(ctx context.Context, db *DB, id string, src Source, refund OutboxMessage) (b *Booking, refunding bool, err error) {
	err = db.InTx(ctx, func(tx *sqlx.Tx) error {
		refunding = false
		cur, err := GetBooking(ctx, tx, id)
		if err != nil {
			return err
		}
		if _, err := booking.Next(cur.Status, booking.Cancel, ""); err != nil {
			return portal.WrapError(portal.ECONFLICT, err, "a %s booking cannot be cancelled", humanStatus(cur.Status))
		}
		b, err = ApplyBookingEvent(ctx, tx, id, booking.Cancel, src)
		if err != nil {
			return err
		}
		if !cur.Status.Paid() {
			return nil
		}
		now := b.UpdatedAt
		if _, err := Exec(ctx, tx, `UPDATE bookings SET refund_requested_at = ? WHERE id = ?`, now, id); err != nil {
			return fmt.Errorf("booking %s refund request: %w", id, err)
		}
		b.RefundRequestedAt = &now
		refunding = true
		b.Outbox = append(b.Outbox, tasks.Message(refund))
		return AddOutbox(ctx, tx, refund)
	})
	return b, refunding, err
}

// humanStatus writes a status for a sentence ("pending payment").
func humanStatus(s booking.Status) string {
	if s == booking.PendingPayment {
		return "pending payment"
	}
	return string(s)
}

const (
	insertBookingSQL = `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
	total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertHistorySQL = `INSERT INTO booking_history (id, booking_id, from_status, to_status, cause, source, source_ref,
	actor_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// insertBookingIfListingHolds is writeNewBooking on PostgreSQL in one
// statement that first locks the listing FOR SHARE and checks it still
// takes bookings at the price and currency read (l); inserted is false,
// with nothing written, when it does not. Dates that overlap a booking
// that holds them (or an ID already taken: a retry with an Idempotency-Key)
// are EOVERLAP, with nothing written. The insert skips the conflict
// (ON CONFLICT DO NOTHING), as a batch's does, rather than failing on it:
// a failing insert keeps its index entry while it waits for the booking it
// overlaps, and a batch inserting next to both then waits for it in turn,
// a deadlock that PostgreSQL breaks only after deadlock_timeout (1 s).
func insertBookingIfListingHolds(ctx context.Context, q Queryer, l *listingToBook, b *Booking, h *HistoryEntry, ev event.Event) (inserted bool, err error) {
	eArgs, err := eventArgs(ev)
	if err != nil {
		return false, err
	}
	args := append(append(append([]any{b.ListingID, l.PricePerDay, l.Currency}, bookingArgs(b)...), historyArgs(h)...), eArgs...)
	var sb strings.Builder
	sb.WriteString(`WITH l AS (SELECT id FROM listings WHERE id = ? AND deleted_at IS NULL AND active
		AND price_per_day = ?::bigint AND currency = ?::text FOR SHARE),
	b AS (INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at)
		SELECT ?::text, ?::text, ?::text, ?::text, ?::date, ?::date, ?::text, ?::bigint, ?::text,
			?::timestamptz, ?::timestamptz, ?::timestamptz FROM l ON CONFLICT DO NOTHING RETURNING id),
	h AS (INSERT INTO booking_history (id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at)
		SELECT ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::timestamptz FROM b),
	e AS (INSERT INTO domain_events (id, type, subject_type, subject_id, data, created_at)
		SELECT ?::text, ?::text, ?::text, ?::text, ?::text, ?::timestamptz FROM b ON CONFLICT (id) DO NOTHING)`)
	if out := toOutbox(b.Outbox); len(out) > 0 {
		sb.WriteString(`,
	o AS (INSERT INTO outbox (id, task_type, payload, process_at, created_at)
		SELECT v.* FROM b, (VALUES `)
		for i, m := range out {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?::text, ?::text, ?::bytea, ?::timestamptz, ?::timestamptz)")
			args = append(args, outboxArgs(m, b.CreatedAt)...)
		}
		sb.WriteString(`) v (id, task_type, payload, process_at, created_at) ON CONFLICT (id) DO NOTHING)`)
	}
	sb.WriteString(`
	SELECT (SELECT count(*) FROM b) AS inserted, (SELECT count(*) FROM l) AS held`)
	var n struct{ Inserted, Held int }
	if err := Get(ctx, q, &n, sb.String(), args...); err != nil {
		return false, fmt.Errorf("insert booking: %w", err)
	}
	if n.Held == 1 && n.Inserted == 0 {
		return false, overlapError(errOverlap)
	}
	return n.Inserted == 1, nil
}

// bookingArgs are a new booking's columns in insertBookingSQL's order.
func bookingArgs(b *Booking) []any {
	return []any{b.ID, b.ListingID, b.RenterID, b.OwnerID, b.StartDate, b.EndDate, b.Status,
		b.TotalAmount, b.Currency, b.ExpiresAt, b.CreatedAt, b.UpdatedAt}
}

// historyArgs are a history row's columns in insertHistorySQL's order.
func historyArgs(h *HistoryEntry) []any {
	return []any{h.ID, h.BookingID, h.FromStatus, h.ToStatus, h.Cause, h.Source, h.SourceRef, h.ActorID, h.CreatedAt}
}

// writeNewBooking inserts a new booking, its first history row, its
// domain event and its outbox messages (b.Outbox), statement by statement
// in the caller's transaction (SQLite; PostgreSQL writes them in one
// statement, insertBookingIfListingHolds). Constraint errors are the same
// either way.
func writeNewBooking(ctx context.Context, q Queryer, b *Booking, h *HistoryEntry, ev event.Event) error {
	eArgs, err := eventArgs(ev)
	if err != nil {
		return err
	}
	if _, err := Exec(ctx, q, insertBookingSQL, bookingArgs(b)...); err != nil {
		return fmt.Errorf("insert booking: %w", err)
	}
	if _, err := Exec(ctx, q, insertHistorySQL, historyArgs(h)...); err != nil {
		return fmt.Errorf("booking %s history: %w", b.ID, err)
	}
	if _, err := Exec(ctx, q, insertEventSQL, eArgs...); err != nil {
		return fmt.Errorf("booking %s event: %w", b.ID, err)
	}
	return AddOutbox(ctx, q, toOutbox(b.Outbox)...)
}
