package store

import "context"

// InsertBookingsReadAt plans nbs as a batch would from their listings as
// read, except that each listing is taken to cost price a day (a read that
// went stale), writes them with insertBookings, and returns, by booking ID,
// which were written and whose listings held.
func InsertBookingsReadAt(ctx context.Context, db *DB, nbs []NewBooking, price int64) (inserted, held map[string]bool, err error) {
	var planned []*plannedBooking
	for i, nb := range nbs {
		l, err := bookableListing(ctx, db, nb)
		if err != nil {
			return nil, nil, err
		}
		l.PricePerDay = price
		b, h, ev, err := planNewBooking(l, nb)
		if err != nil {
			return nil, nil, err
		}
		eArgs, err := eventArgs(ev)
		if err != nil {
			return nil, nil, err
		}
		planned = append(planned, &plannedBooking{i: i, listing: l, b: b, h: h, evArgs: eArgs})
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
