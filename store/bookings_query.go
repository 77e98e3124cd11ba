package store

import (
	"context"
	"fmt"
	"time"

	"github.com/rentalportal/portal/booking"
)

// BookingFilter narrows ListBookings: exactly one of RenterID and OwnerID
// is set (the caller's side of the booking).
type BookingFilter struct {
	RenterID string
	OwnerID  string
	Status   booking.Status
}

// ListBookings returns a page of bookings, newest first, and the cursor of
// the next page (nil on the last).
func ListBookings(ctx context.Context, q Queryer, f BookingFilter, p Page) ([]Booking, *Cursor, error) {
	where, args := `renter_id = ?`, []any{f.RenterID}
	if f.OwnerID != "" {
		where, args = `owner_id = ?`, []any{f.OwnerID}
	}
	if f.Status != "" {
		where += ` AND status = ?`
		args = append(args, f.Status)
	}
	ks, ksArgs := p.keyset("")
	args = append(append(args, ksArgs...), p.limitArg())
	var rows []Booking
	err := Select(ctx, q, &rows, `SELECT `+bookingColumns+` FROM bookings WHERE `+where+ks+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list bookings: %w", err)
	}
	rows, next := trimPage(rows, p, func(b *Booking) Cursor { return Cursor{b.CreatedAt, b.ID} })
	return rows, next, nil
}

// BookingHistories returns the history of each booking, oldest first, in
// one query.
func BookingHistories(ctx context.Context, q Queryer, ids ...string) (map[string][]HistoryEntry, error) {
	out := make(map[string][]HistoryEntry, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := In(q, `SELECT id, booking_id, from_status, to_status, cause, source, source_ref, actor_id, created_at
		FROM booking_history WHERE booking_id IN (?) ORDER BY booking_id, created_at, id`, ids)
	if err != nil {
		return nil, err
	}
	var rows []HistoryEntry
	if err := Select(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("booking histories: %w", err)
	}
	for _, h := range rows {
		out[h.BookingID] = append(out[h.BookingID], h)
	}
	return out, nil
}

// BookingsToStart, BookingsToEnd and OverdueExpiries name their status in
// the SQL text, not as a parameter: a cached (generic) plan can use a
// partial index only then (migration 00008).

// BookingsToStart returns up to limit IDs, greater than after, of confirmed
// bookings whose first day has come (start_date <= today), in ID order.
func BookingsToStart(ctx context.Context, q Queryer, today booking.Date, after string, limit int) ([]string, error) {
	var ids []string
	err := Select(ctx, q, &ids, `SELECT id FROM bookings WHERE status = 'confirmed' AND start_date <= ? AND id > ?
		ORDER BY id LIMIT ?`, today, after, limit)
	if err != nil {
		return nil, fmt.Errorf("bookings to start: %w", err)
	}
	return ids, nil
}

// BookingsToEnd returns up to limit IDs, greater than after, of active
// bookings that are over. end_date is exclusive (the stay is the nights from
// start_date up to the morning of end_date, as booking.Price and the overlap
// constraint count it), so a booking is over once today >= end_date.
func BookingsToEnd(ctx context.Context, q Queryer, today booking.Date, after string, limit int) ([]string, error) {
	var ids []string
	err := Select(ctx, q, &ids, `SELECT id FROM bookings WHERE status = 'active' AND end_date <= ? AND id > ?
		ORDER BY id LIMIT ?`, today, after, limit)
	if err != nil {
		return nil, fmt.Errorf("bookings to end: %w", err)
	}
	return ids, nil
}

// OverdueExpiries returns up to limit IDs of bookings still pending payment
// whose payment deadline passed before `before`, oldest deadline first.
func OverdueExpiries(ctx context.Context, q Queryer, before time.Time, limit int) ([]string, error) {
	var ids []string
	err := Select(ctx, q, &ids, `SELECT id FROM bookings WHERE status = 'pending_payment' AND expires_at < ?
		ORDER BY expires_at LIMIT ?`, before.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("overdue expiries: %w", err)
	}
	return ids, nil
}
