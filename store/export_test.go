package store

import "context"

// planAsRead plans nbs as a batch would from their listings as read from
// db, each listing changed by reprice first (if set).
func planAsRead(ctx context.Context, db *DB, nbs []NewBooking, reprice func(*listingToBook)) ([]*plannedBooking, error) {
	var planned []*plannedBooking
	for i, nb := range nbs {
		l, err := bookableListing(ctx, db, nb)
		if err != nil {
			return nil, err
		}
		if reprice != nil {
			reprice(l)
		}
		p, err := planBatched(i, l, nb)
		if err != nil {
			return nil, err
		}
		planned = append(planned, p)
	}
	return planned, nil
}

// InsertBookingsReadAt plans nbs as a batch would from their listings as
// read, except that each listing is taken to cost price a day (a read that
// went stale), writes them with insertBookings, and returns, by booking ID,
// which were written and whose listings held.
func InsertBookingsReadAt(ctx context.Context, db *DB, nbs []NewBooking, price int64) (inserted, held map[string]bool, err error) {
	planned, err := planAsRead(ctx, db, nbs, func(l *listingToBook) { l.PricePerDay = price })
	if err != nil {
		return nil, nil, err
	}
	out, err := insertBookings(ctx, db, planned)
	if err != nil {
		return nil, nil, err
	}
	inserted, held = map[string]bool{}, map[string]bool{}
	for id, o := range out {
		inserted[id], held[id] = o.inserted, o.held
	}
	return inserted, held, nil
}

// InsertBookingsIn writes nbs as one batch (insertBookings) in q, planned
// from their listings as read from db.
func InsertBookingsIn(ctx context.Context, db *DB, q Queryer, nbs ...NewBooking) (inserted map[string]bool, err error) {
	planned, err := planAsRead(ctx, db, nbs, nil)
	if err != nil {
		return nil, err
	}
	out, err := insertBookings(ctx, q, planned)
	if err != nil {
		return nil, err
	}
	inserted = map[string]bool{}
	for id, o := range out {
		inserted[id] = o.inserted
	}
	return inserted, nil
}

// InsertBookingAloneIn writes nb as CreateBooking does on PostgreSQL
// (insertBookingIfListingHolds) in q, planned from its listing as read
// from db.
func InsertBookingAloneIn(ctx context.Context, db *DB, q Queryer, nb NewBooking) (bool, error) {
	l, err := bookableListing(ctx, db, nb)
	if err != nil {
		return false, err
	}
	b, h, ev, err := planNewBooking(l, nb)
	if err != nil {
		return false, err
	}
	return insertBookingIfListingHolds(ctx, q, l, b, h, ev)
}
