package worker

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// stuckGiveUp is how many StuckAfter periods an upload may spend in
// processing before the sweeper fails it.
const stuckGiveUp = 6

// sweepStuckUploads enqueues again the thumbnail task of uploads that have
// been processing for longer than StuckAfter (a task lost with a flushed
// Redis, or a worker that died mid-task). The task ID is the upload's, so
// one still queued or running makes this a no-op; the upload is touched so
// that it waits a full period before the next look. An upload still
// processing stuckGiveUp periods after its creation is failed.
func (w *Worker) sweepStuckUploads(ctx context.Context) error {
	stuck, err := store.UploadsInStatus(ctx, w.deps.DB, store.UploadProcessing, time.Now().Add(-w.cfg.Images.StuckAfter), 200)
	if err != nil {
		return err
	}
	giveUp := time.Now().Add(-stuckGiveUp * w.cfg.Images.StuckAfter)
	for _, u := range stuck {
		if u.CreatedAt.Before(giveUp) {
			// Re-enqueued several times already (or its task was archived):
			// tell the user instead of trying forever.
			if err := w.failUpload(ctx, u.ID, "processing did not finish; upload the image again"); err != nil {
				return err
			}
			continue
		}
		msg, err := tasks.Encode(tasks.Thumbnail{UploadID: u.ID})
		if err != nil {
			return err
		}
		w.deps.Relay.Publish(ctx, msg)
		if err := store.TouchUpload(ctx, w.deps.DB, u.ID); err != nil {
			return err
		}
	}
	if len(stuck) > 0 {
		w.log.InfoContext(ctx, "sweeper re-enqueued stuck uploads", "uploads", len(stuck))
	}
	return nil
}

// cleanupPendingUploads deletes presigned uploads never completed within
// PendingTTL, and whatever the client may have PUT for them. The record
// goes first, only if still pending, so a complete racing the cleanup keeps
// its object.
func (w *Worker) cleanupPendingUploads(ctx context.Context) (int, error) {
	old, err := store.UploadsInStatus(ctx, w.deps.DB, store.UploadPending, time.Now().Add(-w.cfg.Images.PendingTTL), 500)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range old {
		deleted, err := store.DeletePendingUpload(ctx, w.deps.DB, u.ID)
		if err != nil {
			return n, err
		}
		if !deleted {
			continue
		}
		n++
		keys := []string{u.ObjectKey}
		for _, s := range w.cfg.Images.Specs {
			keys = append(keys, VariantKey(u.ObjectKey, s.Name, "image/jpeg"), VariantKey(u.ObjectKey, s.Name, "image/png"))
		}
		if err := w.deps.Blobs.Delete(ctx, keys...); err != nil {
			return n, fmt.Errorf("delete objects of abandoned upload %s (%s): %w", u.ID, path.Dir(u.ObjectKey), err)
		}
	}
	if n > 0 {
		w.log.InfoContext(ctx, "cleanup deleted abandoned uploads", "uploads", n)
	}
	return n, nil
}
