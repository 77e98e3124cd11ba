package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func TestUploadLifecycle(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		owner, _ := seedUserAndListing(t, db)
		size := int64(1234)
		u := &store.Upload{ID: store.NewID(), OwnerID: owner, Kind: store.UploadKindImage, ContentType: "image/png",
			DeclaredSize: &size, Status: store.UploadPending}
		u.ObjectKey = "uploads/" + owner + "/" + u.ID + "/original"
		if err := store.CreateUpload(ctx, db, u); err != nil {
			t.Fatal(err)
		}
		// Abandoned pending uploads are found once they are old enough.
		if got, err := store.UploadsInStatus(ctx, db, store.UploadPending, time.Now().Add(time.Minute), 10); err != nil || len(got) != 1 {
			t.Fatalf("pending = %v, %v", got, err)
		}
		if got, _ := store.UploadsInStatus(ctx, db, store.UploadPending, time.Now().Add(-time.Minute), 10); len(got) != 0 {
			t.Fatalf("fresh upload listed as abandoned")
		}
		if err := store.CompleteUpload(ctx, db, u.ID, store.UploadProcessing, "image/png", 1234); err != nil {
			t.Fatal(err)
		}
		if err := store.CompleteUpload(ctx, db, u.ID, store.UploadProcessing, "image/png", 1234); portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("second complete: %v", err)
		}
		vs := []store.UploadVariant{
			{Name: "large", ObjectKey: u.ObjectKey + "-large.jpg", ContentType: "image/jpeg", Width: 1200, Height: 800, Size: 100},
			{Name: "thumb", ObjectKey: u.ObjectKey + "-thumb.jpg", ContentType: "image/jpeg", Width: 150, Height: 100, Size: 10},
		}
		err := db.InTx(ctx, func(tx *sqlx.Tx) error { return store.FinishUpload(ctx, tx, u.ID, 3000, 2000, vs) })
		if err != nil {
			t.Fatal(err)
		}
		// A re-run finds it ready: a conflict, and nothing changes.
		if err := store.FinishUpload(ctx, db, u.ID, 1, 1, vs); portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("finish twice: %v", err)
		}
		if err := store.FailUpload(ctx, db, u.ID, "late"); portal.ErrorCode(err) != portal.ECONFLICT {
			t.Fatalf("fail after ready: %v", err)
		}
		got, err := store.GetUpload(ctx, db, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.UploadReady || *got.Width != 3000 || len(got.Variants) != 2 || got.Variants[0].Name != "large" ||
			got.Size != 1234 || !got.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("upload = %+v", got)
		}
		m, err := store.UploadsByIDs(ctx, db, []string{u.ID, "missing"})
		if err != nil || len(m) != 1 || len(m[u.ID].Variants) != 2 || m[u.ID].Status != store.UploadReady {
			t.Fatalf("by ids = %v, %v", m, err)
		}
		if err := store.DeleteUpload(ctx, db, u.ID); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := store.Get(ctx, db, &n, `SELECT count(*) FROM upload_variants WHERE upload_id = ?`, u.ID); err != nil || n != 0 {
			t.Fatalf("variants left: %d, %v", n, err)
		}
		if _, err := store.GetUpload(ctx, db, u.ID); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("get deleted: %v", err)
		}
		if err := store.FinishUpload(ctx, db, u.ID, 1, 1, vs); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("finish deleted: %v", err)
		}
	})
}
