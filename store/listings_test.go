package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func newUser(t *testing.T, db *store.DB, role string) *store.User {
	t.Helper()
	u := &store.User{Email: testkit.RandomName("u") + "@example.com", PasswordHash: "x", Name: "T", Role: role}
	if err := store.CreateUser(context.Background(), db, u); err != nil {
		t.Fatal(err)
	}
	return u
}

func newListing(t *testing.T, db *store.DB, ownerID, title string, price int64) *store.Listing {
	t.Helper()
	l := &store.Listing{OwnerID: ownerID, Title: title, PricePerDay: price, Currency: "EUR", Active: true}
	if err := store.CreateListing(context.Background(), db, l); err != nil {
		t.Fatal(err)
	}
	return l
}

func insertUpload(t *testing.T, db *store.DB, ownerID, kind, status string) string {
	t.Helper()
	id, now := store.NewID(), store.Now()
	_, err := store.Exec(context.Background(), db, `INSERT INTO uploads (id, owner_id, kind, object_key, content_type, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, 'image/png', ?, ?, ?)`, id, ownerID, kind, "k/"+id, status, now, now)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestListingsPagesAndFilters(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newUser(t, db, "owner"), newUser(t, db, "owner")
		var ids []string
		for i := 0; i < 7; i++ {
			owner := a.ID
			if i%2 == 1 {
				owner = b.ID
			}
			ids = append(ids, newListing(t, db, owner, fmt.Sprintf("Item %d", i), int64(1000*(i+1))).ID)
		}
		// A 100%_ title to check LIKE escaping.
		special := newListing(t, db, a.ID, "Bike 100%_off", 500)
		ids = append(ids, special.ID)

		// Pages of 3, newest first, cover everything once.
		var seen []string
		p := store.Page{Limit: 3}
		for pages := 0; ; pages++ {
			rows, next, err := store.ListListings(ctx, db, store.ListingFilter{}, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				seen = append(seen, r.ID)
			}
			if next == nil {
				break
			}
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			p.After = next
		}
		if len(seen) != len(ids) {
			t.Fatalf("pages returned %d listings, want %d", len(seen), len(ids))
		}
		for i := range ids {
			if seen[i] != ids[len(ids)-1-i] {
				t.Fatalf("page order: got %v, want newest first %v", seen, ids)
			}
		}

		minP, maxP, inactive := int64(2000), int64(5000), false
		cases := []struct {
			name string
			f    store.ListingFilter
			want int
		}{
			{"owner", store.ListingFilter{OwnerID: b.ID}, 3},
			{"price range", store.ListingFilter{MinPrice: &minP, MaxPrice: &maxP}, 4},
			{"query is case-insensitive", store.ListingFilter{Query: "iTeM 3"}, 1},
			{"query escapes LIKE", store.ListingFilter{Query: "0%_o"}, 1},
			{"percent alone is literal", store.ListingFilter{Query: "%"}, 1},
			{"inactive", store.ListingFilter{Active: &inactive}, 0},
		}
		for _, c := range cases {
			rows, _, err := store.ListListings(ctx, db, c.f, store.Page{Limit: 100})
			if err != nil || len(rows) != c.want {
				t.Errorf("%s: %d rows, %v; want %d", c.name, len(rows), err, c.want)
			}
		}

		// A deleted listing disappears from reads and lists.
		today := booking.DateOf(time.Now(), time.UTC)
		if err := db.InTx(ctx, func(tx *sqlx.Tx) error { return store.DeleteListing(ctx, tx, special.ID, today) }); err != nil {
			t.Fatal(err)
		}
		if _, err := store.GetListing(ctx, db, special.ID); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("get deleted: %v", err)
		}
		rows, _, _ := store.ListListings(ctx, db, store.ListingFilter{Query: "bike"}, store.Page{Limit: 10})
		if len(rows) != 0 {
			t.Fatalf("deleted listing still listed")
		}
	})
}

func TestDeleteListingRefusedWhileBooked(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, renter := newUser(t, db, "owner"), newUser(t, db, "renter")
		l := newListing(t, db, owner.ID, "Tent", 1500)
		today := booking.DateOf(time.Now(), time.UTC)
		del := func() error {
			return db.InTx(ctx, func(tx *sqlx.Tx) error { return store.DeleteListing(ctx, tx, l.ID, today) })
		}
		// A booking that ended before today does not hold the listing.
		if err := insertBooking(ctx, db, l.ID, renter.ID, today.AddDays(-5).String(), today.String(), "completed"); err != nil {
			t.Fatal(err)
		}
		if err := insertBooking(ctx, db, l.ID, renter.ID, today.AddDays(3).String(), today.AddDays(5).String(), "confirmed"); err != nil {
			t.Fatal(err)
		}
		if err := del(); portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("delete with a future booking: %v, want conflict", err)
		}
		if got, err := store.GetListing(ctx, db, l.ID); err != nil || !got.Active {
			t.Fatalf("the refused delete changed the listing: %+v %v", got, err)
		}
		if _, err := store.Exec(ctx, db, `UPDATE bookings SET status = 'cancelled' WHERE listing_id = ? AND status = 'confirmed'`, l.ID); err != nil {
			t.Fatal(err)
		}
		if err := del(); err != nil {
			t.Fatalf("delete once free: %v", err)
		}
		if err := del(); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("second delete: %v, want not found", err)
		}
	})
}

func TestListingPhotos(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, other := newUser(t, db, "owner"), newUser(t, db, "owner")
		l := newListing(t, db, owner.ID, "Canoe", 3000)
		ready1 := insertUpload(t, db, owner.ID, "image", "ready")
		ready2 := insertUpload(t, db, owner.ID, "image", "ready")
		pending := insertUpload(t, db, owner.ID, "image", "processing")
		doc := insertUpload(t, db, owner.ID, "document", "ready")
		theirs := insertUpload(t, db, other.ID, "image", "ready")

		err := store.SetListingPhotos(ctx, db, l.ID, owner.ID, []string{ready1, pending, doc, theirs, "nope"})
		details := portal.ErrorDetails(err)
		if portal.ErrorCode(err) != portal.EVALIDATION || len(details) != 4 {
			t.Fatalf("bad photos: %v %+v, want 4 details", err, details)
		}
		for i, d := range details {
			if want := fmt.Sprintf("photos[%d]", i+1); d.Field != want {
				t.Errorf("detail %d names %s, want %s", i, d.Field, want)
			}
		}
		if err := store.SetListingPhotos(ctx, db, l.ID, owner.ID, []string{ready2, ready1}); err != nil {
			t.Fatal(err)
		}
		got, err := store.ListingPhotos(ctx, db, l.ID, "other-listing")
		if err != nil {
			t.Fatal(err)
		}
		ph := got[l.ID]
		if len(ph) != 2 || ph[0].UploadID != ready2 || ph[1].UploadID != ready1 || ph[0].Status != "ready" {
			t.Fatalf("photos = %+v, want [ready2 ready1]", ph)
		}
		// Replacing with none clears them.
		if err := store.SetListingPhotos(ctx, db, l.ID, owner.ID, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := store.ListingPhotos(ctx, db, l.ID); len(got[l.ID]) != 0 {
			t.Fatalf("photos not cleared: %+v", got)
		}
	})
}
