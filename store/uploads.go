package store

import (
	"context"
	"fmt"
	"time"

	"github.com/rentalportal/portal"
)

// Upload kinds and states. An image goes pending (presigned, not yet
// completed) → processing (stored, thumbnails queued) → ready | failed; a
// document goes pending → ready.
const (
	UploadKindImage    = "image"
	UploadKindDocument = "document"

	UploadPending    = "pending"
	UploadProcessing = "processing"
	UploadReady      = "ready"
	UploadFailed     = "failed"
)

// Upload is an uploads row with its variants.
type Upload struct {
	ID            string    `db:"id"`
	OwnerID       string    `db:"owner_id"`
	Kind          string    `db:"kind"`
	ObjectKey     string    `db:"object_key"`
	ContentType   string    `db:"content_type"`
	Size          int64     `db:"size_bytes"`
	DeclaredSize  *int64    `db:"declared_size"`
	OriginalName  string    `db:"original_name"`
	Status        string    `db:"status"`
	FailureReason string    `db:"failure_reason"`
	Width         *int      `db:"width"`
	Height        *int      `db:"height"`
	BookingID     *string   `db:"booking_id"`
	DisputeID     *string   `db:"dispute_id"`
	CreatedAt     time.Time `db:"created_at"`
	UpdatedAt     time.Time `db:"updated_at"`

	Variants []UploadVariant `db:"-"`
}

// UploadVariant is one scaled copy of an image upload.
type UploadVariant struct {
	UploadID    string `db:"upload_id"`
	Name        string `db:"name"` // thumb, medium or large
	ObjectKey   string `db:"object_key"`
	ContentType string `db:"content_type"`
	Width       int    `db:"width"`
	Height      int    `db:"height"`
	Size        int64  `db:"size_bytes"`
}

const uploadColumns = `id, owner_id, kind, object_key, content_type, size_bytes, declared_size, original_name,
	status, failure_reason, width, height, booking_id, dispute_id, created_at, updated_at`

// CreateUpload inserts u; CreatedAt and UpdatedAt are set to now. Errors:
// EDUPLICATE (ID or key taken), EINVALID (unknown owner or booking).
func CreateUpload(ctx context.Context, q Queryer, u *Upload) error {
	now := Now()
	u.CreatedAt, u.UpdatedAt = now, now
	_, err := Exec(ctx, q, `INSERT INTO uploads (`+uploadColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.OwnerID, u.Kind, u.ObjectKey, u.ContentType, u.Size, u.DeclaredSize, u.OriginalName,
		u.Status, u.FailureReason, u.Width, u.Height, u.BookingID, u.DisputeID, u.CreatedAt, u.UpdatedAt)
	if err != nil {
		return fmt.Errorf("create upload: %w", err)
	}
	return nil
}

// GetUpload returns an upload with its variants; ENOTFOUND if absent.
func GetUpload(ctx context.Context, q Queryer, id string) (*Upload, error) {
	var u Upload
	if err := Get(ctx, q, &u, `SELECT `+uploadColumns+` FROM uploads WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get upload %s: %w", id, err)
	}
	if err := Select(ctx, q, &u.Variants, `SELECT upload_id, name, object_key, content_type, width, height, size_bytes
		FROM upload_variants WHERE upload_id = ? ORDER BY width DESC`, id); err != nil {
		return nil, fmt.Errorf("get upload %s variants: %w", id, err)
	}
	return &u, nil
}

// UploadsByIDs returns the uploads among ids that exist, with their status
// and variants, keyed by ID (for listing photos).
func UploadsByIDs(ctx context.Context, q Queryer, ids []string) (map[string]*Upload, error) {
	out, err := selectByIDs(ctx, q, `SELECT `+uploadColumns+` FROM uploads WHERE id IN (?)`, ids, func(u *Upload) string { return u.ID })
	if err != nil {
		return nil, fmt.Errorf("uploads by id: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	query, args, err := In(q, `SELECT upload_id, name, object_key, content_type, width, height, size_bytes
		FROM upload_variants WHERE upload_id IN (?) ORDER BY width DESC`, ids)
	if err != nil {
		return nil, err
	}
	var vs []UploadVariant
	if err := Select(ctx, q, &vs, query, args...); err != nil {
		return nil, fmt.Errorf("upload variants by id: %w", err)
	}
	for _, v := range vs {
		if u := out[v.UploadID]; u != nil {
			u.Variants = append(u.Variants, v)
		}
	}
	return out, nil
}

// CompleteUpload moves a pending upload to status `to` (processing for an
// image, ready for a document) with its stored size and sniffed content
// type. Errors: ECONFLICT when it is no longer pending, ENOTFOUND.
func CompleteUpload(ctx context.Context, q Queryer, id, to, contentType string, size int64) error {
	n, err := Exec(ctx, q, `UPDATE uploads SET status = ?, content_type = ?, size_bytes = ?, updated_at = ?
		WHERE id = ? AND status = ?`, to, contentType, size, Now(), id, UploadPending)
	if err != nil {
		return fmt.Errorf("complete upload %s: %w", id, err)
	}
	if n == 0 {
		return uploadNotIn(ctx, q, id, UploadPending)
	}
	return nil
}

// MarkUploadProcessing moves a pending upload to processing (a retried or
// swept task finds it processing already: not an error).
func MarkUploadProcessing(ctx context.Context, q Queryer, id string) error {
	_, err := Exec(ctx, q, `UPDATE uploads SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
		UploadProcessing, Now(), id, UploadPending)
	return err
}

// FinishUpload records an image's variants and marks it ready, in the
// caller's transaction: the variants are upserted (a re-run writes the same
// rows) and the status moves from pending or processing. Errors: ENOTFOUND
// when the upload was deleted meanwhile, ECONFLICT when it is already
// ready or failed.
func FinishUpload(ctx context.Context, q Queryer, id string, width, height int, variants []UploadVariant) error {
	n, err := Exec(ctx, q, `UPDATE uploads SET status = ?, width = ?, height = ?, failure_reason = '', updated_at = ?
		WHERE id = ? AND status IN (?, ?)`, UploadReady, width, height, Now(), id, UploadPending, UploadProcessing)
	if err != nil {
		return fmt.Errorf("finish upload %s: %w", id, err)
	}
	if n == 0 {
		return uploadNotIn(ctx, q, id, UploadPending, UploadProcessing)
	}
	for _, v := range variants {
		_, err := Exec(ctx, q, `INSERT INTO upload_variants (upload_id, name, object_key, content_type, width, height, size_bytes)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (upload_id, name) DO UPDATE SET object_key = excluded.object_key, content_type = excluded.content_type,
				width = excluded.width, height = excluded.height, size_bytes = excluded.size_bytes`,
			id, v.Name, v.ObjectKey, v.ContentType, v.Width, v.Height, v.Size)
		if err != nil {
			return fmt.Errorf("upload %s variant %s: %w", id, v.Name, err)
		}
	}
	return nil
}

// FailUpload marks a pending or processing upload failed with a reason a
// user can read. Errors: as FinishUpload.
func FailUpload(ctx context.Context, q Queryer, id, reason string) error {
	if len(reason) > 500 {
		reason = reason[:500]
	}
	n, err := Exec(ctx, q, `UPDATE uploads SET status = ?, failure_reason = ?, updated_at = ?
		WHERE id = ? AND status IN (?, ?)`, UploadFailed, reason, Now(), id, UploadPending, UploadProcessing)
	if err != nil {
		return fmt.Errorf("fail upload %s: %w", id, err)
	}
	if n == 0 {
		return uploadNotIn(ctx, q, id, UploadPending, UploadProcessing)
	}
	return nil
}

// uploadNotIn explains why a compare-and-set on an upload's status wrote
// nothing: ENOTFOUND, or ECONFLICT naming the current status.
func uploadNotIn(ctx context.Context, q Queryer, id string, want ...string) error {
	var status string
	if err := Get(ctx, q, &status, `SELECT status FROM uploads WHERE id = ?`, id); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	return portal.Errorf(portal.ECONFLICT, "upload is %s, not %v", status, want)
}

// DeleteUpload removes an upload row (its variants and listing photos go
// with it). Deleting a missing upload is not an error.
func DeleteUpload(ctx context.Context, q Queryer, id string) error {
	if _, err := Exec(ctx, q, `DELETE FROM uploads WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete upload %s: %w", id, err)
	}
	return nil
}

// UploadsInStatus returns up to limit uploads in status whose last change
// is older than before, oldest first: abandoned presigned uploads
// (pending) for cleanup, stuck ones (processing) for the sweeper.
func UploadsInStatus(ctx context.Context, q Queryer, status string, before time.Time, limit int) ([]Upload, error) {
	var rows []Upload
	err := Select(ctx, q, &rows, `SELECT `+uploadColumns+` FROM uploads
		WHERE status = ? AND updated_at < ? ORDER BY updated_at LIMIT ?`, status, before.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("uploads %s before %s: %w", status, before, err)
	}
	return rows, nil
}

// TouchUpload bumps updated_at, so the sweeper waits a full period before
// looking at the upload again.
func TouchUpload(ctx context.Context, q Queryer, id string) error {
	_, err := Exec(ctx, q, `UPDATE uploads SET updated_at = ? WHERE id = ?`, Now(), id)
	return err
}

// DisputeBookingID returns the booking a dispute belongs to; ENOTFOUND if
// the dispute is unknown or has no booking.
func DisputeBookingID(ctx context.Context, q Queryer, disputeID string) (string, error) {
	var b *string
	if err := Get(ctx, q, &b, `SELECT booking_id FROM disputes WHERE id = ?`, disputeID); err != nil {
		return "", fmt.Errorf("dispute %s: %w", disputeID, err)
	}
	if b == nil {
		return "", portal.Errorf(portal.ENOTFOUND, "dispute has no booking")
	}
	return *b, nil
}

// DeletePendingUpload deletes an upload only while it is still pending (a
// complete racing the cleanup wins); it reports whether it deleted.
func DeletePendingUpload(ctx context.Context, q Queryer, id string) (bool, error) {
	n, err := Exec(ctx, q, `DELETE FROM uploads WHERE id = ? AND status = ?`, id, UploadPending)
	if err != nil {
		return false, fmt.Errorf("delete pending upload %s: %w", id, err)
	}
	return n > 0, nil
}
