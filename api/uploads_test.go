package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
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

// uploadEnv is a real API over real services: a migrated database, a Redis
// DB behind the outbox relay, and a bucket of the test S3 server or a local
// blob folder served by the API itself.
type uploadEnv struct {
	t       *testing.T
	srv     *Server
	http    *httptest.Server
	db      *store.DB
	blobs   BlobStore
	inspect *asynq.Inspector
	tokens  map[string]string // alice, bob (users), admin
	ids     map[string]string
}

func newUploadEnv(t *testing.T, backend string, cfg UploadConfig) *uploadEnv {
	t.Helper()
	e := &uploadEnv{t: t, tokens: map[string]string{}, ids: map[string]string{}}
	rd := testkit.RedisDB(t)
	client := asynq.NewClientFromRedisClient(rd.Client)
	e.inspect = asynq.NewInspectorFromRedisClient(rd.Client)
	switch backend {
	case "postgres+s3":
		e.db = testkit.Postgres(t)
		// With server-side encryption: a presigned PUT then signs its header too.
		e.blobs = testkit.S3Bucket(t, blob.S3Config{SSE: "AES256"})
	default:
		e.db = testkit.SQLite(t)
		l, err := blob.NewLocal(t.TempDir(), []byte("local-signing-key-for-tests-0123"), "")
		if err != nil {
			t.Fatal(err)
		}
		e.blobs = l
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := NewServer(Config{Env: "development", MaxBodyBytes: 1 << 20, JWTSecret: "test-secret-test-secret-test-secret",
		JWTIssuer: "t", JWTAudience: "t", JWTTTL: time.Hour, Uploads: cfg},
		Deps{Log: log, DB: e.db, Relay: relay.New(e.db, client, log), Blobs: e.blobs})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv)
	t.Cleanup(e.http.Close)
	for _, u := range []struct{ name, role string }{{"alice", RoleOwner}, {"bob", RoleRenter}, {"admin", RoleAdmin}} {
		id := store.NewID()
		now := store.Now()
		if _, err := store.Exec(context.Background(), e.db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
			VALUES (?, ?, 'x', ?, ?, ?, ?)`, id, id+"@example.com", u.name, u.role, now, now); err != nil {
			t.Fatal(err)
		}
		tok, _, err := srv.tokens.Issue(Principal{UserID: id, Role: u.role})
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[u.name], e.ids[u.name] = tok, id
	}
	return e
}

type file struct {
	field, name, contentType string
	data                     []byte
}

// multipartBody encodes files and fields; the client's Content-Type and
// file name are whatever the test says (the server must ignore them).
func multipartBody(files []file, fields map[string]string) (string, *bytes.Buffer) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, f.field, f.name))
		h.Set("Content-Type", f.contentType)
		pw, _ := w.CreatePart(h)
		_, _ = pw.Write(f.data)
	}
	_ = w.Close()
	return w.FormDataContentType(), &b
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
	return m
}

func (r resp) code() string {
	var m struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &m)
	return m.Error.Code
}

func (e *uploadEnv) do(method, path, user, contentType string, body io.Reader) resp {
	e.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = e.http.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[user])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func (e *uploadEnv) upload(path, user string, files []file, fields map[string]string) resp {
	e.t.Helper()
	ct, body := multipartBody(files, fields)
	return e.do(http.MethodPost, path, user, ct, body)
}

func (e *uploadEnv) postJSON(path, user string, v any) resp {
	e.t.Helper()
	b, _ := json.Marshal(v)
	return e.do(http.MethodPost, path, user, "application/json", bytes.NewReader(b))
}

// thumbnailQueued asserts that the upload's thumbnail task is in Redis.
func (e *uploadEnv) thumbnailQueued(id string) {
	e.t.Helper()
	info, err := e.inspect.GetTaskInfo(tasks.QueueImages, tasks.Thumbnail{UploadID: id}.TaskID())
	if err != nil {
		e.t.Fatalf("thumbnail task of %s not enqueued: %v", id, err)
	}
	var p tasks.Thumbnail
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.UploadID != id || info.Type != tasks.TypeImageThumbnail {
		e.t.Fatalf("task = %s %s", info.Type, info.Payload)
	}
}

func (e *uploadEnv) objectExists(key string) bool {
	e.t.Helper()
	_, err := e.blobs.Head(context.Background(), key)
	return err == nil
}

func (e *uploadEnv) record(id string) *store.Upload {
	e.t.Helper()
	u, err := store.GetUpload(context.Background(), e.db, id)
	if err != nil {
		e.t.Fatalf("upload %s: %v", id, err)
	}
	return u
}

func backends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range []string{"sqlite+local", "postgres+s3"} {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

func jpegFixture() []byte { return imagingtest.JPEG(imagingtest.Gradient(640, 480)) }

func TestUploadImageLifecycle(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, backend string) {
		e := newUploadEnv(t, backend, UploadConfig{})
		img := jpegFixture()
		// The client claims a PNG named .png: the server sniffs a JPEG.
		r := e.upload("/api/v1/upload/image", "alice", []file{{"file", "holiday.png", "image/png", img}}, nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("upload: %d %s", r.status, r.body)
		}
		m := r.json(t)
		id := m["id"].(string)
		if m["status"] != "processing" || m["content_type"] != "image/jpeg" || m["kind"] != "image" ||
			m["owner_id"] != e.ids["alice"] || int(m["size"].(float64)) != len(img) || m["url"] == nil {
			t.Fatalf("upload body = %s", r.body)
		}
		e.thumbnailQueued(id)
		rec := e.record(id)
		if !strings.HasPrefix(rec.ObjectKey, "uploads/"+e.ids["alice"]+"/"+id+"/original.jpg") || !e.objectExists(rec.ObjectKey) {
			t.Fatalf("object %s missing", rec.ObjectKey)
		}
		// The original's link serves the bytes.
		got := e.do(http.MethodGet, m["url"].(string), "", "", nil)
		if got.status != 200 || !bytes.Equal(got.body, img) || got.header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("original link: %d %s, %d bytes", got.status, got.header.Get("Content-Type"), len(got.body))
		}
		for _, who := range []string{"alice", "admin"} {
			if r := e.do(http.MethodGet, "/api/v1/upload/"+id, who, "", nil); r.status != 200 || r.json(t)["id"] != id {
				t.Fatalf("%s GET: %d %s", who, r.status, r.body)
			}
		}
		s := e.do(http.MethodGet, "/api/v1/upload/"+id+"/signed-url", "alice", "", nil)
		if s.status != 200 {
			t.Fatalf("signed-url: %d %s", s.status, s.body)
		}
		if got := e.do(http.MethodGet, s.json(t)["url"].(string), "", "", nil); got.status != 200 || !bytes.Equal(got.body, img) {
			t.Fatalf("signed url: %d", got.status)
		}
		// Another user sees nothing, on every endpoint.
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/api/v1/upload/" + id}, {http.MethodDelete, "/api/v1/upload/" + id},
			{http.MethodGet, "/api/v1/upload/" + id + "/signed-url"}, {http.MethodPost, "/api/v1/upload/" + id + "/complete"},
		} {
			if r := e.do(c.method, c.path, "bob", "", nil); r.status != 404 || r.code() != "not_found" {
				t.Errorf("bob %s %s: %d %s", c.method, c.path, r.status, r.body)
			}
		}
		if r := e.do(http.MethodGet, "/api/v1/upload/"+id, "", "", nil); r.status != 401 {
			t.Errorf("anonymous: %d", r.status)
		}
		// Delete removes the record and the objects.
		if r := e.do(http.MethodDelete, "/api/v1/upload/"+id, "alice", "", nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if e.objectExists(rec.ObjectKey) {
			t.Fatal("object left after delete")
		}
		if r := e.do(http.MethodGet, "/api/v1/upload/"+id, "alice", "", nil); r.status != 404 {
			t.Fatalf("after delete: %d", r.status)
		}
	})
}

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, backend string) {
		e := newUploadEnv(t, backend, UploadConfig{MaxImageBytes: 200 << 10, MaxFiles: 2})
		big := append(jpegFixture(), bytes.Repeat([]byte{0}, 300<<10)...)
		cases := []struct {
			name   string
			path   string
			files  []file
			status int
			code   string
		}{
			{"php renamed .jpg", "/api/v1/upload/image", []file{{"file", "shell.jpg", "image/jpeg", []byte("<?php system($_GET['c']); ?>")}}, 415, "unsupported_media_type"},
			{"html as image", "/api/v1/upload/image", []file{{"file", "x.jpg", "image/jpeg", []byte("<!DOCTYPE html><script>alert(1)</script>")}}, 415, "unsupported_media_type"},
			{"svg", "/api/v1/upload/image", []file{{"file", "x.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`)}}, 415, "unsupported_media_type"},
			{"html as document", "/api/v1/upload/document", []file{{"file", "x.pdf", "application/pdf", []byte("<html>%PDF-1.4</html>")}}, 415, "unsupported_media_type"},
			{"oversize", "/api/v1/upload/image", []file{{"file", "big.jpg", "image/jpeg", big}}, 413, "too_large"},
			{"decompression bomb", "/api/v1/upload/image", []file{{"file", "bomb.png", "image/png", imagingtest.BombPNG(50000, 50000)}}, 422, "unprocessable"},
			{"no file", "/api/v1/upload/image", nil, 400, "validation_failed"},
			{"too many files", "/api/v1/upload/images", []file{{"files", "a", "", jpegFixture()}, {"files", "b", "", jpegFixture()}, {"files", "c", "", jpegFixture()}}, 400, "validation_failed"},
			{"one bad file of two", "/api/v1/upload/images", []file{{"files", "a", "", jpegFixture()}, {"files", "b.jpg", "", []byte("MZ\x90\x00 executable")}}, 415, "unsupported_media_type"},
		}
		for _, c := range cases {
			r := e.upload(c.path, "alice", c.files, nil)
			if r.status != c.status || r.code() != c.code {
				t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.code)
			}
		}
		if r := e.do(http.MethodPost, "/api/v1/upload/image", "alice", "application/json", strings.NewReader(`{}`)); r.status != 415 {
			t.Errorf("not multipart: %d %s", r.status, r.body)
		}
		// Nothing was recorded or left in storage.
		var n int
		if err := store.Get(context.Background(), e.db, &n, `SELECT count(*) FROM uploads`); err != nil || n != 0 {
			t.Fatalf("%d uploads recorded, %v", n, err)
		}
		if s3, ok := e.blobs.(*blob.S3); ok {
			if keys := testkit.S3Keys(t, s3, bucketOf(t, s3)); len(keys) != 0 {
				t.Fatalf("objects left: %v", keys)
			}
		}
	})
}

func bucketOf(t *testing.T, s *blob.S3) string {
	t.Helper()
	u, err := s.PresignGet(context.Background(), "x", time.Minute, blob.GetURLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := url.Parse(u)
	return strings.Split(strings.TrimPrefix(p.Path, "/"), "/")[0]
}

func TestUploadImagesAndDocuments(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, backend string) {
		e := newUploadEnv(t, backend, UploadConfig{})
		r := e.upload("/api/v1/upload/images", "alice", []file{
			{"files", "a.jpg", "", jpegFixture()},
			{"files", "b.png", "", imagingtest.TransparentPNG(100, 80)},
			{"files", "c.webp", "", imagingtest.WebPLossy},
			{"files", "d.gif", "", imagingtest.AnimatedGIF(40, 30)},
		}, nil)
		if r.status != 202 {
			t.Fatalf("images: %d %s", r.status, r.body)
		}
		data := r.json(t)["data"].([]any)
		want := []string{"image/jpeg", "image/png", "image/webp", "image/gif"}
		if len(data) != len(want) {
			t.Fatalf("%d uploads", len(data))
		}
		for i, d := range data {
			m := d.(map[string]any)
			if m["content_type"] != want[i] || m["status"] != "processing" {
				t.Errorf("upload %d: %v", i, m)
			}
			e.thumbnailQueued(m["id"].(string))
		}

		// A document attached to a booking the caller is part of.
		now := store.Now()
		listing, booking := store.NewID(), store.NewID()
		ctx := context.Background()
		if _, err := store.Exec(ctx, e.db, `INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at)
			VALUES (?, ?, 'Van', 5000, 'EUR', ?, ?)`, listing, e.ids["alice"], now, now); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Exec(ctx, e.db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
			total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, '2031-01-01', '2031-01-03', 'confirmed', 10000, 'EUR', ?, ?, ?)`,
			booking, listing, e.ids["bob"], e.ids["alice"], now, now, now); err != nil {
			t.Fatal(err)
		}
		pdf := []byte("%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")
		r = e.upload("/api/v1/upload/document", "bob", []file{{"file", "../../etc/report.pdf", "text/html", pdf}}, map[string]string{"booking_id": booking})
		if r.status != 201 {
			t.Fatalf("document: %d %s", r.status, r.body)
		}
		m := r.json(t)
		if m["status"] != "ready" || m["content_type"] != "application/pdf" || m["booking_id"] != booking || m["filename"] != "report.pdf" {
			t.Fatalf("document = %s", r.body)
		}
		if info, _ := e.inspect.GetTaskInfo(tasks.QueueImages, tasks.Thumbnail{UploadID: m["id"].(string)}.TaskID()); info != nil {
			t.Fatal("a document got a thumbnail task")
		}
		got := e.do(http.MethodGet, m["url"].(string), "", "", nil)
		if got.status != 200 || !bytes.Equal(got.body, pdf) || !strings.HasPrefix(got.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("document link: %d, disposition %q", got.status, got.header.Get("Content-Disposition"))
		}
		// Someone else's booking is not found.
		other := newUploadEnvUser(t, e, "carol")
		r = e.upload("/api/v1/upload/document", other, []file{{"file", "x.pdf", "", pdf}}, map[string]string{"booking_id": booking})
		if r.status != 404 {
			t.Fatalf("stranger's booking: %d %s", r.status, r.body)
		}
		r = e.upload("/api/v1/upload/document", "bob", []file{{"file", "x.pdf", "", pdf}}, map[string]string{"booking_id": "nope"})
		if r.status != 404 {
			t.Fatalf("unknown booking: %d %s", r.status, r.body)
		}
		// Dispute evidence: the parties of the disputed booking may attach.
		dispute := "dp_" + store.NewID()
		if _, err := store.Exec(ctx, e.db, `INSERT INTO disputes (id, booking_id, charge_id, amount, currency, status, created_at, updated_at)
			VALUES (?, ?, 'ch_1', 10000, 'EUR', 'needs_response', ?, ?)`, dispute, booking, now, now); err != nil {
			t.Fatal(err)
		}
		r = e.upload("/api/v1/upload/document", "alice", []file{{"file", "evidence.jpg", "", jpegFixture()}}, map[string]string{"dispute_id": dispute})
		if r.status != 201 || r.json(t)["dispute_id"] != dispute || r.json(t)["content_type"] != "image/jpeg" {
			t.Fatalf("dispute evidence: %d %s", r.status, r.body)
		}
		if r := e.upload("/api/v1/upload/document", other, []file{{"file", "x.pdf", "", pdf}}, map[string]string{"dispute_id": dispute}); r.status != 404 {
			t.Fatalf("stranger's dispute: %d %s", r.status, r.body)
		}
		if r := e.upload("/api/v1/upload/image", "alice", []file{{"file", "x.jpg", "", jpegFixture()}}, map[string]string{"booking_id": booking}); r.status != 400 {
			t.Fatalf("image attached to a booking: %d %s", r.status, r.body)
		}
	})
}

// newUploadEnvUser adds a renter and returns the name its token is under.
func newUploadEnvUser(t *testing.T, e *uploadEnv, name string) string {
	t.Helper()
	id := store.NewID()
	now := store.Now()
	if _, err := store.Exec(context.Background(), e.db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		VALUES (?, ?, 'x', ?, 'renter', ?, ?)`, id, id+"@example.com", name, now, now); err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.srv.tokens.Issue(Principal{UserID: id, Role: RoleRenter})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens[name], e.ids[name] = tok, id
	return name
}

func TestPresignedUpload(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, backend string) {
		e := newUploadEnv(t, backend, UploadConfig{})
		png := imagingtest.PNG(imagingtest.Gradient(300, 200))
		r := e.postJSON("/api/v1/upload/presigned-upload", "alice", map[string]any{"kind": "image", "content_type": "image/png", "size": len(png), "filename": "p.png"})
		if r.status != 201 {
			t.Fatalf("presign: %d %s", r.status, r.body)
		}
		m := r.json(t)
		up := m["upload"].(map[string]any)
		id := up["id"].(string)
		if up["status"] != "pending" || up["url"] != nil {
			t.Fatalf("pending upload = %v", up)
		}
		pre := m["presigned"].(map[string]any)
		put := func(ct string, body []byte, length int64) int {
			req, _ := http.NewRequest(pre["method"].(string), pre["url"].(string), bytes.NewReader(body))
			for k, v := range pre["headers"].(map[string]any) {
				for _, s := range v.([]any) {
					req.Header.Add(k, s.(string))
				}
			}
			req.Header.Set("Content-Type", ct)
			req.ContentLength = length
			req.Header.Del("Content-Length")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if r := e.do(http.MethodPost, "/api/v1/upload/"+id+"/complete", "alice", "", nil); r.status != 409 {
			t.Fatalf("complete before PUT: %d %s", r.status, r.body)
		}
		if s := put("text/html", png, int64(len(png))); s != 403 {
			t.Errorf("PUT with another type: %d, want 403", s)
		}
		longer := append(bytes.Clone(png), make([]byte, 100)...)
		if s := put("image/png", longer, int64(len(longer))); s < 400 {
			t.Errorf("PUT of a larger body: %d, want refused", s)
		}
		if s := put("image/png", png, int64(len(png))); s != 200 {
			t.Fatalf("PUT as signed: %d", s)
		}
		r = e.do(http.MethodPost, "/api/v1/upload/"+id+"/complete", "alice", "", nil)
		if r.status != 202 || r.json(t)["status"] != "processing" {
			t.Fatalf("complete: %d %s", r.status, r.body)
		}
		e.thumbnailQueued(id)
		if r := e.do(http.MethodPost, "/api/v1/upload/"+id+"/complete", "alice", "", nil); r.status != 200 || r.json(t)["status"] != "processing" {
			t.Fatalf("complete again: %d %s", r.status, r.body)
		}

		// Storage accepted what was signed, but the content is not what was
		// declared: complete refuses it, fails the upload, deletes the object.
		jpg := jpegFixture()
		r = e.postJSON("/api/v1/upload/presigned-upload", "alice", map[string]any{"content_type": "image/png", "size": len(jpg)})
		m = r.json(t)
		pre = m["presigned"].(map[string]any)
		id2 := m["upload"].(map[string]any)["id"].(string)
		if s := put("image/png", jpg, int64(len(jpg))); s != 200 {
			t.Fatalf("PUT: %d", s)
		}
		r = e.do(http.MethodPost, "/api/v1/upload/"+id2+"/complete", "alice", "", nil)
		if r.status != 415 {
			t.Fatalf("complete with mismatched content: %d %s", r.status, r.body)
		}
		rec := e.record(id2)
		if rec.Status != store.UploadFailed || rec.FailureReason == "" || e.objectExists(rec.ObjectKey) {
			t.Fatalf("refused upload = %+v", rec)
		}

		// Declarations refused up front.
		for _, c := range []struct {
			body   map[string]any
			status int
		}{
			{map[string]any{"content_type": "text/html", "size": 10}, 415},
			{map[string]any{"content_type": "image/svg+xml", "size": 10}, 415},
			{map[string]any{"content_type": "image/png", "size": 21 << 20}, 413},
			{map[string]any{"content_type": "image/png"}, 400},
			{map[string]any{"kind": "video", "content_type": "image/png", "size": 1}, 400},
			{map[string]any{"content_type": "image/png", "size": 1, "key": "../../x"}, 400},
		} {
			if r := e.postJSON("/api/v1/upload/presigned-upload", "alice", c.body); r.status != c.status {
				t.Errorf("presign %v: %d %s, want %d", c.body, r.status, r.body, c.status)
			}
		}
	})
}

func TestLocalBlobLinks(t *testing.T) {
	t.Parallel()
	e := newUploadEnv(t, "sqlite+local", UploadConfig{})
	r := e.upload("/api/v1/upload/image", "alice", []file{{"file", "a.jpg", "", jpegFixture()}}, nil)
	link := r.json(t)["url"].(string)
	if got := e.do(http.MethodGet, link, "", "", nil); got.status != 200 || got.header.Get("X-Content-Type-Options") != "nosniff" ||
		got.header.Get("Cache-Control") != cacheOriginal {
		t.Fatalf("link: %d %v", got.status, got.header)
	}
	u, _ := url.Parse(link)
	q := u.Query()
	q.Set("sig", strings.Repeat("0", 64))
	tampered := *u
	tampered.RawQuery = q.Encode()
	for name, bad := range map[string]string{
		"signature": tampered.String(),
		"other key": strings.Replace(link, "original.jpg", "thumb.jpg", 1),
		"traversal": e.http.URL + "/blobs/../../../etc/passwd?" + u.RawQuery,
		"encoded":   e.http.URL + "/blobs/uploads/%2e%2e/%2e%2e/etc/passwd?" + u.RawQuery,
		"no query":  e.http.URL + u.Path,
	} {
		if got := e.do(http.MethodGet, bad, "", "", nil); got.status != 403 && got.status != 404 {
			t.Errorf("%s: %d %s", name, got.status, got.body)
		}
	}
	l := e.blobs.(*blob.Local)
	expired, _ := l.PresignGet(context.Background(), strings.TrimPrefix(u.Path, "/blobs/"), -time.Minute, blob.GetURLOptions{})
	if got := e.do(http.MethodGet, expired, "", "", nil); got.status != 403 {
		t.Errorf("expired: %d", got.status)
	}
}

// TestListingPhotosShowTheirVariants: a listing shows its ready photos'
// variants to anyone, anonymous included, in the listing and in the list,
// through links that serve the image; the original is not shown, and the
// upload itself stays its owner's.
func TestListingPhotosShowTheirVariants(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, backend string) {
		e := newUploadEnv(t, backend, UploadConfig{})
		ctx := context.Background()
		r := e.upload("/api/v1/upload/image", "alice", []file{{"file", "a.jpg", "", jpegFixture()}}, nil)
		id := r.json(t)["id"].(string)
		key := "uploads/" + e.ids["alice"] + "/" + id + "/thumb.jpg"
		thumb := jpegFixture()
		if _, err := e.blobs.Put(ctx, key, bytes.NewReader(thumb), blob.PutOptions{ContentType: "image/jpeg"}); err != nil {
			t.Fatal(err)
		}
		if err := store.FinishUpload(ctx, e.db, id, 640, 480, []store.UploadVariant{
			{Name: "thumb", ObjectKey: key, ContentType: "image/jpeg", Width: 150, Height: 113, Size: int64(len(thumb))}}); err != nil {
			t.Fatal(err)
		}
		r = e.postJSON("/api/v1/listings", "alice", map[string]any{"title": "Kayak", "price_per_day": 2000, "currency": "EUR", "photos": []string{id}})
		if r.status != http.StatusCreated {
			t.Fatalf("create listing: %d %s", r.status, r.body)
		}
		listingID := r.json(t)["id"].(string)
		one := e.do(http.MethodGet, "/api/v1/listings/"+listingID, "", "", nil).json(t)
		list := e.do(http.MethodGet, "/api/v1/listings?owner_id="+e.ids["alice"], "", "", nil).json(t)
		for name, l := range map[string]map[string]any{"listing": one, "list": list["data"].([]any)[0].(map[string]any)} {
			p := l["photos"].([]any)[0].(map[string]any)
			if _, ok := p["url"]; ok {
				t.Fatalf("%s shows the original: %v", name, p)
			}
			v, ok := p["variants"].(map[string]any)["thumb"].(map[string]any)
			if !ok || v["width"].(float64) != 150 {
				t.Fatalf("%s photo = %v", name, p)
			}
			got, err := http.Get(v["url"].(string))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(got.Body)
			got.Body.Close()
			if got.StatusCode != http.StatusOK || !bytes.Equal(body, thumb) {
				t.Fatalf("%s: thumb link answered %d with %d bytes", name, got.StatusCode, len(body))
			}
		}
		if r := e.do(http.MethodGet, "/api/v1/upload/"+id, "bob", "", nil); r.status != http.StatusNotFound {
			t.Fatalf("someone else's upload: %d", r.status)
		}
	})
}

func TestVariantURLsUseTheCDN(t *testing.T) {
	t.Parallel()
	e := newUploadEnv(t, "sqlite+local", UploadConfig{})
	e.blobs = testkit.S3Bucket(t, blob.S3Config{CDNBaseURL: "https://cdn.example.com/media/"})
	e.srv.deps.Blobs = e.blobs
	r := e.upload("/api/v1/upload/image", "alice", []file{{"file", "a.jpg", "", jpegFixture()}}, nil)
	id := r.json(t)["id"].(string)
	key := "uploads/" + e.ids["alice"] + "/" + id + "/thumb.jpg"
	if err := store.FinishUpload(context.Background(), e.db, id, 640, 480, []store.UploadVariant{
		{Name: "thumb", ObjectKey: key, ContentType: "image/jpeg", Width: 150, Height: 113, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	m := e.do(http.MethodGet, "/api/v1/upload/"+id, "alice", "", nil).json(t)
	thumb := m["variants"].(map[string]any)["thumb"].(map[string]any)
	if thumb["url"] != "https://cdn.example.com/media/"+key || thumb["width"].(float64) != 150 || m["status"] != "ready" {
		t.Fatalf("thumb = %v", thumb)
	}
	// The original stays private: a signed link to the bucket, not the CDN.
	if u := m["url"].(string); strings.HasPrefix(u, "https://cdn.example.com") || !strings.Contains(u, "X-Amz-Signature=") {
		t.Fatalf("original url = %s", u)
	}
}

// TestUploadsInFlightAreBounded: with one upload slot, a second upload
// while the first is still streaming waits SlotWait and is answered 503
// with Retry-After; it stores nothing. Once the first is done, uploads
// pass again.
func TestUploadsInFlightAreBounded(t *testing.T) {
	t.Parallel()
	e := newUploadEnv(t, "sqlite+local", UploadConfig{MaxInFlight: 1, SlotWait: 50 * time.Millisecond})
	ct, body := multipartBody([]file{{"file", "a.jpg", "", jpegFixture()}}, nil)
	all := body.Bytes()
	pr, pw := io.Pipe()
	first := make(chan resp, 1)
	go func() { first <- e.do(http.MethodPost, "/api/v1/upload/image", "alice", ct, pr) }()
	if _, err := pw.Write(all[:len(all)/2]); err != nil { // the first is in the middle of its file
		t.Fatal(err)
	}
	for e.srv.uploads.TryAcquire(1) { // until the first holds the slot
		e.srv.uploads.Release(1)
		time.Sleep(5 * time.Millisecond)
	}
	r := e.upload("/api/v1/upload/image", "bob", []file{{"file", "b.jpg", "", jpegFixture()}}, nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || r.json(t)["error"].(map[string]any)["code"] != "unavailable" {
		t.Fatalf("second upload while the slot is taken: %d %v %s", r.status, r.header, r.body)
	}
	var n int
	if err := store.Get(context.Background(), e.db, &n, `SELECT count(*) FROM uploads WHERE owner_id = ?`, e.ids["bob"]); err != nil || n != 0 {
		t.Fatalf("the refused upload left %d rows (%v)", n, err)
	}
	if _, err := pw.Write(all[len(all)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if r := <-first; r.status != http.StatusAccepted {
		t.Fatalf("first upload: %d %s", r.status, r.body)
	}
	if r := e.upload("/api/v1/upload/image", "bob", []file{{"file", "b.jpg", "", jpegFixture()}}, nil); r.status != http.StatusAccepted {
		t.Fatalf("upload after the slot freed: %d %s", r.status, r.body)
	}
}
