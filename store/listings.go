package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
)

// Listing is an item an owner rents out. A deleted listing keeps its row
// (bookings refer to it) with DeletedAt set, and is invisible to readers.
type Listing struct {
	ID          string     `db:"id"`
	OwnerID     string     `db:"owner_id"`
	Title       string     `db:"title"`
	Description string     `db:"description"`
	PricePerDay int64      `db:"price_per_day"`
	Currency    string     `db:"currency"`
	Active      bool       `db:"active"`
	CreatedAt   time.Time  `db:"created_at"`
	UpdatedAt   time.Time  `db:"updated_at"`
	DeletedAt   *time.Time `db:"deleted_at"`
}

const listingColumns = `id, owner_id, title, description, price_per_day, currency, active, created_at, updated_at, deleted_at`

// CreateListing inserts l, filling its ID and timestamps.
func CreateListing(ctx context.Context, q Queryer, l *Listing) error {
	if l.ID == "" {
		l.ID = NewID()
	}
	now := Now()
	l.CreatedAt, l.UpdatedAt, l.DeletedAt = now, now, nil
	_, err := Exec(ctx, q, `INSERT INTO listings (id, owner_id, title, description, price_per_day, currency, active, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.ID, l.OwnerID, l.Title, l.Description, l.PricePerDay, l.Currency, l.Active, now, now)
	if err != nil {
		return fmt.Errorf("create listing: %w", err)
	}
	return nil
}

// GetListing returns a listing that is not deleted; ENOTFOUND otherwise.
func GetListing(ctx context.Context, q Queryer, id string) (*Listing, error) {
	var l Listing
	err := Get(ctx, q, &l, `SELECT `+listingColumns+` FROM listings WHERE id = ? AND deleted_at IS NULL`, id)
	if err != nil {
		return nil, fmt.Errorf("get listing %s: %w", id, err)
	}
	return &l, nil
}

// UpdateListing writes l's editable fields (title, description, price,
// currency, active) and bumps updated_at; ENOTFOUND if the listing is gone.
func UpdateListing(ctx context.Context, q Queryer, l *Listing) error {
	l.UpdatedAt = Now()
	n, err := Exec(ctx, q, `UPDATE listings SET title = ?, description = ?, price_per_day = ?, currency = ?, active = ?,
		updated_at = ? WHERE id = ? AND deleted_at IS NULL`,
		l.Title, l.Description, l.PricePerDay, l.Currency, l.Active, l.UpdatedAt, l.ID)
	if err != nil {
		return fmt.Errorf("update listing %s: %w", l.ID, err)
	}
	if n == 0 {
		return portal.Errorf(portal.ENOTFOUND, "listing not found")
	}
	return nil
}

// DeleteListing soft-deletes a listing (deleted_at set, inactive). It must
// run inside a transaction: it marks the row first — on PostgreSQL that
// locks it against a booking being created (CreateBooking reads the listing
// FOR SHARE) — and then refuses with ECONFLICT, rolling back, while a
// booking still holds dates that end after today. ENOTFOUND if the listing
// is absent or already deleted.
func DeleteListing(ctx context.Context, q Queryer, id string, today booking.Date) error {
	now := Now()
	n, err := Exec(ctx, q, `UPDATE listings SET deleted_at = ?, active = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL`,
		now, false, now, id)
	if err != nil {
		return fmt.Errorf("delete listing %s: %w", id, err)
	}
	if n == 0 {
		return portal.Errorf(portal.ENOTFOUND, "listing not found")
	}
	var held int
	err = Get(ctx, q, &held, `SELECT count(*) FROM bookings WHERE listing_id = ?
		AND status IN ('pending_payment', 'confirmed', 'active', 'disputed') AND end_date > ?`, id, today)
	if err != nil {
		return fmt.Errorf("delete listing %s: count bookings: %w", id, err)
	}
	if held > 0 {
		return portal.Errorf(portal.ECONFLICT, "the listing has %d booking(s) that are not over yet; cancel them or wait until they end", held)
	}
	return nil
}

// ListingFilter narrows ListListings. Zero fields do not filter.
type ListingFilter struct {
	OwnerID string
	// Query matches title or description, case-insensitively, as a substring.
	Query    string
	MinPrice *int64
	MaxPrice *int64
	Active   *bool
}

// ListListings returns a page of listings that are not deleted, newest
// first, and the cursor of the next page (nil on the last).
func ListListings(ctx context.Context, q Queryer, f ListingFilter, p Page) ([]Listing, *Cursor, error) {
	var where strings.Builder
	var args []any
	where.WriteString(`deleted_at IS NULL`)
	if f.OwnerID != "" {
		where.WriteString(` AND owner_id = ?`)
		args = append(args, f.OwnerID)
	}
	if f.Query != "" {
		pat := "%" + likeEscaper.Replace(strings.ToLower(f.Query)) + "%"
		where.WriteString(` AND (lower(title) LIKE ? ESCAPE '\' OR lower(description) LIKE ? ESCAPE '\')`)
		args = append(args, pat, pat)
	}
	if f.MinPrice != nil {
		where.WriteString(` AND price_per_day >= ?`)
		args = append(args, *f.MinPrice)
	}
	if f.MaxPrice != nil {
		where.WriteString(` AND price_per_day <= ?`)
		args = append(args, *f.MaxPrice)
	}
	if f.Active != nil {
		where.WriteString(` AND active = ?`)
		args = append(args, *f.Active)
	}
	ks, ksArgs := p.keyset("")
	args = append(append(args, ksArgs...), p.limitArg())
	var rows []Listing
	err := Select(ctx, q, &rows, `SELECT `+listingColumns+` FROM listings WHERE `+where.String()+ks+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list listings: %w", err)
	}
	rows, next := trimPage(rows, p, func(l *Listing) Cursor { return Cursor{l.CreatedAt, l.ID} })
	return rows, next, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListingPhoto is one photo of a listing: an image upload, in order.
type ListingPhoto struct {
	ListingID string `db:"listing_id"`
	UploadID  string `db:"upload_id"`
	Position  int    `db:"position"`
	Status    string `db:"status"`
}

// ListingPhotos returns the photos of each listing, in order, in one query.
func ListingPhotos(ctx context.Context, q Queryer, listingIDs ...string) (map[string][]ListingPhoto, error) {
	out := make(map[string][]ListingPhoto, len(listingIDs))
	if len(listingIDs) == 0 {
		return out, nil
	}
	query, args, err := In(q, `SELECT p.listing_id, p.upload_id, p.position, u.status
		FROM listing_photos p JOIN uploads u ON u.id = p.upload_id
		WHERE p.listing_id IN (?) ORDER BY p.listing_id, p.position`, listingIDs)
	if err != nil {
		return nil, err
	}
	var rows []ListingPhoto
	if err := Select(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("listing photos: %w", err)
	}
	for _, r := range rows {
		out[r.ListingID] = append(out[r.ListingID], r)
	}
	return out, nil
}

// SetListingPhotos replaces a listing's photos with the given uploads, in
// order. Each must be an image upload of ownerID that is ready; otherwise
// EVALIDATION with one detail per bad entry, named photos[i] after the
// request field they come from (an upload of someone else is reported as
// absent, never as someone else's).
func SetListingPhotos(ctx context.Context, q Queryer, listingID, ownerID string, uploadIDs []string) error {
	if len(uploadIDs) > 0 {
		query, args, err := In(q, `SELECT id, owner_id, kind, status FROM uploads WHERE id IN (?)`, uploadIDs)
		if err != nil {
			return err
		}
		var ups []struct {
			ID      string `db:"id"`
			OwnerID string `db:"owner_id"`
			Kind    string `db:"kind"`
			Status  string `db:"status"`
		}
		if err := Select(ctx, q, &ups, query, args...); err != nil {
			return fmt.Errorf("listing %s photos: %w", listingID, err)
		}
		byID := map[string]int{}
		for i, u := range ups {
			byID[u.ID] = i
		}
		var details []portal.FieldError
		for i, id := range uploadIDs {
			field := fmt.Sprintf("photos[%d]", i)
			j, ok := byID[id]
			switch {
			case !ok || ups[j].OwnerID != ownerID:
				details = append(details, portal.FieldError{Field: field, Message: "no such upload of yours"})
			case ups[j].Kind != "image":
				details = append(details, portal.FieldError{Field: field, Message: "must be an image upload"})
			case ups[j].Status != "ready":
				details = append(details, portal.FieldError{Field: field,
					Message: fmt.Sprintf("upload is %s, not ready: wait until it is processed", ups[j].Status)})
			}
		}
		if len(details) > 0 {
			return &portal.Error{Code: portal.EVALIDATION, Message: "some photos cannot be used", Details: details}
		}
	}
	if _, err := Exec(ctx, q, `DELETE FROM listing_photos WHERE listing_id = ?`, listingID); err != nil {
		return fmt.Errorf("listing %s photos: %w", listingID, err)
	}
	for i, id := range uploadIDs {
		if _, err := Exec(ctx, q, `INSERT INTO listing_photos (listing_id, upload_id, position) VALUES (?, ?, ?)`,
			listingID, id, i); err != nil {
			return fmt.Errorf("listing %s photos: %w", listingID, err)
		}
	}
	return nil
}
