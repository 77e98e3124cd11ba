package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/tasks"
)

// Booking is a booking row.
type Booking struct {
	ID                string         `db:"id" json:"id"`
	ListingID         string         `db:"listing_id" json:"listing_id"`
	RenterID          string         `db:"renter_id" json:"renter_id"`
	OwnerID           string         `db:"owner_id" json:"owner_id"`
	StartDate         booking.Date   `db:"start_date" json:"start_date"`
	EndDate           booking.Date   `db:"end_date" json:"end_date"`
	Status            booking.Status `db:"status" json:"status"`
	BeforeDispute     *string        `db:"status_before_dispute" json:"-"`
	TotalAmount       int64          `db:"total_amount" json:"total_amount"`
	Currency          string         `db:"currency" json:"currency"`
	ExpiresAt         time.Time      `db:"expires_at" json:"expires_at"`
	RefundRequestedAt *time.Time     `db:"refund_requested_at" json:"-"`
	CreatedAt         time.Time      `db:"created_at" json:"created_at"`
	UpdatedAt         time.Time      `db:"updated_at" json:"updated_at"`
	// Outbox holds the messages the call that returned the booking wrote to
	// the outbox in its transaction (its domain event's notify tasks, ...):
	// the caller publishes them after commit, or leaves them to the relay.
	Outbox []tasks.Message `db:"-" json:"-"`
}

const bookingColumns = `id, listing_id, renter_id, owner_id, start_date, end_date, status, status_before_dispute,
	total_amount, currency, expires_at, refund_requested_at, created_at, updated_at`

// bookingColumnsOf is bookingColumns qualified by a table alias.
func bookingColumnsOf(alias string) string {
	cols := strings.Split(bookingColumns, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// GetBooking returns a booking; ENOTFOUND if absent.
func GetBooking(ctx context.Context, q Queryer, id string) (*Booking, error) {
	var b Booking
	if err := Get(ctx, q, &b, `SELECT `+bookingColumns+` FROM bookings WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get booking %s: %w", id, err)
	}
	return &b, nil
}

// Source says who caused a transition, for the booking's history.
type Source struct {
	// Kind is api, task, stripe, cron or reconcile.
	Kind string
	// Ref is the Stripe event ID, task ID or request ID behind the change.
	Ref string
	// ActorID is the user who acted, if any.
	ActorID string
}

// Sources of transitions.
const (
	SourceAPI       = "api"
	SourceTask      = "task"
	SourceStripe    = "stripe"
	SourceCron      = "cron"
	SourceReconcile = "reconcile"
)

// HistoryEntry is one applied transition.
type HistoryEntry struct {
	ID         string    `db:"id" json:"id"`
	BookingID  string    `db:"booking_id" json:"-"`
	FromStatus string    `db:"from_status" json:"from"`
	ToStatus   string    `db:"to_status" json:"to"`
	Cause      string    `db:"cause" json:"cause"`
	Source     string    `db:"source" json:"source"`
	SourceRef  string    `db:"source_ref" json:"source_ref,omitempty"`
	ActorID    *string   `db:"actor_id" json:"actor_id,omitempty"`
	CreatedAt  time.Time `db:"created_at" json:"at"`
}

// ErrStale is returned by ApplyBookingEvent when the booking changed between
// reading it and writing: the caller's view is stale (ECONFLICT).
var ErrStale = errors.New("booking changed concurrently")

// ApplyBookingEvent moves a booking through the state machine inside the
// caller's transaction: it reads the booking, asks booking.Next, writes the
// new status with a compare-and-set on the status it read, the history row,
// and — for transitions that concern people — the domain event and its
// notify outbox rows (returned in the booking's Outbox for the caller to
// publish after commit). Errors: ENOTFOUND (no such booking), ECONFLICT
// wrapping *booking.IllegalTransition (the event cannot happen in the
// current state) or ErrStale (a concurrent change), EOVERLAP (moving back to
// a date-holding state onto dates taken meanwhile).
func ApplyBookingEvent(ctx context.Context, q Queryer, id string, ev booking.Event, src Source) (*Booking, error) {
	return applyBookingEvent(ctx, q, id, ev, src, nil)
}

// TransitionBooking is ApplyBookingEvent for a transition that is the whole
// unit of work (a task's): on PostgreSQL it needs no explicit transaction —
// one read, then one statement that does the compare-and-set and writes the
// history, event and outbox rows — two round trips instead of seven; on
// SQLite it runs in a transaction. check, if set, vets the booking as read
// before anything is written; its error is returned as is.
func TransitionBooking(ctx context.Context, db *DB, id string, ev booking.Event, src Source, check func(*Booking) error) (*Booking, error) {
	if db.Engine == Postgres {
		return applyBookingEvent(ctx, db, id, ev, src, check)
	}
	var b *Booking
	err := db.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		b, err = applyBookingEvent(ctx, tx, id, ev, src, check)
		return err
	})
	return b, err
}

// bookingForEvent is a booking with the listing facts its event carries.
type bookingForEvent struct {
	Booking
	Title    string `db:"title"`
	TimeZone string `db:"timezone"`
}

func applyBookingEvent(ctx context.Context, q Queryer, id string, ev booking.Event, src Source, check func(*Booking) error) (*Booking, error) {
	var row bookingForEvent
	if err := Get(ctx, q, &row, `SELECT `+bookingColumnsOf("b")+`, l.title, l.timezone
		FROM bookings b JOIN listings l ON l.id = b.listing_id WHERE b.id = ?`, id); err != nil {
		return nil, fmt.Errorf("get booking %s: %w", id, err)
	}
	t, err := planTransition(&row, ev, src, check)
	if err != nil {
		return &row.Booking, err
	}
	if isPostgres(q) {
		err = transitionOneStatement(ctx, q, t)
	} else {
		err = transitionStatements(ctx, q, t)
	}
	return t.result(err)
}

// transition is one booking's transition as planned from the booking read:
// what to write, and the booking as it will be.
type transition struct {
	old    *Booking
	new    Booking // its Outbox holds the messages written with it
	ev     booking.Event
	hist   []any // the history row's columns
	evArgs []any // the domain event's columns; nil when it concerns no one
}

// planTransition vets a booking as read (check, then the state machine)
// and plans its transition; the error is check's as is, or ECONFLICT
// wrapping *booking.IllegalTransition.
func planTransition(row *bookingForEvent, ev booking.Event, src Source, check func(*Booking) error) (*transition, error) {
	b := &row.Booking
	if check != nil {
		if err := callCheck(check, b); err != nil {
			return nil, err
		}
	}
	before := booking.Status("")
	if b.BeforeDispute != nil {
		before = booking.Status(*b.BeforeDispute)
	}
	to, err := booking.Next(b.Status, ev, before)
	if err != nil {
		return nil, portal.WrapError(portal.ECONFLICT, err, "%s", err.Error())
	}
	now := Now()
	var beforeDispute *string
	if to == booking.Disputed {
		s := string(b.Status)
		beforeDispute = &s
	}
	t := &transition{old: b, new: *b, ev: ev}
	t.new.Status, t.new.BeforeDispute, t.new.UpdatedAt = to, beforeDispute, now
	de, notify := bookingEvent(&t.new, listing{Title: row.Title, TimeZone: row.TimeZone}, b.Status, ev, src)
	if notify {
		if t.new.Outbox, err = NotifyMessages(de); err != nil {
			return nil, err
		}
		if t.evArgs, err = eventArgs(de); err != nil {
			return nil, err
		}
	}
	var actor *string
	if src.ActorID != "" {
		actor = &src.ActorID
	}
	t.hist = []any{NewID(), b.ID, string(b.Status), string(to), string(ev), src.Kind, src.Ref, actor, now}
	return t, nil
}

// callCheck runs a caller's check; a panic in it is its caller's error, not
// the end of a batch that carries other callers' transitions.
func callCheck(check func(*Booking) error, b *Booking) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("booking %s: check panicked: %v", b.ID, r)
		}
	}()
	return check(b)
}

// result is what applyBookingEvent returns once t was written with err.
func (t *transition) result(err error) (*Booking, error) {
	if err == nil {
		return &t.new, nil
	}
	if errors.Is(err, ErrStale) {
		return t.old, portal.WrapError(portal.ECONFLICT, ErrStale, "booking %s changed concurrently", t.old.ID)
	}
	return t.old, fmt.Errorf("booking %s %s: %w", t.old.ID, t.ev, err)
}

const transitionUpdateSQL = `UPDATE bookings SET status = ?, status_before_dispute = ?, updated_at = ?
	WHERE id = ? AND status = ?`

// transitionStatements writes a transition statement by statement (SQLite,
// inside the caller's transaction).
func transitionStatements(ctx context.Context, q Queryer, t *transition) error {
	n, err := Exec(ctx, q, transitionUpdateSQL, t.new.Status, t.new.BeforeDispute, t.new.UpdatedAt, t.old.ID, t.old.Status)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrStale
	}
	if _, err := Exec(ctx, q, insertHistorySQL, t.hist...); err != nil {
		return err
	}
	if t.evArgs == nil {
		return nil
	}
	if _, err := Exec(ctx, q, insertEventSQL, t.evArgs...); err != nil {
		return err
	}
	if len(t.new.Outbox) > 0 {
		outSQL, outArgs := insertOutboxRows(toOutbox(t.new.Outbox), t.new.UpdatedAt)
		if _, err := Exec(ctx, q, outSQL, outArgs...); err != nil {
			return err
		}
	}
	return nil
}

// transitionOneStatement writes a transition in one PostgreSQL statement:
// the compare-and-set update, and only if it matched, the history row, the
// domain event and its outbox rows. A statement is atomic on its own, so it
// needs no explicit transaction.
func transitionOneStatement(ctx context.Context, q Queryer, t *transition) error {
	moved, err := transitionsOneStatement(ctx, q, []*transition{t})
	if err != nil {
		return err
	}
	if !moved[t.old.ID] {
		return ErrStale
	}
	return nil
}

// transitionsOneStatement writes transitions of distinct bookings in one
// PostgreSQL statement: each booking's compare-and-set update, and for
// those that matched, their history rows, domain events and outbox rows.
// moved holds the IDs of the bookings that matched; the others changed
// since they were read.
func transitionsOneStatement(ctx context.Context, q Queryer, ts []*transition) (moved map[string]bool, err error) {
	// The rows of the statement's three VALUES lists: each booking's move
	// (id, from, to, before dispute, updated at) with its history row's
	// columns; the domain events and the outbox rows of the moves that
	// have one, each led by its booking's ID.
	var moves, evs, outs [][]any
	for _, t := range ts {
		h := t.hist // id, booking_id, from, to, cause, source, source_ref, actor_id, created_at
		moves = append(moves, []any{t.old.ID, t.old.Status, t.new.Status, t.new.BeforeDispute, t.new.UpdatedAt, h[0], h[4], h[5], h[6], h[7]})
		if t.evArgs == nil {
			continue
		}
		evs = append(evs, append([]any{t.old.ID}, t.evArgs...))
		for _, m := range toOutbox(t.new.Outbox) {
			outs = append(outs, append([]any{t.old.ID}, outboxArgs(m, t.new.UpdatedAt)...))
		}
	}
	var st batchStatement
	st.WriteString(`WITH v (id, from_status, to_status, before_dispute, updated_at,
		hid, cause, source, source_ref, actor_id) AS (VALUES `)
	st.values(`(?::text, ?::text, ?::text, ?::text, ?::timestamptz, ?::text, ?::text, ?::text, ?::text, ?::text)`, moves)
	st.WriteString(`),
	u AS (UPDATE bookings b SET status = v.to_status, status_before_dispute = v.before_dispute, updated_at = v.updated_at
		FROM v WHERE b.id = v.id AND b.status = v.from_status RETURNING b.id),
	h AS (INSERT INTO booking_history (id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at)
		SELECT v.hid, v.id, v.from_status, v.to_status, v.cause, v.source, v.source_ref, v.actor_id, v.updated_at
		FROM v JOIN u ON u.id = v.id)`)
	st.eventsAndOutbox("u", evs, outs)
	st.WriteString(`
	SELECT id FROM u`)
	var ids []string
	if err := Select(ctx, q, &ids, st.String(), st.args...); err != nil {
		return nil, err
	}
	moved = make(map[string]bool, len(ids))
	for _, id := range ids {
		moved[id] = true
	}
	return moved, nil
}

// BookingHistory returns a booking's transitions, oldest first.
func BookingHistory(ctx context.Context, q Queryer, bookingID string) ([]HistoryEntry, error) {
	var h []HistoryEntry
	err := Select(ctx, q, &h, `SELECT id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at
		FROM booking_history WHERE booking_id = ? ORDER BY created_at, id`, bookingID)
	if err != nil {
		return nil, fmt.Errorf("booking %s history: %w", bookingID, err)
	}
	return h, nil
}

// batchStatement builds a statement that writes many rows from VALUES
// lists, with its arguments.
type batchStatement struct {
	strings.Builder
	args []any
}

// values writes rows as a VALUES list, each row as types (its placeholders).
func (st *batchStatement) values(types string, rows [][]any) {
	for i, r := range rows {
		if i > 0 {
			st.WriteString(", ")
		}
		st.WriteString(types)
		st.args = append(st.args, r...)
	}
}

// eventsAndOutbox writes the statement's domain events (evs: booking ID,
// then the event's columns) and outbox rows (outs: booking ID, then the
// row's columns), each written only if its booking is in the CTE written
// (which returns id).
func (st *batchStatement) eventsAndOutbox(written string, evs, outs [][]any) {
	if len(evs) > 0 {
		st.WriteString(`,
	ev (booking_id, id, type, subject_type, subject_id, data, created_at) AS (VALUES `)
		st.values(`(?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::timestamptz)`, evs)
		st.WriteString(`),
	e AS (INSERT INTO domain_events (id, type, subject_type, subject_id, data, created_at)
		SELECT ev.id, ev.type, ev.subject_type, ev.subject_id, ev.data, ev.created_at
		FROM ev JOIN ` + written + ` w ON w.id = ev.booking_id ON CONFLICT (id) DO NOTHING)`)
	}
	if len(outs) > 0 {
		st.WriteString(`,
	ov (booking_id, id, task_type, payload, process_at, created_at) AS (VALUES `)
		st.values(`(?::text, ?::text, ?::text, ?::bytea, ?::timestamptz, ?::timestamptz)`, outs)
		st.WriteString(`),
	o AS (INSERT INTO outbox (id, task_type, payload, process_at, created_at)
		SELECT ov.id, ov.task_type, ov.payload, ov.process_at, ov.created_at
		FROM ov JOIN ` + written + ` w ON w.id = ov.booking_id ON CONFLICT (id) DO NOTHING)`)
	}
}
