package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/store"
)

// ListingView is a listing as the API shows it.
type ListingView struct {
	ID          string      `json:"id"`
	OwnerID     string      `json:"owner_id"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	PricePerDay int64       `json:"price_per_day"`
	Currency    string      `json:"currency"`
	Active      bool        `json:"active"`
	Photos      []PhotoView `json:"photos"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// PhotoView is one photo of a listing: an image upload, with the links of
// its variants once it is ready (for anyone who may see the listing; the
// original stays its owner's, at GET /upload/:id).
type PhotoView struct {
	ID       string                     `json:"id"`
	Status   string                     `json:"status"`
	Variants map[string]VariantResponse `json:"variants,omitempty"`
}

func listingView(l *store.Listing, photos []store.ListingPhoto) ListingView {
	v := ListingView{ID: l.ID, OwnerID: l.OwnerID, Title: l.Title, Description: l.Description,
		PricePerDay: l.PricePerDay, Currency: l.Currency, Active: l.Active, Photos: make([]PhotoView, 0, len(photos)),
		CreatedAt: l.CreatedAt.UTC(), UpdatedAt: l.UpdatedAt.UTC()}
	for _, p := range photos {
		v.Photos = append(v.Photos, PhotoView{ID: p.UploadID, Status: p.Status})
	}
	return v
}

type createListingRequest struct {
	Title       string `json:"title" binding:"required,notblank,max=200"`
	Description string `json:"description" binding:"max=5000"`
	// The cap keeps prices sane (a million in major units of a two-decimal
	// currency) and far from overflow in booking.Price.
	PricePerDay int64    `json:"price_per_day" binding:"required,min=1,max=100000000"`
	Currency    string   `json:"currency" binding:"required,iso4217"`
	Active      *bool    `json:"active"`
	Photos      []string `json:"photos" binding:"max=20,unique,dive,required,max=64"`
}

// createListing lets an owner (or an admin) list an item: 201.
func (s *Server) createListing(c *gin.Context) {
	p := principal(c)
	if p.Role != RoleOwner && !p.IsAdmin() {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "only owners can create listings"))
		return
	}
	var req createListingRequest
	if err := bindJSON(c, &req); err != nil {
		renderError(c, err)
		return
	}
	l := &store.Listing{OwnerID: p.UserID, Title: req.Title, Description: req.Description,
		PricePerDay: req.PricePerDay, Currency: req.Currency, Active: req.Active == nil || *req.Active}
	ctx := c.Request.Context()
	err := s.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := store.CreateListing(ctx, tx, l); err != nil {
			return err
		}
		return store.SetListingPhotos(ctx, tx, l.ID, l.OwnerID, req.Photos)
	})
	if err != nil {
		renderError(c, err)
		return
	}
	s.respondListing(c, http.StatusCreated, l)
}

// getListing is public; a deleted listing is 404.
func (s *Server) getListing(c *gin.Context) {
	l, err := store.GetListing(c.Request.Context(), s.deps.DB, c.Param("id"))
	if err != nil {
		renderError(c, notFound(err, "listing"))
		return
	}
	s.respondListing(c, http.StatusOK, l)
}

func (s *Server) respondListing(c *gin.Context, status int, l *store.Listing) {
	photos, err := store.ListingPhotos(c.Request.Context(), s.deps.DB, l.ID)
	if err != nil {
		renderError(c, err)
		return
	}
	views := []ListingView{listingView(l, photos[l.ID])}
	s.linkPhotos(c.Request.Context(), requestBase(c), views)
	if status == http.StatusCreated {
		c.Header("Location", "/api/v1/listings/"+l.ID)
	}
	c.JSON(status, views[0])
}

// listListings is public: filters owner_id, q (title or description),
// min_price, max_price, active; paginated newest first.
func (s *Server) listListings(c *gin.Context) {
	page, err := parsePage(c)
	if err != nil {
		renderError(c, err)
		return
	}
	f, err := listingFilter(c)
	if err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	rows, next, err := store.ListListings(ctx, s.deps.DB, f, page)
	if err != nil {
		renderError(c, err)
		return
	}
	out, err := pageViews(ctx, s.deps.DB, rows, func(l *store.Listing) string { return l.ID }, store.ListingPhotos, listingView)
	if err != nil {
		renderError(c, err)
		return
	}
	s.linkPhotos(ctx, requestBase(c), out)
	c.JSON(http.StatusOK, newList(out, page, next))
}

func listingFilter(c *gin.Context) (store.ListingFilter, error) {
	f := store.ListingFilter{OwnerID: c.Query("owner_id"), Query: c.Query("q")}
	if len(f.OwnerID) > 64 {
		return f, invalidParam("owner_id", "is too long")
	}
	if len([]rune(f.Query)) > 100 {
		return f, invalidParam("q", "must be at most 100 characters")
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"min_price", &f.MinPrice}, {"max_price", &f.MaxPrice}} {
		if s := c.Query(p.name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return f, invalidParam(p.name, "must be a non-negative integer (minor units)")
			}
			*p.dst = &n
		}
	}
	if f.MinPrice != nil && f.MaxPrice != nil && *f.MinPrice > *f.MaxPrice {
		return f, invalidParam("min_price", "must not be above max_price")
	}
	if s := c.Query("active"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, invalidParam("active", "must be true or false")
		}
		f.Active = &b
	}
	return f, nil
}

type patchListingRequest struct {
	Title       *string   `json:"title" binding:"omitnil,notblank,max=200"`
	Description *string   `json:"description" binding:"omitnil,max=5000"`
	PricePerDay *int64    `json:"price_per_day" binding:"omitnil,min=1,max=100000000"`
	Currency    *string   `json:"currency" binding:"omitnil,iso4217"`
	Active      *bool     `json:"active"`
	Photos      *[]string `json:"photos" binding:"omitnil,max=20,unique,dive,required,max=64"`
}

// patchListing changes the fields given; only the owner or an admin may.
// photos, when given, replaces the photos (each an upload of the listing's
// owner).
func (s *Server) patchListing(c *gin.Context) {
	l, ok := s.editableListing(c)
	if !ok {
		return
	}
	var req patchListingRequest
	if err := bindJSON(c, &req); err != nil {
		renderError(c, err)
		return
	}
	if req.Title != nil {
		l.Title = *req.Title
	}
	if req.Description != nil {
		l.Description = *req.Description
	}
	if req.PricePerDay != nil {
		l.PricePerDay = *req.PricePerDay
	}
	if req.Currency != nil {
		l.Currency = *req.Currency
	}
	if req.Active != nil {
		l.Active = *req.Active
	}
	ctx := c.Request.Context()
	err := s.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := store.UpdateListing(ctx, tx, l); err != nil {
			return err
		}
		if req.Photos == nil {
			return nil
		}
		return store.SetListingPhotos(ctx, tx, l.ID, l.OwnerID, *req.Photos)
	})
	if err != nil {
		renderError(c, err)
		return
	}
	s.respondListing(c, http.StatusOK, l)
}

// deleteListing soft-deletes a listing: 204, or 409 while a booking of it
// is not over yet.
func (s *Server) deleteListing(c *gin.Context) {
	l, ok := s.editableListing(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	today := booking.DateOf(time.Now(), time.UTC)
	if err := s.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error { return store.DeleteListing(ctx, tx, l.ID, today) }); err != nil {
		renderError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// editableListing loads the listing of the path for a change: 404 if it does
// not exist, 403 unless the caller owns it or is an admin (listings are
// public, so refusing with 403 reveals nothing).
func (s *Server) editableListing(c *gin.Context) (*store.Listing, bool) {
	l, err := store.GetListing(c.Request.Context(), s.deps.DB, c.Param("id"))
	if err != nil {
		renderError(c, notFound(err, "listing"))
		return nil, false
	}
	if p := principal(c); l.OwnerID != p.UserID && !p.IsAdmin() {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "only the listing's owner can change it"))
		return nil, false
	}
	return l, true
}

// notFound gives a store's ENOTFOUND a message naming the resource.
func notFound(err error, what string) error {
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		return portal.WrapError(portal.ENOTFOUND, err, "%s not found", what)
	}
	return err
}
