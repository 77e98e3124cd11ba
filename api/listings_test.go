package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func insertUpload(t *testing.T, db *store.DB, ownerID, kind, status string) string {
	t.Helper()
	id, now := store.NewID(), store.Now()
	_, err := store.Exec(context.Background(), db, `INSERT INTO uploads (id, owner_id, kind, object_key, content_type, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, 'image/jpeg', ?, ?, ?)`, id, ownerID, kind, "k/"+id, status, now, now)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// localBlobs is a local blob store in a temporary folder.
func localBlobs(t *testing.T) *blob.Local {
	t.Helper()
	l, err := blob.NewLocal(t.TempDir(), []byte("local-signing-key-for-tests-0123"), "")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestListingLifecycle(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		a := newTestAPI(t, db, func(_ *api.Config, d *api.Deps) { d.Blobs = localBlobs(t) })
		owner, renter := a.signup("owner"), a.signup("renter")
		p1 := insertUpload(t, db, owner.ID, "image", "ready")
		// p2 is processed: its variants show on the listing (in the shape
		// the OpenAPI document gives, which the test client checks).
		p2 := insertUpload(t, db, owner.ID, "image", "processing")
		if err := store.FinishUpload(context.Background(), db, p2, 640, 480, []store.UploadVariant{
			{Name: "thumb", ObjectKey: "k/" + p2 + "/thumb.jpg", ContentType: "image/jpeg", Width: 150, Height: 113, Size: 10},
			{Name: "medium", ObjectKey: "k/" + p2 + "/medium.jpg", ContentType: "image/jpeg", Width: 600, Height: 450, Size: 10}}); err != nil {
			t.Fatal(err)
		}
		busy := insertUpload(t, db, owner.ID, "image", "processing")
		theirs := insertUpload(t, db, renter.ID, "image", "ready")

		// Photos must be ready image uploads of the owner.
		r := a.do("POST", "/api/v1/listings", owner.Token, map[string]any{"title": "Tent", "price_per_day": 1500,
			"currency": "EUR", "photos": []string{p1, busy, theirs}})
		expect(t, r, http.StatusBadRequest)
		e := r.errorBody(t)
		if e.Code != "validation_failed" || len(e.Details) != 2 || e.Details[0].Field != "photos[1]" || e.Details[1].Field != "photos[2]" {
			t.Fatalf("bad photos: %+v", e)
		}
		if n := a.count(`SELECT count(*) FROM listings`); n != 0 {
			t.Fatalf("a refused listing was written")
		}

		r = a.do("POST", "/api/v1/listings", owner.Token, map[string]any{"title": "Tent", "description": "Sleeps 4",
			"price_per_day": 1500, "currency": "EUR", "photos": []string{p2, p1}})
		expect(t, r, http.StatusCreated)
		var l api.ListingView
		r.decode(t, &l)
		if l.OwnerID != owner.ID || l.PricePerDay != 1500 || !l.Active || len(l.Photos) != 2 ||
			l.Photos[0].ID != p2 || l.Photos[0].Status != "ready" || r.Header.Get("Location") != "/api/v1/listings/"+l.ID {
			t.Fatalf("created listing = %+v", l)
		}
		if v := l.Photos[0].Variants; len(v) != 2 || v["thumb"].Width != 150 || !strings.Contains(v["medium"].URL, "/blobs/k/"+p2+"/medium.jpg?") ||
			len(l.Photos[1].Variants) != 0 {
			t.Fatalf("photo variants = %+v / %+v", l.Photos[0].Variants, l.Photos[1].Variants)
		}

		// Anyone reads it.
		r = a.do("GET", "/api/v1/listings/"+l.ID, "", nil)
		expect(t, r, http.StatusOK)

		// Patch: only the given fields change; photos replaced.
		r = a.do("PATCH", "/api/v1/listings/"+l.ID, owner.Token, map[string]any{"price_per_day": 2000, "photos": []string{p1}})
		expect(t, r, http.StatusOK)
		var pl api.ListingView
		r.decode(t, &pl)
		if pl.PricePerDay != 2000 || pl.Title != "Tent" || pl.Description != "Sleeps 4" || len(pl.Photos) != 1 || !pl.UpdatedAt.After(l.UpdatedAt) {
			t.Fatalf("patched = %+v", pl)
		}
		for _, bad := range []map[string]any{{"price_per_day": 0}, {"title": "  "}, {"currency": "euro"}, {"photos": []string{p1, p1}}} {
			r = a.do("PATCH", "/api/v1/listings/"+l.ID, owner.Token, bad)
			if r.Status != http.StatusBadRequest || r.errorBody(t).Code != "validation_failed" {
				t.Errorf("patch %v: %d %s", bad, r.Status, r.Body)
			}
		}

		// A booking that is not over keeps the listing from deletion.
		b := a.book(renter, l.ID, day(3), day(5))
		r = a.do("DELETE", "/api/v1/listings/"+l.ID, owner.Token, nil)
		expect(t, r, http.StatusConflict)
		if e := r.errorBody(t); e.Code != "conflict" {
			t.Fatalf("delete while booked: %+v", e)
		}
		expect(t, a.do("POST", "/api/v1/bookings/"+b.ID+"/cancel", renter.Token, nil), http.StatusOK)
		expect(t, a.do("DELETE", "/api/v1/listings/"+l.ID, owner.Token, nil), http.StatusNoContent)
		expect(t, a.do("GET", "/api/v1/listings/"+l.ID, "", nil), http.StatusNotFound)
		expect(t, a.do("PATCH", "/api/v1/listings/"+l.ID, owner.Token, map[string]any{"title": "x"}), http.StatusNotFound)
		// The row stays for its bookings, marked deleted and inactive.
		if n := a.count(`SELECT count(*) FROM listings WHERE id = ? AND deleted_at IS NOT NULL AND active = ?`, l.ID, false); n != 1 {
			t.Fatalf("soft delete did not mark the row")
		}
		// A deleted listing cannot be booked.
		r = a.do("POST", "/api/v1/bookings", renter.Token, bookingBody(l.ID, day(10), day(11)))
		expect(t, r, http.StatusNotFound)
	})
}

func TestListListingsFiltersAndPages(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testkit.Postgres(t))
	o1, o2 := a.signup("owner"), a.signup("owner")
	for i := 0; i < 5; i++ {
		o := o1
		if i >= 3 {
			o = o2
		}
		r := a.do("POST", "/api/v1/listings", o.Token, map[string]any{"title": fmt.Sprintf("Canoe %d", i),
			"price_per_day": 1000 * (i + 1), "currency": "EUR", "active": i != 4})
		expect(t, r, http.StatusCreated)
	}
	list := func(q url.Values) api.ListResponse[api.ListingView] {
		t.Helper()
		r := a.do("GET", "/api/v1/listings?"+q.Encode(), "", nil)
		expect(t, r, http.StatusOK)
		var out api.ListResponse[api.ListingView]
		r.decode(t, &out)
		return out
	}
	cases := []struct {
		q    url.Values
		want int
	}{
		{url.Values{}, 5},
		{url.Values{"owner_id": {o2.ID}}, 2},
		{url.Values{"min_price": {"2000"}, "max_price": {"4000"}}, 3},
		{url.Values{"q": {"CANOE 1"}}, 1},
		{url.Values{"active": {"true"}}, 4},
		{url.Values{"active": {"false"}, "owner_id": {o2.ID}}, 1},
	}
	for _, c := range cases {
		if got := list(c.q); len(got.Data) != c.want || got.Pagination.HasMore {
			t.Errorf("%v: %d listings, want %d", c.q, len(got.Data), c.want)
		}
	}

	// Pages of 2 walk the whole list, newest first, and the last says so.
	var titles []string
	q := url.Values{"limit": {"2"}}
	for i := 0; ; i++ {
		page := list(q)
		if page.Pagination.Limit != 2 {
			t.Fatalf("limit echoed as %d", page.Pagination.Limit)
		}
		for _, l := range page.Data {
			titles = append(titles, l.Title)
		}
		if !page.Pagination.HasMore {
			if page.Pagination.NextCursor != nil {
				t.Fatal("last page has a next cursor")
			}
			break
		}
		if i > 3 {
			t.Fatal("pages never end")
		}
		q.Set("cursor", *page.Pagination.NextCursor)
	}
	if fmt.Sprint(titles) != "[Canoe 4 Canoe 3 Canoe 2 Canoe 1 Canoe 0]" {
		t.Fatalf("paged titles = %v", titles)
	}

	for _, bad := range []string{"limit=0", "limit=101", "limit=x", "cursor=***", "cursor=bm9wZQ", "min_price=-1",
		"active=maybe", "min_price=5&max_price=1"} {
		r := a.do("GET", "/api/v1/listings?"+bad, "", nil)
		if r.Status != http.StatusBadRequest || r.errorBody(t).Code != "invalid" {
			t.Errorf("%s: %d %s", bad, r.Status, r.Body)
		}
	}
}

// unsignable is a blob store that cannot make links.
type unsignable struct{ blob.Store }

func (unsignable) PublicURL(string) string { return "" }
func (unsignable) PresignGet(context.Context, string, time.Duration, blob.GetURLOptions) (string, error) {
	return "", errors.New("signing key unavailable")
}

// TestListingAnsweredWhenPhotoLinksFail: links are an extra — a listing
// whose photo links cannot be made is still created (201, once) and read,
// without them.
func TestListingAnsweredWhenPhotoLinksFail(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	a := newTestAPI(t, db, func(_ *api.Config, d *api.Deps) { d.Blobs = unsignable{localBlobs(t)} })
	owner := a.signup("owner")
	p := insertUpload(t, db, owner.ID, "image", "processing")
	if err := store.FinishUpload(context.Background(), db, p, 640, 480, []store.UploadVariant{
		{Name: "thumb", ObjectKey: "k/" + p + "/thumb.jpg", ContentType: "image/jpeg", Width: 150, Height: 113, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	r := a.do("POST", "/api/v1/listings", owner.Token, map[string]any{"title": "Tent", "price_per_day": 1500,
		"currency": "EUR", "photos": []string{p}})
	expect(t, r, http.StatusCreated)
	var l api.ListingView
	r.decode(t, &l)
	if len(l.Photos) != 1 || l.Photos[0].ID != p || l.Photos[0].Variants != nil {
		t.Fatalf("created listing photos = %+v", l.Photos)
	}
	expect(t, a.do("GET", "/api/v1/listings/"+l.ID, "", nil), http.StatusOK)
	if n := a.count(`SELECT count(*) FROM listings`); n != 1 {
		t.Fatalf("%d listings", n)
	}
}
