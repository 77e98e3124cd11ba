package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// uploadImage answers POST /upload/image: one multipart "file", 202 with
// the upload in processing while the worker makes its variants.
func (s *Server) uploadImage(c *gin.Context) {
	ups, _, err := s.receive(c, store.UploadKindImage, 1)
	if err == nil {
		err = s.saveUploads(c.Request.Context(), ups...)
	}
	if err != nil {
		s.discard(c.Request.Context(), ups)
		renderError(c, err)
		return
	}
	s.renderUpload(c, http.StatusAccepted, ups[0])
}

// uploadImages answers POST /upload/images: up to MaxFiles "files" parts,
// all stored or none.
func (s *Server) uploadImages(c *gin.Context) {
	ups, _, err := s.receive(c, store.UploadKindImage, s.cfg.Uploads.MaxFiles)
	if err == nil {
		err = s.saveUploads(c.Request.Context(), ups...)
	}
	if err != nil {
		s.discard(c.Request.Context(), ups)
		renderError(c, err)
		return
	}
	out := make([]UploadResponse, 0, len(ups))
	for _, u := range ups {
		r, err := s.uploadJSON(c.Request.Context(), requestBase(c), u)
		if err != nil {
			renderError(c, blobError(err))
			return
		}
		out = append(out, r)
	}
	c.JSON(http.StatusAccepted, gin.H{"data": out})
}

// uploadDocument answers POST /upload/document: one "file", optionally
// attached to a booking ("booking_id": condition reports) or a dispute
// ("dispute_id": evidence) of which the caller is renter or owner.
func (s *Server) uploadDocument(c *gin.Context) {
	ups, att, err := s.receive(c, store.UploadKindDocument, 1)
	if err == nil {
		err = s.checkAttachment(c.Request.Context(), principal(c), att)
	}
	if err == nil {
		ups[0].BookingID, ups[0].DisputeID = optionalID(att.BookingID), optionalID(att.DisputeID)
		err = s.saveUploads(c.Request.Context(), ups...)
	}
	if err != nil {
		s.discard(c.Request.Context(), ups)
		renderError(c, err)
		return
	}
	s.renderUpload(c, http.StatusCreated, ups[0])
}

// discard deletes the objects of uploads a failed request stored.
func (s *Server) discard(ctx context.Context, ups []*store.Upload) {
	for _, u := range ups {
		if err := s.deps.Blobs.Delete(context.WithoutCancel(ctx), u.ObjectKey); err != nil {
			s.deps.Log.WarnContext(ctx, "could not delete the object of a refused upload", "key", u.ObjectKey, "err", err)
		}
	}
}

// receive streams a multipart body part by part: each file ("file" or
// "files") is sniffed and streamed into storage under its kind's limit;
// "booking_id" and "dispute_id" are read as short fields. On error every
// object already stored is deleted.
// uploadSlot takes one of the process's upload slots (Uploads.MaxInFlight),
// waiting up to Uploads.SlotWait: a burst of uploads queues briefly, a
// flood is told to come back (503 with Retry-After) instead of holding the
// process's memory.
func (s *Server) uploadSlot(ctx context.Context) (release func(), err error) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Uploads.SlotWait)
	defer cancel()
	if err := s.uploads.Acquire(wctx, 1); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, WithRetryAfter(portal.Errorf(portal.EUNAVAILABLE, "too many uploads in progress; try again shortly"), time.Second)
	}
	return func() { s.uploads.Release(1) }, nil
}

func (s *Server) receive(c *gin.Context, kind string, maxFiles int) (ups []*store.Upload, att attachment, err error) {
	ctx := c.Request.Context()
	limit := int64(maxFiles)*s.maxBytes(kind) + 1<<20 // parts' headers and fields
	if c.Request.ContentLength > limit {
		return nil, att, portal.Errorf(portal.ETOOLARGE, "request body over %d bytes", limit)
	}
	release, err := s.uploadSlot(ctx)
	if err != nil {
		return nil, att, err
	}
	defer release()
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return nil, att, portal.WrapError(portal.EUNSUPPORTED, err, "the body must be multipart/form-data")
	}
	defer func() {
		if err != nil {
			s.discard(ctx, ups)
			ups = nil
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ups, att, readError(err)
		}
		name := part.FormName()
		switch {
		case name == "file" || name == "files" || part.FileName() != "":
			if name != "file" && name != "files" {
				return ups, att, validation(name, "unexpected file field: send files as \"file\" or \"files\"")
			}
			if len(ups) == maxFiles {
				return ups, att, validation(name, fmt.Sprintf("at most %d files per request", maxFiles))
			}
			u, err := s.storeFile(ctx, principal(c).UserID, kind, part.FileName(), part)
			if err != nil {
				return ups, att, err
			}
			ups = append(ups, u)
		case name == "booking_id" || name == "dispute_id":
			if kind != store.UploadKindDocument {
				return ups, att, validation(name, "only documents attach to bookings and disputes")
			}
			v, err := io.ReadAll(io.LimitReader(part, 129))
			if err != nil {
				return ups, att, readError(err)
			}
			if len(v) > 128 {
				return ups, att, validation(name, "too long")
			}
			if name == "booking_id" {
				att.BookingID = strings.TrimSpace(string(v))
			} else {
				att.DisputeID = strings.TrimSpace(string(v))
			}
		}
		part.Close()
	}
	if len(ups) == 0 {
		field := "file"
		if maxFiles > 1 {
			field = "files"
		}
		return ups, att, validation(field, "a file is required")
	}
	return ups, att, nil
}

func validation(field, msg string) error {
	return &portal.Error{Code: portal.EVALIDATION, Message: "validation failed",
		Details: []portal.FieldError{{Field: field, Message: msg}}}
}

// presignRequest is the body of POST /upload/presigned-upload.
type presignRequest struct {
	Kind        string `json:"kind"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Filename    string `json:"filename"`
	BookingID   string `json:"booking_id"`
	DisputeID   string `json:"dispute_id"`
}

func (r *presignRequest) validate() error {
	var d []portal.FieldError
	if r.Kind == "" {
		r.Kind = store.UploadKindImage
	}
	if r.Kind != store.UploadKindImage && r.Kind != store.UploadKindDocument {
		d = append(d, portal.FieldError{Field: "kind", Message: "must be image or document"})
	}
	if r.ContentType == "" {
		d = append(d, portal.FieldError{Field: "content_type", Message: "is required"})
	}
	if r.Size <= 0 {
		d = append(d, portal.FieldError{Field: "size", Message: "must be a positive number of bytes"})
	}
	if r.Kind == store.UploadKindImage && (r.BookingID != "" || r.DisputeID != "") {
		d = append(d, portal.FieldError{Field: "booking_id", Message: "only documents attach to bookings and disputes"})
	}
	if len(d) > 0 {
		return &portal.Error{Code: portal.EVALIDATION, Message: "validation failed", Details: d}
	}
	return nil
}

// presignUpload answers POST /upload/presigned-upload: a pending record and
// a PUT the client sends straight to storage, signed for exactly the
// declared content type and size.
func (s *Server) presignUpload(c *gin.Context) {
	var req presignRequest
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		renderError(c, portal.WrapError(portal.EINVALID, err, "malformed JSON body"))
		return
	}
	if err := req.validate(); err != nil {
		renderError(c, err)
		return
	}
	ct, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(req.ContentType)), ";")
	if !allowedTypes[req.Kind][ct] {
		renderError(c, portal.Errorf(portal.EUNSUPPORTED, "content_type must be one of %s", allowedList(req.Kind)))
		return
	}
	if limit := s.maxBytes(req.Kind); req.Size > limit {
		renderError(c, portal.Errorf(portal.ETOOLARGE, "a %s may be at most %d bytes", req.Kind, limit))
		return
	}
	ctx := c.Request.Context()
	p := principal(c)
	att := attachment{BookingID: req.BookingID, DisputeID: req.DisputeID}
	if err := s.checkAttachment(ctx, p, att); err != nil {
		renderError(c, err)
		return
	}
	u := newUpload(p.UserID, req.Kind, ct, req.Filename)
	u.Status, u.DeclaredSize = store.UploadPending, &req.Size
	u.BookingID, u.DisputeID = optionalID(att.BookingID), optionalID(att.DisputeID)
	if err := store.CreateUpload(ctx, s.deps.DB, u); err != nil {
		renderError(c, err)
		return
	}
	put, err := s.deps.Blobs.PresignPut(ctx, u.ObjectKey, s.cfg.Uploads.PresignTTL, blob.PutConstraints{ContentType: ct, Size: req.Size})
	if err != nil {
		_ = store.DeleteUpload(context.WithoutCancel(ctx), s.deps.DB, u.ID)
		renderError(c, blobError(err))
		return
	}
	put.URL = absolute(requestBase(c), put.URL)
	body, err := s.uploadJSON(ctx, requestBase(c), u)
	if err != nil {
		renderError(c, blobError(err))
		return
	}
	c.JSON(http.StatusCreated, gin.H{"upload": body, "presigned": put})
}

// completeUpload answers POST /upload/:id/complete: the object must exist
// with exactly the declared size and a sniffed type equal to the declared
// one; then the upload moves on (images to processing, with their
// thumbnail task). A mismatch fails the upload and deletes the object.
// Completing again answers the current state.
func (s *Server) completeUpload(c *gin.Context) {
	u, err := s.visibleUpload(c)
	if err != nil {
		renderError(c, err)
		return
	}
	if u.Status != store.UploadPending {
		s.renderUpload(c, http.StatusOK, u)
		return
	}
	ctx := c.Request.Context()
	ct, size, err := s.verifyObject(ctx, u)
	if err != nil {
		if code := portal.ErrorCode(err); code == portal.ETOOLARGE || code == portal.EUNSUPPORTED || code == portal.EUNPROCESSABLE {
			s.refuseObject(ctx, u, portal.ErrorMessage(err))
		}
		renderError(c, err)
		return
	}
	to, status := store.UploadReady, http.StatusOK
	if u.Kind == store.UploadKindImage {
		to, status = store.UploadProcessing, http.StatusAccepted
	}
	var msgs []tasks.Message
	err = s.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		msgs = msgs[:0]
		if err := store.CompleteUpload(ctx, tx, u.ID, to, ct, size); err != nil {
			return err
		}
		if to == store.UploadProcessing {
			m, err := thumbnailTask(ctx, tx, u.ID)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	switch {
	case err == nil:
		// Only what committed is published: an attempt that failed (a
		// concurrent complete won, or the commit itself was refused) wrote
		// no outbox row, and its task would thumbnail an upload whose type
		// and size were never saved.
		s.publish(ctx, msgs...)
	case portal.ErrorCode(err) != portal.ECONFLICT:
		renderError(c, err)
		return
	}
	// Done here, or by a concurrent complete that won: answer the result.
	conflict := err
	if u, err = store.GetUpload(ctx, s.deps.DB, u.ID); err != nil {
		renderError(c, err)
		return
	}
	if conflict != nil && u.Status == store.UploadPending {
		// Nobody completed it (the commit was refused): say so, the
		// client completes it again.
		renderError(c, conflict)
		return
	}
	s.renderUpload(c, status, u)
}

// verifyObject checks the stored object against the pending upload and
// returns its sniffed type and size.
func (s *Server) verifyObject(ctx context.Context, u *store.Upload) (string, int64, error) {
	obj, err := s.deps.Blobs.Head(ctx, u.ObjectKey)
	if errors.Is(err, blob.ErrNotFound) {
		return "", 0, portal.Errorf(portal.ECONFLICT, "nothing has been uploaded yet: PUT the file to the presigned URL first")
	}
	if err != nil {
		return "", 0, blobError(err)
	}
	declared := int64(0)
	if u.DeclaredSize != nil {
		declared = *u.DeclaredSize
	}
	if obj.Size > declared || obj.Size > s.maxBytes(u.Kind) {
		return "", 0, portal.Errorf(portal.ETOOLARGE, "the stored file is %d bytes, %d were declared", obj.Size, declared)
	}
	if obj.Size != declared {
		return "", 0, portal.Errorf(portal.EUNPROCESSABLE, "the stored file is %d bytes, %d were declared", obj.Size, declared)
	}
	body, _, err := s.deps.Blobs.Get(ctx, u.ObjectKey)
	if err != nil {
		return "", 0, blobError(err)
	}
	head, err := io.ReadAll(io.LimitReader(body, sniffLen))
	body.Close()
	if err != nil {
		return "", 0, blobError(err)
	}
	ct := sniff(head)
	if ct != u.ContentType {
		got := ct
		if got == "" {
			got = "not an allowed type"
		}
		return "", 0, portal.Errorf(portal.EUNSUPPORTED, "the stored file is %s, %s was declared", got, u.ContentType)
	}
	if err := s.checkPixels(u.Kind, ct, head); err != nil {
		return "", 0, err
	}
	return ct, obj.Size, nil
}

// refuseObject fails a pending upload whose object did not match and
// deletes the object.
func (s *Server) refuseObject(ctx context.Context, u *store.Upload, reason string) {
	ctx = context.WithoutCancel(ctx)
	if err := s.deps.Blobs.Delete(ctx, u.ObjectKey); err != nil {
		s.deps.Log.WarnContext(ctx, "could not delete a refused object", "key", u.ObjectKey, "err", err)
	}
	if err := store.FailUpload(ctx, s.deps.DB, u.ID, reason); err != nil {
		s.deps.Log.WarnContext(ctx, "could not mark a refused upload failed", "upload_id", u.ID, "err", err)
	}
}
