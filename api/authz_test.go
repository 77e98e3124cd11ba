package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

// TestAuthorizationMatrix sends every listing, booking and account endpoint
// as each kind of caller and checks the status. The stranger is an owner of
// other listings (so the role alone never decides); the renter is the
// booking's renter. Each case gets its own listing and pending booking, so
// no case depends on another.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db)
		users := map[string]account{
			"owner":    a.signup("owner"),
			"renter":   a.signup("renter"),
			"stranger": a.signup("owner"),
			"admin":    a.signup("admin"),
		}
		callers := []string{"owner", "renter", "stranger", "anonymous", "admin"}

		type fixture struct{ listing, booking string }
		// fresh makes a listing of the owner and, unless bare, a pending
		// booking of the renter in the future.
		fresh := func(bare bool) fixture {
			ctx := context.Background()
			l := &store.Listing{OwnerID: users["owner"].ID, Title: "Ladder", PricePerDay: 800, Currency: "EUR", Active: true}
			if err := store.CreateListing(ctx, db, l); err != nil {
				t.Fatal(err)
			}
			f := fixture{listing: l.ID}
			if bare {
				return f
			}
			id := store.NewID()
			if _, _, err := store.CreateBooking(ctx, db, store.NewBooking{ID: id, ListingID: l.ID, RenterID: users["renter"].ID,
				Start: day(5), End: day(7), ExpiresAt: time.Now().Add(time.Hour), Source: store.Source{Kind: store.SourceAPI}}); err != nil {
				t.Fatal(err)
			}
			f.booking = id
			return f
		}
		listingBody := map[string]any{"title": "Saw", "price_per_day": 500, "currency": "EUR"}

		cases := []struct {
			name   string
			bare   bool // a listing without a booking
			method string
			path   func(f fixture) string
			body   func(f fixture) any
			want   map[string]int
		}{
			{name: "me", method: "GET", path: func(fixture) string { return "/api/v1/users/me" },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 200, "anonymous": 401, "admin": 200}},
			{name: "list listings", method: "GET", path: func(fixture) string { return "/api/v1/listings" },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 200, "anonymous": 200, "admin": 200}},
			{name: "get listing", method: "GET", path: func(f fixture) string { return "/api/v1/listings/" + f.listing },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 200, "anonymous": 200, "admin": 200}},
			{name: "create listing", method: "POST", path: func(fixture) string { return "/api/v1/listings" },
				body: func(fixture) any { return listingBody },
				want: map[string]int{"owner": 201, "renter": 403, "stranger": 201, "anonymous": 401, "admin": 201}},
			{name: "patch listing", method: "PATCH", path: func(f fixture) string { return "/api/v1/listings/" + f.listing },
				body: func(fixture) any { return map[string]any{"title": "Tall ladder"} },
				want: map[string]int{"owner": 200, "renter": 403, "stranger": 403, "anonymous": 401, "admin": 200}},
			{name: "delete booked listing", method: "DELETE", path: func(f fixture) string { return "/api/v1/listings/" + f.listing },
				want: map[string]int{"owner": 409, "renter": 403, "stranger": 403, "anonymous": 401, "admin": 409}},
			{name: "delete free listing", bare: true, method: "DELETE", path: func(f fixture) string { return "/api/v1/listings/" + f.listing },
				want: map[string]int{"owner": 204, "renter": 403, "stranger": 403, "anonymous": 401, "admin": 204}},
			{name: "create booking", bare: true, method: "POST", path: func(fixture) string { return "/api/v1/bookings" },
				body: func(f fixture) any { return bookingBody(f.listing, day(1), day(3)) },
				want: map[string]int{"owner": 422, "renter": 201, "stranger": 201, "anonymous": 401, "admin": 201}},
			{name: "list my bookings", method: "GET", path: func(fixture) string { return "/api/v1/bookings" },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 200, "anonymous": 401, "admin": 200}},
			{name: "list bookings of my listings", method: "GET", path: func(fixture) string { return "/api/v1/bookings?as=owner" },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 200, "anonymous": 401, "admin": 200}},
			{name: "get booking", method: "GET", path: func(f fixture) string { return "/api/v1/bookings/" + f.booking },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 404, "anonymous": 401, "admin": 200}},
			{name: "get missing booking", method: "GET", path: func(fixture) string { return "/api/v1/bookings/missing" },
				want: map[string]int{"owner": 404, "renter": 404, "stranger": 404, "anonymous": 401, "admin": 404}},
			{name: "cancel booking", method: "POST", path: func(f fixture) string { return "/api/v1/bookings/" + f.booking + "/cancel" },
				want: map[string]int{"owner": 200, "renter": 200, "stranger": 404, "anonymous": 401, "admin": 403}},
		}
		for _, c := range cases {
			for _, who := range callers {
				t.Run(c.name+"/"+who, func(t *testing.T) {
					f := fresh(c.bare)
					var body any
					if c.body != nil {
						body = c.body(f)
					}
					r := a.do(c.method, c.path(f), users[who].Token, body)
					if r.Status != c.want[who] {
						t.Fatalf("%s %s as %s: %d, want %d: %s", c.method, c.path(f), who, r.Status, c.want[who], r.Body)
					}
					if r.Status >= 400 && r.errorBody(t).Code == "" {
						t.Fatalf("an error without the error shape: %s", r.Body)
					}
				})
			}
		}
		// A stranger's 404 says nothing the 404 of a missing booking does not.
		f := fresh(false)
		hidden := a.do("GET", "/api/v1/bookings/"+f.booking, users["stranger"].Token, nil).errorBody(t)
		missing := a.do("GET", "/api/v1/bookings/"+store.NewID(), users["stranger"].Token, nil).errorBody(t)
		if hidden.Code != missing.Code || hidden.Message != missing.Message {
			t.Fatalf("hidden %+v differs from missing %+v", hidden, missing)
		}
	})
}
