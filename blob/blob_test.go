package blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/internal/testkit"
)

// stores runs f on each backend: a fresh bucket of the test S3 server
// (versitygw, which checks signatures) and a fresh local folder.
func stores(t *testing.T, f func(t *testing.T, s blob.Store)) {
	t.Helper()
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		l, err := blob.NewLocal(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"), "")
		if err != nil {
			t.Fatal(err)
		}
		f(t, l)
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		f(t, testkit.S3Bucket(t, blob.S3Config{PartSize: 5 << 20}))
	})
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		key := "uploads/u1/a1/original"
		obj, err := s.Put(ctx, key, strings.NewReader("hello"), blob.PutOptions{ContentType: "text/plain",
			CacheControl: "private, max-age=60", Size: 5})
		if err != nil || obj.Size != 5 {
			t.Fatalf("put: %+v, %v", obj, err)
		}
		head, err := s.Head(ctx, key)
		if err != nil || head.Size != 5 || head.ContentType != "text/plain" || head.CacheControl != "private, max-age=60" {
			t.Fatalf("head: %+v, %v", head, err)
		}
		body, got, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		b, _ := io.ReadAll(body)
		body.Close()
		if string(b) != "hello" || got.Size != 5 {
			t.Fatalf("get = %q %+v", b, got)
		}
		if err := s.Copy(ctx, key, "uploads/u1/a1/copy"); err != nil {
			t.Fatalf("copy: %v", err)
		}
		if c, err := s.Head(ctx, "uploads/u1/a1/copy"); err != nil || c.ContentType != "text/plain" || c.Size != 5 {
			t.Fatalf("copy head: %+v, %v", c, err)
		}
		if err := s.Delete(ctx, key, "uploads/u1/a1/copy", "uploads/u1/a1/never-there"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		for _, k := range []string{key, "uploads/u1/a1/copy"} {
			if ok, err := s.Exists(ctx, k); ok || err != nil {
				t.Fatalf("exists after delete: %v, %v", ok, err)
			}
			if _, err := s.Head(ctx, k); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("head after delete: %v", err)
			}
			if _, _, err := s.Get(ctx, k); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("get after delete: %v", err)
			}
		}
	})
}

func TestLargeStreamedPut(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		// 11 MiB of unknown length: three parts of 5 MiB on S3.
		const n = 11<<20 + 123
		h := sha256.New()
		r := io.TeeReader(io.LimitReader(rand.Reader, n), h)
		obj, err := s.Put(ctx, "big/object", struct{ io.Reader }{r}, blob.PutOptions{ContentType: "application/octet-stream", Size: -1})
		if err != nil || obj.Size != n {
			t.Fatalf("put: %+v, %v", obj, err)
		}
		body, _, err := s.Get(ctx, "big/object")
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		h2 := sha256.New()
		if m, err := io.Copy(h2, body); err != nil || m != n {
			t.Fatalf("read back %d bytes: %v", m, err)
		}
		if !bytes.Equal(h.Sum(nil), h2.Sum(nil)) {
			t.Fatal("content differs")
		}
	})
}

func TestKeysCannotEscape(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s blob.Store) {
		ctx := context.Background()
		for _, k := range []string{"", "../etc/passwd", "a/../../b", "/abs", "a//b", "a/./b", "a\\b", "a/b/", "é", "a b", "a?b", "a%2e%2e"} {
			if _, err := s.Put(ctx, k, strings.NewReader("x"), blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
			}
			if _, err := s.PresignGet(ctx, k, time.Minute, blob.GetURLOptions{}); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("presign %q: %v", k, err)
			}
		}
	})
}

func TestS3PresignedURLs(t *testing.T) {
	t.Parallel()
	s := testkit.S3Bucket(t, blob.S3Config{})
	ctx := context.Background()
	if _, err := s.Put(ctx, "docs/report.pdf", strings.NewReader("%PDF-1.4 test"), blob.PutOptions{ContentType: "application/pdf"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignGet(ctx, "docs/report.pdf", time.Minute, blob.GetURLOptions{ContentDisposition: `attachment; filename="r.pdf"`})
	if err != nil {
		t.Fatal(err)
	}
	status, body := do(t, http.MethodGet, u, nil, nil)
	if status != 200 || body != "%PDF-1.4 test" {
		t.Fatalf("presigned GET = %d %q", status, body)
	}
	// A tampered URL: another key under the same signature, or a changed signature.
	pu, _ := url.Parse(u)
	other := *pu
	other.Path = strings.Replace(other.Path, "report.pdf", "report.pdg", 1)
	q := pu.Query()
	sig := q.Get("X-Amz-Signature")
	q.Set("X-Amz-Signature", flip(sig))
	tampered := *pu
	tampered.RawQuery = q.Encode()
	expiry := pu.Query()
	expiry.Set("X-Amz-Expires", "604800")
	longer := *pu
	longer.RawQuery = expiry.Encode()
	for name, bad := range map[string]string{"key": other.String(), "signature": tampered.String(), "expiry": longer.String()} {
		if status, _ := do(t, http.MethodGet, bad, nil, nil); status != http.StatusForbidden {
			t.Errorf("tampered %s: status %d, want 403", name, status)
		}
	}

	// Presigned PUT: exactly the declared type and size.
	payload := "\x89PNG\r\n\x1a\n0123456789"
	req, err := s.PresignPut(ctx, "uploads/u/x/original", time.Minute, blob.PutConstraints{ContentType: "image/png", Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	withType := func(ct string) http.Header {
		h := req.Headers.Clone()
		h.Set("Content-Type", ct)
		return h
	}
	if status, body := do(t, http.MethodPut, req.URL, withType("text/html"), strings.NewReader(payload)); status != http.StatusForbidden {
		t.Errorf("PUT with another content type: %d %s, want 403", status, body)
	}
	bigger := payload + "<script>alert(1)</script>"
	if status, body := do(t, http.MethodPut, req.URL, req.Headers, strings.NewReader(bigger)); status < 400 {
		t.Errorf("PUT of a larger body: %d %s, want refused", status, body)
	}
	if ok, _ := s.Exists(ctx, "uploads/u/x/original"); ok {
		t.Fatal("a refused PUT stored the object")
	}
	if status, body := do(t, http.MethodPut, req.URL, req.Headers, strings.NewReader(payload)); status != 200 {
		t.Fatalf("PUT as signed: %d %s", status, body)
	}
	if h, err := s.Head(ctx, "uploads/u/x/original"); err != nil || h.Size != int64(len(payload)) || h.ContentType != "image/png" {
		t.Fatalf("after PUT: %+v, %v", h, err)
	}
}

func TestLocalSignedLinks(t *testing.T) {
	t.Parallel()
	l, err := blob.NewLocal(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"), "http://x")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := l.PresignGet(context.Background(), "a/b.jpg", time.Minute, blob.GetURLOptions{ContentDisposition: "attachment"})
	pu, _ := url.Parse(u)
	key := strings.TrimPrefix(pu.Path, blob.LocalRoute)
	if s, err := l.Verify(http.MethodGet, key, pu.Query()); err != nil || s.Disposition != "attachment" {
		t.Fatalf("verify: %+v, %v", s, err)
	}
	if _, err := l.Verify(http.MethodPut, key, pu.Query()); !errors.Is(err, blob.ErrBadSignature) {
		t.Errorf("GET link used for PUT: %v", err)
	}
	if _, err := l.Verify(http.MethodGet, "a/c.jpg", pu.Query()); !errors.Is(err, blob.ErrBadSignature) {
		t.Errorf("other key: %v", err)
	}
	q := pu.Query()
	q.Set("disp", "inline")
	if _, err := l.Verify(http.MethodGet, key, q); !errors.Is(err, blob.ErrBadSignature) {
		t.Errorf("changed disposition: %v", err)
	}
	q = pu.Query()
	q.Set("exp", "99999999999")
	if _, err := l.Verify(http.MethodGet, key, q); !errors.Is(err, blob.ErrBadSignature) {
		t.Errorf("extended expiry: %v", err)
	}
	short, _ := l.PresignGet(context.Background(), "a/b.jpg", -time.Second, blob.GetURLOptions{})
	ps, _ := url.Parse(short)
	if _, err := l.Verify(http.MethodGet, key, ps.Query()); !errors.Is(err, blob.ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	put, _ := l.PresignPut(context.Background(), "a/b.jpg", time.Minute, blob.PutConstraints{ContentType: "image/jpeg", Size: 42})
	pp, _ := url.Parse(put.URL)
	if s, err := l.Verify(http.MethodPut, key, pp.Query()); err != nil || s.ContentType != "image/jpeg" || s.Size != 42 {
		t.Fatalf("verify put: %+v, %v", s, err)
	}
}

func flip(s string) string {
	if s == "" {
		return "x"
	}
	c := byte('0')
	if s[0] == '0' {
		c = '1'
	}
	return string(c) + s[1:]
}

func do(t *testing.T, method, u string, h http.Header, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if cl := h.Get("Content-Length"); cl != "" {
		req.ContentLength = -1
		if sr, ok := body.(*strings.Reader); ok {
			req.ContentLength = int64(sr.Len())
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
