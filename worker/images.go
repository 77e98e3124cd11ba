package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/blob"
	domainevent "github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/imaging"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// ImageConfig tunes the thumbnail worker.
type ImageConfig struct {
	// MaxPixels refuses images whose header declares more (0: 50 MP).
	MaxPixels int64
	// Quality is the JPEG quality of the variants (0: 85).
	Quality int
	// Specs are the variants (nil: thumb 150, medium 600, large 1200).
	Specs []imaging.Spec
	// MemoryBudget bounds the bytes image tasks hold at once (0: 512 MiB):
	// each task reserves its estimate (imaging.EstimateBytes, from the
	// header) before it downloads and decodes.
	MemoryBudget int64
	// Concurrency is how many image tasks run at once, on their own asynq
	// server for the images queue (0: imaging.Slots of the budget).
	Concurrency int
	// PendingTTL is how long a presigned upload may stay pending before
	// maintenance:cleanup deletes it (0: 24h).
	PendingTTL time.Duration
	// StuckAfter is how long an upload may stay processing before the
	// sweeper enqueues its task again (0: 10 minutes).
	StuckAfter time.Duration
}

func (c *ImageConfig) defaults() {
	if c.MaxPixels <= 0 {
		c.MaxPixels = 50_000_000
	}
	if c.Quality <= 0 || c.Quality > 100 {
		c.Quality = 85
	}
	if len(c.Specs) == 0 {
		c.Specs = imaging.DefaultSpecs
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = 512 << 20
	}
	if c.Concurrency <= 0 {
		c.Concurrency = imaging.Slots(c.MemoryBudget, c.largestEdge())
	}
	if c.PendingTTL <= 0 {
		c.PendingTTL = 24 * time.Hour
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = 10 * time.Minute
	}
}

func (c *ImageConfig) largestEdge() int {
	le := 0
	for _, s := range c.Specs {
		le = max(le, s.LongEdge)
	}
	if le == 0 {
		le = 1200
	}
	return le
}

// BlobStore is the part of blob.Store the worker uses.
type BlobStore interface {
	Put(ctx context.Context, key string, r io.Reader, opt blob.PutOptions) (blob.Object, error)
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
	Delete(ctx context.Context, keys ...string) error
}

// cacheVariant: a variant never changes under its key.
const cacheVariant = "public, max-age=31536000, immutable"

// maxOriginalBytes bounds what the worker reads into memory whatever the
// store says (the API already limits uploads far below it).
const maxOriginalBytes = 256 << 20

// thumbnail makes an image upload's variants. It is idempotent: variants go
// to keys derived from the upload's (uploads/<owner>/<id>/<name>.jpg|png),
// so a re-run overwrites them, and the status only moves pending|processing
// → ready|failed. An image that will never decode fails the upload with a
// reason and is not retried; a storage error is retried, and fails the
// upload on the last attempt.
func (w *Worker) thumbnail(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.Thumbnail](t)
	if err != nil {
		return err
	}
	db := w.deps.DB
	u, err := store.GetUpload(ctx, db, p.UploadID)
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		return nil // deleted since: nothing to do
	}
	if err != nil {
		return err
	}
	if u.Kind != store.UploadKindImage || u.Status == store.UploadReady || u.Status == store.UploadFailed {
		return nil
	}
	if err := store.MarkUploadProcessing(ctx, db, u.ID); err != nil {
		return err
	}
	res, err := w.makeVariants(ctx, u)
	if imaging.IsPermanent(err) || errors.Is(err, blob.ErrNotFound) {
		return w.failUpload(ctx, u.ID, failureReason(err, w.cfg.Images.MaxPixels))
	}
	if err != nil {
		return w.retryOrFail(ctx, u.ID, err)
	}
	variants, err := w.storeVariants(ctx, u, res)
	if err != nil {
		return w.retryOrFail(ctx, u.ID, err)
	}
	width, height := res.Info.Width, res.Info.Height
	if res.Info.Orientation >= 5 {
		width, height = height, width
	}
	var msgs []tasks.Message
	err = db.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := store.FinishUpload(ctx, tx, u.ID, width, height, variants); err != nil {
			return err
		}
		var err error
		msgs, err = store.RecordUploadEvent(ctx, tx, domainevent.UploadReady, store.UploadFacts{ID: u.ID, OwnerID: u.OwnerID, Kind: u.Kind})
		return err
	})
	switch portal.ErrorCode(err) {
	case "":
		w.deps.Relay.Publish(ctx, msgs...)
		w.log.InfoContext(ctx, "upload variants ready", "upload_id", u.ID, "width", width, "height", height)
		return nil
	case portal.ENOTFOUND:
		// Deleted while we worked: take back what we wrote.
		keys := make([]string, len(variants))
		for i, v := range variants {
			keys[i] = v.ObjectKey
		}
		return w.deps.Blobs.Delete(ctx, keys...)
	case portal.ECONFLICT:
		return nil // a concurrent run finished it
	}
	return err
}

// makeVariants reads the header first (refusing a decompression bomb before
// any pixel is decoded), reserves the image's memory estimate from the
// limiter, then downloads, decodes once and scales.
func (w *Worker) makeVariants(ctx context.Context, u *store.Upload) (*imaging.Result, error) {
	body, obj, err := w.deps.Blobs.Get(ctx, u.ObjectKey)
	if err != nil {
		return nil, err
	}
	info, err := imaging.Probe(body)
	body.Close()
	if err != nil {
		return nil, err
	}
	if info.Pixels() > w.cfg.Images.MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d", imaging.ErrTooManyPixels, info.Width, info.Height)
	}
	release, err := w.images.Acquire(ctx, imaging.EstimateBytes(info, obj.Size, w.cfg.Images.largestEdge()))
	if err != nil {
		return nil, err
	}
	defer release()
	body, obj, err = w.deps.Blobs.Get(ctx, u.ObjectKey)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var buf bytes.Buffer
	if obj.Size > 0 && obj.Size <= maxOriginalBytes {
		buf.Grow(int(obj.Size))
	}
	if _, err := io.Copy(&buf, io.LimitReader(body, maxOriginalBytes)); err != nil {
		return nil, fmt.Errorf("read %s: %w", u.ObjectKey, err)
	}
	return imaging.Process(buf.Bytes(), imaging.Options{MaxPixels: w.cfg.Images.MaxPixels,
		Specs: w.cfg.Images.Specs, Quality: w.cfg.Images.Quality})
}

// VariantKey is where an upload's variant lives: beside the original, named
// for the variant, with the extension of its format.
func VariantKey(originalKey, name, contentType string) string {
	ext := ".jpg"
	if contentType == "image/png" {
		ext = ".png"
	}
	return path.Dir(originalKey) + "/" + name + ext
}

func (w *Worker) storeVariants(ctx context.Context, u *store.Upload, res *imaging.Result) ([]store.UploadVariant, error) {
	out := make([]store.UploadVariant, 0, len(res.Variants))
	for _, v := range res.Variants {
		key := VariantKey(u.ObjectKey, v.Name, v.ContentType)
		if _, err := w.deps.Blobs.Put(ctx, key, bytes.NewReader(v.Data), blob.PutOptions{ContentType: v.ContentType,
			CacheControl: cacheVariant, Size: int64(len(v.Data))}); err != nil {
			return nil, fmt.Errorf("store variant %s of %s: %w", v.Name, u.ID, err)
		}
		out = append(out, store.UploadVariant{UploadID: u.ID, Name: v.Name, ObjectKey: key, ContentType: v.ContentType,
			Width: v.Width, Height: v.Height, Size: int64(len(v.Data))})
	}
	return out, nil
}

// failUpload records a permanent failure; the task then ends without error,
// so a corrupt image costs one attempt, not a retry storm.
func (w *Worker) failUpload(ctx context.Context, id, reason string) error {
	err := w.failUploadNotify(ctx, id, reason)
	if err != nil && portal.ErrorCode(err) != portal.ENOTFOUND && portal.ErrorCode(err) != portal.ECONFLICT {
		return err
	}
	w.log.InfoContext(ctx, "upload failed", "upload_id", id, "reason", reason)
	return nil
}

// retryOrFail returns a transient error for asynq to retry, after failing
// the upload if this was the last attempt.
func (w *Worker) retryOrFail(ctx context.Context, id string, err error) error {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	if ok1 && ok2 && retried >= maxRetry {
		if ferr := w.failUploadNotify(context.WithoutCancel(ctx), id, "storage was unavailable; upload the image again"); ferr != nil {
			w.log.WarnContext(ctx, "could not fail upload after its last attempt", "upload_id", id, "err", ferr)
		}
	}
	return err
}

// failUploadNotify marks an upload failed and, in the same transaction,
// records upload.failed so its owner is told.
func (w *Worker) failUploadNotify(ctx context.Context, id, reason string) error {
	var msgs []tasks.Message
	err := w.deps.DB.InTx(ctx, func(tx *sqlx.Tx) error {
		if err := store.FailUpload(ctx, tx, id, reason); err != nil {
			return err
		}
		u, err := store.GetUpload(ctx, tx, id)
		if err != nil {
			return err
		}
		msgs, err = store.RecordUploadEvent(ctx, tx, domainevent.UploadFailed,
			store.UploadFacts{ID: u.ID, OwnerID: u.OwnerID, Kind: u.Kind, Reason: reason})
		return err
	})
	if err == nil {
		w.deps.Relay.Publish(ctx, msgs...)
	}
	return err
}

// failureReason is the message a user reads on a failed upload.
func failureReason(err error, maxPixels int64) string {
	switch {
	case errors.Is(err, imaging.ErrTooManyPixels):
		return fmt.Sprintf("the image has more than %d pixels", maxPixels)
	case errors.Is(err, imaging.ErrUnsupported):
		return "not a supported image (JPEG, PNG, GIF or WebP)"
	case errors.Is(err, imaging.ErrCorrupt):
		return "the image is corrupt or truncated"
	case errors.Is(err, blob.ErrNotFound):
		return "the uploaded file is missing"
	}
	return "the image could not be processed"
}

// imageServer is the asynq server of the images queue: its own
// concurrency, so image tasks waiting for memory never hold the slots of
// payments and bookings, and the main server does not take image tasks.
func (w *Worker) imageServer(rc redis.UniversalClient, base asynq.Config) *asynq.Server {
	base.Concurrency = w.cfg.Images.Concurrency
	base.Queues = map[string]int{tasks.QueueImages: 1}
	// A thumbnail takes a few hundred milliseconds: picking it up 50 ms
	// later on average is not worth polling Redis a hundred times a second
	// beside the main server.
	base.TaskCheckInterval = max(base.TaskCheckInterval, relaxedCheckInterval)
	return asynq.NewServerFromRedisClient(rc, base)
}

// relaxedCheckInterval is the idle polling interval (at least) of the
// servers whose pickup latency nobody waits on: the image server, and the
// main queues' second and further fetchers (mainServers).
const relaxedCheckInterval = 100 * time.Millisecond

// mainQueues are the queues of the main server: all but images.
func mainQueues() map[string]int {
	q := map[string]int{}
	for name, weight := range tasks.QueueWeights {
		if name != tasks.QueueImages {
			q[name] = weight
		}
	}
	return q
}
