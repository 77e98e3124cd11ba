package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/imaging/imagingtest"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

type imageEnv struct {
	t       testing.TB
	w       *Worker
	db      *store.DB
	blobs   BlobStore
	redis   testkit.Redis
	inspect *asynq.Inspector
	owner   string
}

func newImageEnv(t testing.TB, backend string, cfg ImageConfig) *imageEnv {
	t.Helper()
	e := &imageEnv{t: t, redis: testkit.RedisDB(t)}
	if backend == "postgres+s3" {
		e.db = testkit.Postgres(t)
		e.blobs = testkit.S3Bucket(t, blob.S3Config{})
	} else {
		e.db = testkit.SQLite(t)
		l, err := blob.NewLocal(t.TempDir(), []byte("local-signing-key-for-tests-0123"), "")
		if err != nil {
			t.Fatal(err)
		}
		e.blobs = l
	}
	e.inspect = asynq.NewInspectorFromRedisClient(e.redis.Client)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rl := relay.New(e.db, asynq.NewClientFromRedisClient(e.redis.Client), log)
	e.w = New(Config{Concurrency: 2, TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		OutboxGrace: time.Second, Images: cfg}, Deps{Log: log, DB: e.db, Relay: rl, Blobs: e.blobs})
	e.owner = store.NewID()
	now := store.Now()
	if _, err := store.Exec(context.Background(), e.db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		VALUES (?, ?, 'x', 'Owner', 'owner', ?, ?)`, e.owner, e.owner+"@example.com", now, now); err != nil {
		t.Fatal(err)
	}
	return e
}

// upload stores data as an image upload's original in the given status.
func (e *imageEnv) upload(data []byte, status string) *store.Upload {
	e.t.Helper()
	u := &store.Upload{ID: store.NewID(), OwnerID: e.owner, Kind: store.UploadKindImage, ContentType: "image/jpeg",
		Size: int64(len(data)), Status: status}
	u.ObjectKey = "uploads/" + e.owner + "/" + u.ID + "/original.jpg"
	if data != nil {
		if _, err := e.blobs.Put(context.Background(), u.ObjectKey, bytes.NewReader(data), blob.PutOptions{ContentType: "image/jpeg"}); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := store.CreateUpload(context.Background(), e.db, u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *imageEnv) run(id string) error {
	b, _ := json.Marshal(tasks.Thumbnail{UploadID: id})
	return e.w.thumbnail(context.Background(), asynq.NewTask(tasks.TypeImageThumbnail, b))
}

func (e *imageEnv) get(id string) *store.Upload {
	e.t.Helper()
	u, err := store.GetUpload(context.Background(), e.db, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *imageEnv) object(key string) ([]byte, blob.Object) {
	e.t.Helper()
	body, obj, err := e.blobs.Get(context.Background(), key)
	if err != nil {
		e.t.Fatalf("object %s: %v", key, err)
	}
	defer body.Close()
	b, _ := io.ReadAll(body)
	return b, obj
}

// rotatedPhoto is a landscape 1600×1200 picture stored as a camera held
// upright would store it with EXIF orientation 6 (row 0 is the visual
// right side): red is the visual top-left quadrant.
func rotatedPhoto() []byte {
	const w, h = 1200, 1600 // as displayed: portrait
	img := image.NewRGBA(image.Rect(0, 0, h, w))
	for sy := 0; sy < w; sy++ {
		for sx := 0; sx < h; sx++ {
			dx, dy := w-1-sy, sx
			c := color.RGBA{0, 0, 255, 255}
			if dx < w/2 && dy < h/2 {
				c = color.RGBA{255, 0, 0, 255}
			}
			img.SetRGBA(sx, sy, c)
		}
	}
	return imagingtest.WithEXIF(imagingtest.JPEG(img), 6)
}

func TestThumbnailMakesUprightVariantsIdempotently(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite+local", "postgres+s3"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			e := newImageEnv(t, backend, ImageConfig{})
			u := e.upload(rotatedPhoto(), store.UploadProcessing)
			if err := e.run(u.ID); err != nil {
				t.Fatalf("thumbnail: %v", err)
			}
			got := e.get(u.ID)
			if got.Status != store.UploadReady || *got.Width != 1200 || *got.Height != 1600 || len(got.Variants) != 3 {
				t.Fatalf("upload = %+v %+v", got, got.Variants)
			}
			want := map[string][2]int{"large": {900, 1200}, "medium": {450, 600}, "thumb": {113, 150}}
			for _, v := range got.Variants {
				data, obj := e.object(v.ObjectKey)
				if v.ObjectKey != "uploads/"+e.owner+"/"+u.ID+"/"+v.Name+".jpg" || obj.ContentType != "image/jpeg" ||
					obj.CacheControl != cacheVariant || int64(len(data)) != v.Size {
					t.Errorf("%s: key %s, %+v", v.Name, v.ObjectKey, obj)
				}
				img, err := jpeg.Decode(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				b := img.Bounds()
				if w := want[v.Name]; b.Dx() != w[0] || b.Dy() != w[1] || v.Width != w[0] || v.Height != w[1] {
					t.Errorf("%s: file %v, record %dx%d, want %v", v.Name, b.Size(), v.Width, v.Height, w)
				}
				// Upright: red in the top-left corner, blue in the bottom-right.
				r, g, bl, _ := img.At(2, 2).RGBA()
				r2, _, b2, _ := img.At(b.Dx()-3, b.Dy()-3).RGBA()
				if r>>8 < 200 || g>>8 > 60 || bl>>8 > 60 || r2>>8 > 60 || b2>>8 < 200 {
					t.Errorf("%s: corners %d,%d,%d / %d,%d: not upright", v.Name, r>>8, g>>8, bl>>8, r2>>8, b2>>8)
				}
			}
			// A re-run (a crash before the task was acknowledged, or the
			// sweeper) overwrites the same keys and ends in the same state.
			if _, err := store.Exec(context.Background(), e.db, `UPDATE uploads SET status = 'processing' WHERE id = ?`, u.ID); err != nil {
				t.Fatal(err)
			}
			if err := e.run(u.ID); err != nil {
				t.Fatal(err)
			}
			again := e.get(u.ID)
			if again.Status != store.UploadReady || len(again.Variants) != 3 {
				t.Fatalf("after re-run: %+v", again)
			}
			for i := range again.Variants {
				if again.Variants[i] != got.Variants[i] {
					t.Errorf("variant changed: %+v vs %+v", again.Variants[i], got.Variants[i])
				}
			}
			if s3, ok := e.blobs.(*blob.S3); ok {
				keys := testkit.S3Keys(t, s3, bucket(t, s3))
				sort.Strings(keys)
				if len(keys) != 4 {
					t.Errorf("objects after two runs: %v", keys)
				}
			}
			// Ready: a duplicate task is a no-op.
			if err := e.run(u.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func bucket(t *testing.T, s *blob.S3) string {
	t.Helper()
	u, err := s.PresignGet(context.Background(), "x", time.Minute, blob.GetURLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.SplitN(u, "://", 2)[1], "/")[1]
}

func TestThumbnailFailuresAreFinal(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, "sqlite+local", ImageConfig{MaxPixels: 50_000_000})
	good := imagingtest.JPEG(imagingtest.Gradient(400, 300))
	cases := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"corrupt", good[:len(good)/3], "corrupt"},
		{"not an image", []byte("<?php echo 1; ?>"), "not a supported image"},
		{"decompression bomb", imagingtest.BombPNG(50000, 50000), "more than 50000000 pixels"},
		{"missing object", nil, "missing"},
	}
	for _, c := range cases {
		u := e.upload(c.data, store.UploadProcessing)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := e.run(u.ID); err != nil {
			t.Errorf("%s: returned %v: a permanent failure must not be retried", c.name, err)
		}
		runtime.ReadMemStats(&after)
		got := e.get(u.ID)
		if got.Status != store.UploadFailed || !strings.Contains(got.FailureReason, c.reason) {
			t.Errorf("%s: status %s reason %q", c.name, got.Status, got.FailureReason)
		}
		if c.name == "decompression bomb" && after.TotalAlloc-before.TotalAlloc > 16<<20 {
			t.Errorf("refusing the bomb allocated %d bytes", after.TotalAlloc-before.TotalAlloc)
		}
	}
	// A deleted upload is nothing to do.
	if err := e.run("no-such-upload"); err != nil {
		t.Fatal(err)
	}
	// A transparent PNG keeps its transparency.
	u := e.upload(imagingtest.TransparentPNG(300, 200), store.UploadProcessing)
	if err := e.run(u.ID); err != nil {
		t.Fatal(err)
	}
	for _, v := range e.get(u.ID).Variants {
		if v.ContentType != "image/png" || !strings.HasSuffix(v.ObjectKey, ".png") {
			t.Errorf("transparent variant %+v", v)
		}
	}
}

func TestSweepAndCleanupUploads(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, "postgres+s3", ImageConfig{PendingTTL: time.Hour, StuckAfter: 10 * time.Minute})
	ctx := context.Background()
	jpg := imagingtest.JPEG(imagingtest.Gradient(64, 48))
	stuck := e.upload(jpg, store.UploadProcessing)
	fresh := e.upload(jpg, store.UploadProcessing)
	abandoned := e.upload(jpg, store.UploadPending)
	recent := e.upload(nil, store.UploadPending)
	hopeless := e.upload(jpg, store.UploadProcessing)
	old := store.Now().Add(-2 * time.Hour)
	for _, id := range []string{stuck.ID, abandoned.ID, hopeless.ID} {
		if _, err := store.Exec(ctx, e.db, `UPDATE uploads SET updated_at = ? WHERE id = ?`, old, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Exec(ctx, e.db, `UPDATE uploads SET updated_at = ?, created_at = ? WHERE id = ?`, old, old, hopeless.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.w.sweep(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.inspect.GetTaskInfo(tasks.QueueImages, tasks.Thumbnail{UploadID: stuck.ID}.TaskID()); err != nil {
		t.Fatalf("stuck upload not re-enqueued: %v", err)
	}
	if info, _ := e.inspect.GetTaskInfo(tasks.QueueImages, tasks.Thumbnail{UploadID: fresh.ID}.TaskID()); info != nil {
		t.Fatal("an upload processing for a moment was re-enqueued")
	}
	if got, _ := store.GetUpload(ctx, e.db, hopeless.ID); got.Status != store.UploadFailed {
		t.Fatalf("upload processing for two hours: %s", got.Status)
	}
	if err := e.w.cleanup(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetUpload(ctx, e.db, abandoned.ID); err == nil {
		t.Fatal("abandoned pending upload kept")
	}
	if _, _, err := e.blobs.Get(ctx, abandoned.ObjectKey); err == nil {
		t.Fatal("abandoned upload's object kept")
	}
	for _, id := range []string{recent.ID, stuck.ID, fresh.ID} {
		if _, err := store.GetUpload(ctx, e.db, id); err != nil {
			t.Fatalf("upload %s deleted: %v", id, err)
		}
	}
}

// TestImageQueueThroughAsynq runs the real worker: a task relayed to Redis
// is picked up by the images server and the upload becomes ready.
func TestImageQueueThroughAsynq(t *testing.T) {
	t.Parallel()
	e := newImageEnv(t, "postgres+s3", ImageConfig{Concurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx, e.redis.Client) }()
	t.Cleanup(func() { cancel(); <-done })
	u := e.upload(imagingtest.JPEG(imagingtest.Gradient(800, 600)), store.UploadProcessing)
	msg, _ := tasks.Encode(tasks.Thumbnail{UploadID: u.ID})
	e.w.deps.Relay.Publish(ctx, msg)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got := e.get(u.ID); got.Status == store.UploadReady {
			if len(got.Variants) != 3 {
				t.Fatalf("variants: %+v", got.Variants)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("upload still %s", e.get(u.ID).Status)
}
