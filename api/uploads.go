package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// UploadConfig are the limits and lifetimes of uploads.
type UploadConfig struct {
	MaxImageBytes    int64 // per image file
	MaxDocumentBytes int64 // per document file
	MaxFiles         int   // files per POST /upload/images
	MaxImagePixels   int64 // refused at upload when the header says more
	// URLTTL is the lifetime of the signed GET links the API hands out.
	URLTTL time.Duration
	// PresignTTL is the lifetime of a presigned PUT.
	PresignTTL time.Duration
	// MaxInFlight bounds the uploads this process receives at once (each
	// holds up to a few part buffers of its object on its way to storage);
	// one over it waits up to SlotWait, then is answered 503 with
	// Retry-After. Presigned uploads go straight to storage and do not
	// count.
	MaxInFlight int
	SlotWait    time.Duration
}

func (c *UploadConfig) defaults() {
	if c.MaxImageBytes <= 0 {
		c.MaxImageBytes = 20 << 20
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = 25 << 20
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = 10
	}
	if c.MaxImagePixels <= 0 {
		c.MaxImagePixels = 50_000_000
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 16
	}
	if c.SlotWait <= 0 {
		c.SlotWait = 2 * time.Second
	}
	if c.URLTTL <= 0 {
		c.URLTTL = 15 * time.Minute
	}
	if c.PresignTTL <= 0 {
		c.PresignTTL = 15 * time.Minute
	}
}

// BlobStore is the part of blob.Store the API uses.
type BlobStore interface {
	Put(ctx context.Context, key string, r io.Reader, opt blob.PutOptions) (blob.Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
	Head(ctx context.Context, key string) (blob.Object, error)
	Delete(ctx context.Context, keys ...string) error
	PresignGet(ctx context.Context, key string, ttl time.Duration, opt blob.GetURLOptions) (string, error)
	PresignPut(ctx context.Context, key string, ttl time.Duration, c blob.PutConstraints) (blob.PresignedRequest, error)
	PublicURL(key string) string
}

// Cache headers: originals are private (signed links only); variants are
// immutable under their key.
const (
	cacheOriginal = "private, max-age=0, no-transform"
	cacheVariant  = "public, max-age=31536000, immutable"
)

// VariantNames are the variants an image upload gets.
var VariantNames = []string{"thumb", "medium", "large"}

// UploadKeys returns every object key an upload may have: the original and
// each variant in either format. The worker writes the same keys.
func UploadKeys(u *store.Upload) []string {
	keys := []string{u.ObjectKey}
	dir := path.Dir(u.ObjectKey)
	for _, n := range VariantNames {
		keys = append(keys, dir+"/"+n+".jpg", dir+"/"+n+".png")
	}
	return keys
}

// UploadResponse is the JSON of an upload.
type UploadResponse struct {
	ID            string                     `json:"id"`
	OwnerID       string                     `json:"owner_id"`
	Kind          string                     `json:"kind"`
	Status        string                     `json:"status"`
	ContentType   string                     `json:"content_type"`
	Size          int64                      `json:"size"`
	Filename      string                     `json:"filename,omitempty"`
	Width         *int                       `json:"width,omitempty"`
	Height        *int                       `json:"height,omitempty"`
	URL           *string                    `json:"url"`
	Variants      map[string]VariantResponse `json:"variants"`
	FailureReason *string                    `json:"failure_reason"`
	BookingID     *string                    `json:"booking_id,omitempty"`
	DisputeID     *string                    `json:"dispute_id,omitempty"`
	CreatedAt     time.Time                  `json:"created_at"`
}

// VariantResponse is one variant: its pixel size and where to fetch it.
type VariantResponse struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	URL    string `json:"url"`
}

// uploadJSON renders an upload with its links: the original through a
// short-lived signed GET (never public: documents are private), each
// variant through the CDN when one is configured, else a signed GET. base
// (scheme://host of the request) makes the local store's root-relative
// links absolute. Listings render their photos with it.
func (s *Server) uploadJSON(ctx context.Context, base string, u *store.Upload) (UploadResponse, error) {
	r := UploadResponse{ID: u.ID, OwnerID: u.OwnerID, Kind: u.Kind, Status: u.Status, ContentType: u.ContentType,
		Size: u.Size, Filename: u.OriginalName, Width: u.Width, Height: u.Height, Variants: map[string]VariantResponse{},
		BookingID: u.BookingID, DisputeID: u.DisputeID, CreatedAt: u.CreatedAt.UTC()}
	if u.Status == store.UploadPending && u.DeclaredSize != nil {
		r.Size = *u.DeclaredSize
	}
	if u.FailureReason != "" {
		r.FailureReason = &u.FailureReason
	}
	if u.Status != store.UploadPending && u.Status != store.UploadFailed {
		link, err := s.deps.Blobs.PresignGet(ctx, u.ObjectKey, s.cfg.Uploads.URLTTL, blob.GetURLOptions{ContentDisposition: disposition(u)})
		if err != nil {
			return r, fmt.Errorf("sign upload %s: %w", u.ID, err)
		}
		link = absolute(base, link)
		r.URL = &link
	}
	var err error
	r.Variants, err = s.variantLinks(ctx, base, u)
	return r, err
}

// variantLinks returns the links of an upload's variants: through the CDN
// when one is configured, else signed GETs valid UPLOAD_URL_TTL.
func (s *Server) variantLinks(ctx context.Context, base string, u *store.Upload) (map[string]VariantResponse, error) {
	out := make(map[string]VariantResponse, len(u.Variants))
	for _, v := range u.Variants {
		link := s.deps.Blobs.PublicURL(v.ObjectKey)
		if link == "" {
			var err error
			if link, err = s.deps.Blobs.PresignGet(ctx, v.ObjectKey, s.cfg.Uploads.URLTTL, blob.GetURLOptions{}); err != nil {
				return nil, fmt.Errorf("sign variant %s of %s: %w", v.Name, u.ID, err)
			}
		}
		out[v.Name] = VariantResponse{Width: v.Width, Height: v.Height, URL: absolute(base, link)}
	}
	return out, nil
}

// linkPhotos adds the variant links of the ready photos of listings:
// whoever may see a listing may see its pictures. Only the variants — the
// original, re-encoded in none of them, may carry the camera's metadata
// (place, device) and stays its owner's, at GET /upload/:id. Links are an
// extra: a listing is answered without them (and the failure logged) when
// they cannot be made, never refused — a create or an update has
// committed by then.
func (s *Server) linkPhotos(ctx context.Context, base string, views []ListingView) {
	var ids []string
	for _, v := range views {
		for _, p := range v.Photos {
			if p.Status == store.UploadReady {
				ids = append(ids, p.ID)
			}
		}
	}
	if len(ids) == 0 || s.deps.Blobs == nil {
		return
	}
	ups, err := store.UploadsByIDs(ctx, s.deps.DB, ids)
	if err != nil {
		s.deps.Log.WarnContext(ctx, "listing photos shown without links", "err", err)
		return
	}
	for i := range views {
		for j := range views[i].Photos {
			p := &views[i].Photos[j]
			u := ups[p.ID]
			if u == nil || u.Status != store.UploadReady || u.Kind != store.UploadKindImage || len(u.Variants) == 0 {
				continue
			}
			if p.Variants, err = s.variantLinks(ctx, base, u); err != nil {
				s.deps.Log.WarnContext(ctx, "listing photo shown without links", "upload_id", u.ID, "err", err)
			}
		}
	}
}

// disposition is how a browser should treat the original: documents are
// always downloaded, never rendered in our origin.
func disposition(u *store.Upload) string {
	if u.Kind != store.UploadKindDocument {
		return "inline"
	}
	name := u.ID + extensions[u.ContentType]
	return mime.FormatMediaType("attachment", map[string]string{"filename": name})
}

func absolute(base, link string) string {
	if strings.HasPrefix(link, "/") && base != "" {
		return base + link
	}
	return link
}

// requestBase is the scheme and host the client used.
func requestBase(c *gin.Context) string {
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host
}

// visibleUpload loads an upload the caller may see: its owner or an admin.
// Anyone else gets ENOTFOUND, as for an upload that does not exist.
func (s *Server) visibleUpload(c *gin.Context) (*store.Upload, error) {
	u, err := store.GetUpload(c.Request.Context(), s.deps.DB, c.Param("id"))
	if err != nil {
		if portal.ErrorCode(err) == portal.ENOTFOUND {
			return nil, portal.WrapError(portal.ENOTFOUND, err, "upload not found")
		}
		return nil, err
	}
	if p := principal(c); u.OwnerID != p.UserID && !p.IsAdmin() {
		return nil, portal.Errorf(portal.ENOTFOUND, "upload not found")
	}
	return u, nil
}

// getUpload answers GET /upload/:id.
func (s *Server) getUpload(c *gin.Context) {
	u, err := s.visibleUpload(c)
	if err != nil {
		renderError(c, err)
		return
	}
	s.renderUpload(c, http.StatusOK, u)
}

func (s *Server) renderUpload(c *gin.Context, status int, u *store.Upload) {
	body, err := s.uploadJSON(c.Request.Context(), requestBase(c), u)
	if err != nil {
		renderError(c, blobError(err))
		return
	}
	c.JSON(status, body)
}

// deleteUpload answers DELETE /upload/:id: the objects first (a failure
// leaves the record, so the client can retry), then the record.
func (s *Server) deleteUpload(c *gin.Context) {
	u, err := s.visibleUpload(c)
	if err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	if err := s.deps.Blobs.Delete(ctx, UploadKeys(u)...); err != nil {
		renderError(c, blobError(err))
		return
	}
	if err := store.DeleteUpload(ctx, s.deps.DB, u.ID); err != nil {
		renderError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// signedURL answers GET /upload/:id/signed-url.
func (s *Server) signedURL(c *gin.Context) {
	u, err := s.visibleUpload(c)
	if err != nil {
		renderError(c, err)
		return
	}
	if u.Status == store.UploadPending {
		renderError(c, portal.Errorf(portal.ECONFLICT, "the upload is not complete yet"))
		return
	}
	ttl := s.cfg.Uploads.URLTTL
	link, err := s.deps.Blobs.PresignGet(c.Request.Context(), u.ObjectKey, ttl, blob.GetURLOptions{ContentDisposition: disposition(u)})
	if err != nil {
		renderError(c, blobError(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"url": absolute(requestBase(c), link), "expires_at": time.Now().Add(ttl).UTC().Truncate(time.Second)})
}

// blobError maps storage failures: a missing object is a conflict between
// the record and storage; anything else means storage is unavailable.
func blobError(err error) error {
	var pe *portal.Error
	switch {
	case errors.As(err, &pe):
		return err
	case errors.Is(err, blob.ErrNotFound):
		return portal.WrapError(portal.ECONFLICT, err, "the stored object is missing")
	case errors.Is(err, context.DeadlineExceeded):
		return portal.WrapError(portal.EUNAVAILABLE, err, "storage timed out, try again")
	case errors.Is(err, context.Canceled):
		return portal.WrapError(portal.EUNAVAILABLE, err, "request cancelled")
	}
	return portal.WrapError(portal.EUNAVAILABLE, err, "storage unavailable, try again")
}

// attachment is what a document upload is attached to.
type attachment struct {
	BookingID string
	DisputeID string
}

// checkAttachment verifies the caller may attach to the booking or dispute:
// its renter or owner, or an admin. Anything else is ENOTFOUND.
func (s *Server) checkAttachment(ctx context.Context, p Principal, a attachment) error {
	bookingID := a.BookingID
	if a.DisputeID != "" {
		id, err := store.DisputeBookingID(ctx, s.deps.DB, a.DisputeID)
		if err != nil {
			if portal.ErrorCode(err) == portal.ENOTFOUND {
				return portal.Errorf(portal.ENOTFOUND, "dispute not found")
			}
			return err
		}
		if bookingID != "" && bookingID != id {
			return portal.Errorf(portal.EINVALID, "the dispute belongs to another booking")
		}
		bookingID = id
	}
	if bookingID == "" {
		return nil
	}
	b, err := store.GetBooking(ctx, s.deps.DB, bookingID)
	if err != nil {
		if portal.ErrorCode(err) == portal.ENOTFOUND {
			return portal.Errorf(portal.ENOTFOUND, "booking not found")
		}
		return err
	}
	if b.RenterID != p.UserID && b.OwnerID != p.UserID && !p.IsAdmin() {
		return portal.Errorf(portal.ENOTFOUND, "booking not found")
	}
	return nil
}

func optionalID(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// newUpload returns the record of a new upload with its server-chosen key:
// uploads/<owner>/<id>/original.<ext>. Nothing from the client enters a key.
func newUpload(owner, kind, contentType, filename string) *store.Upload {
	id := store.NewID()
	return &store.Upload{ID: id, OwnerID: owner, Kind: kind, ContentType: contentType,
		ObjectKey:    "uploads/" + owner + "/" + id + "/original" + extensions[contentType],
		OriginalName: cleanName(filename)}
}

// cleanName keeps a client's file name for display only: its base name,
// printable, at most 200 bytes.
func cleanName(name string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "." || name == "/" {
		return ""
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	for len(name) > 200 {
		name = name[:len(name)-1]
	}
	return strings.ToValidUTF8(name, "")
}

// saveUploads writes the records (and for images in processing, their
// thumbnail task) in one transaction, then relays the tasks.
func (s *Server) saveUploads(ctx context.Context, uploads ...*store.Upload) error {
	var msgs []tasks.Message
	err := s.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		msgs = msgs[:0]
		for _, u := range uploads {
			if err := store.CreateUpload(ctx, tx, u); err != nil {
				return err
			}
			if u.Kind == store.UploadKindImage && u.Status == store.UploadProcessing {
				m, err := thumbnailTask(ctx, tx, u.ID)
				if err != nil {
					return err
				}
				msgs = append(msgs, m)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.publish(ctx, msgs...)
	for _, u := range uploads {
		s.deps.Log.InfoContext(ctx, "upload stored", "upload_id", u.ID, "owner_id", u.OwnerID, "kind", u.Kind,
			"content_type", u.ContentType, "size", u.Size, "status", u.Status)
	}
	return nil
}

// thumbnailTask writes the image:thumbnail task of an upload to the outbox.
func thumbnailTask(ctx context.Context, tx *sqlx.Tx, uploadID string) (tasks.Message, error) {
	m, err := tasks.Encode(tasks.Thumbnail{UploadID: uploadID})
	if err != nil {
		return m, err
	}
	return m, store.AddOutbox(ctx, tx, store.OutboxMessage(m))
}
