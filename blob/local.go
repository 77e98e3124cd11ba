package blob

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LocalRoute is the path under which the API serves local objects:
// LocalRoute + key, with the signature in the query.
const LocalRoute = "/blobs/"

// Errors of signed local URLs.
var (
	// ErrBadSignature: the URL was not signed by us or was altered.
	ErrBadSignature = errors.New("blob: bad signature")
	// ErrExpired: the URL's lifetime has passed.
	ErrExpired = errors.New("blob: link expired")
)

// Local stores objects in a folder: objects/<key> holds the bytes and
// meta/<key>.json the headers. Writes go to a temporary file renamed into
// place, so a reader never sees half an object. Links are HMAC-signed with
// the key, the method, the expiry and the constraints of the request.
type Local struct {
	root    string
	secret  []byte
	baseURL string
	now     func() time.Time
}

// NewLocal uses dir (created if needed), signs links with secret, and
// prefixes them with baseURL (empty: links are root-relative, "/blobs/...",
// and the API makes them absolute for the request's host).
func NewLocal(dir string, secret []byte, baseURL string) (*Local, error) {
	if len(secret) < 16 {
		return nil, errors.New("blob: local signing key must be at least 16 bytes")
	}
	for _, d := range []string{"objects", "meta", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("blob: create %s: %w", dir, err)
		}
	}
	return &Local{root: dir, secret: secret, baseURL: strings.TrimRight(baseURL, "/"), now: time.Now}, nil
}

// Kind implements Store.
func (l *Local) Kind() string { return "local" }

// path maps a key to a file under sub, refusing anything that would leave it.
func (l *Local) path(sub, key, suffix string) (string, error) {
	if !ValidKey(key) {
		return "", ErrInvalidKey
	}
	base := filepath.Join(l.root, sub)
	p := filepath.Join(base, filepath.FromSlash(key)) + suffix
	if !strings.HasPrefix(p, base+string(filepath.Separator)) {
		return "", ErrInvalidKey
	}
	return p, nil
}

type localMeta struct {
	ContentType        string `json:"content_type"`
	CacheControl       string `json:"cache_control,omitempty"`
	ContentDisposition string `json:"content_disposition,omitempty"`
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opt PutOptions) (Object, error) {
	obj, err := l.path("objects", key, "")
	if err != nil {
		return Object{}, err
	}
	meta, _ := l.path("meta", key, ".json")
	n, err := l.writeAtomic(ctx, obj, r)
	if err != nil {
		return Object{}, fmt.Errorf("blob: put %s: %w", key, err)
	}
	mb, _ := json.Marshal(localMeta{ContentType: opt.ContentType, CacheControl: opt.CacheControl, ContentDisposition: opt.ContentDisposition})
	if _, err := l.writeAtomic(ctx, meta, strings.NewReader(string(mb))); err != nil {
		return Object{}, fmt.Errorf("blob: put %s metadata: %w", key, err)
	}
	return Object{Key: key, Size: n, ContentType: opt.ContentType, CacheControl: opt.CacheControl, LastModified: l.now().UTC()}, nil
}

func (l *Local) writeAtomic(ctx context.Context, dst string, r io.Reader) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(filepath.Join(l.root, "tmp"), "put-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), dst)
}

// Get implements Store; the body is an *os.File (an io.ReadSeeker).
func (l *Local) Get(_ context.Context, key string) (io.ReadCloser, Object, error) {
	obj, err := l.stat(key)
	if err != nil {
		return nil, Object{}, err
	}
	p, _ := l.path("objects", key, "")
	f, err := os.Open(p)
	if err != nil {
		return nil, Object{}, l.wrap("get", key, err)
	}
	return f, obj, nil
}

// Head implements Store.
func (l *Local) Head(_ context.Context, key string) (Object, error) { return l.stat(key) }

func (l *Local) stat(key string) (Object, error) {
	p, err := l.path("objects", key, "")
	if err != nil {
		return Object{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return Object{}, l.wrap("head", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Object{}, fmt.Errorf("blob: head %s: %w", key, ErrNotFound)
	}
	var m localMeta
	mp, _ := l.path("meta", key, ".json")
	if b, err := os.ReadFile(mp); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	if m.ContentType == "" {
		m.ContentType = "application/octet-stream"
	}
	return Object{Key: key, Size: fi.Size(), ContentType: m.ContentType, CacheControl: m.CacheControl,
		ETag: fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()), LastModified: fi.ModTime().UTC()}, nil
}

// Disposition returns the Content-Disposition stored with key.
func (l *Local) Disposition(key string) string {
	mp, err := l.path("meta", key, ".json")
	if err != nil {
		return ""
	}
	var m localMeta
	if b, err := os.ReadFile(mp); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m.ContentDisposition
}

// Exists implements Store.
func (l *Local) Exists(_ context.Context, key string) (bool, error) {
	_, err := l.stat(key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Copy implements Store.
func (l *Local) Copy(ctx context.Context, src, dst string) error {
	body, obj, err := l.Get(ctx, src)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = l.Put(ctx, dst, body, PutOptions{ContentType: obj.ContentType, CacheControl: obj.CacheControl,
		ContentDisposition: l.Disposition(src)})
	return err
}

// Delete implements Store.
func (l *Local) Delete(_ context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		for _, sub := range []struct{ dir, suffix string }{{"objects", ""}, {"meta", ".json"}} {
			p, err := l.path(sub.dir, k, sub.suffix)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w: %q", err, k))
				break
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("blob: delete %s: %w", k, err))
			}
		}
	}
	return errors.Join(errs...)
}

// PresignGet implements Store.
func (l *Local) PresignGet(_ context.Context, key string, ttl time.Duration, opt GetURLOptions) (string, error) {
	if !ValidKey(key) {
		return "", ErrInvalidKey
	}
	q := url.Values{}
	if opt.ContentDisposition != "" {
		q.Set("disp", opt.ContentDisposition)
	}
	return l.sign(http.MethodGet, key, ttl, q), nil
}

// PresignPut implements Store: the signature covers the content type and
// size, which the API's PUT route enforces.
func (l *Local) PresignPut(_ context.Context, key string, ttl time.Duration, c PutConstraints) (PresignedRequest, error) {
	if !ValidKey(key) {
		return PresignedRequest{}, ErrInvalidKey
	}
	if c.Size <= 0 || c.ContentType == "" {
		return PresignedRequest{}, errors.New("blob: presigned PUT needs a content type and a size")
	}
	q := url.Values{"ct": {c.ContentType}, "len": {strconv.FormatInt(c.Size, 10)}}
	h := http.Header{}
	h.Set("Content-Type", c.ContentType)
	h.Set("Content-Length", strconv.FormatInt(c.Size, 10))
	return PresignedRequest{Method: http.MethodPut, URL: l.sign(http.MethodPut, key, ttl, q), Headers: h,
		ExpiresAt: l.now().Add(ttl).UTC().Truncate(time.Second)}, nil
}

// PublicURL implements Store: a local folder has no CDN.
func (l *Local) PublicURL(string) string { return "" }

func (l *Local) sign(method, key string, ttl time.Duration, q url.Values) string {
	exp := l.now().Add(ttl).Unix()
	q.Set("exp", strconv.FormatInt(exp, 10))
	q.Set("sig", l.mac(method, key, q))
	return l.baseURL + LocalRoute + key + "?" + q.Encode()
}

// mac signs the method, the key and every query parameter but sig.
func (l *Local) mac(method, key string, q url.Values) string {
	m := hmac.New(sha256.New, l.secret)
	fmt.Fprintf(m, "%s\n%s\n%s\n%s\n%s\n%s", method, key, q.Get("exp"), q.Get("disp"), q.Get("ct"), q.Get("len"))
	return hex.EncodeToString(m.Sum(nil))
}

// Signed is what a verified local link allows.
type Signed struct {
	// Disposition is the Content-Disposition a GET answers with ("" for the
	// stored one).
	Disposition string
	// ContentType and Size are what a PUT must send.
	ContentType string
	Size        int64
}

// Verify checks a link's signature and expiry for method and key. Errors:
// ErrInvalidKey, ErrBadSignature, ErrExpired.
func (l *Local) Verify(method, key string, q url.Values) (Signed, error) {
	if !ValidKey(key) {
		return Signed{}, ErrInvalidKey
	}
	want := l.mac(method, key, q)
	if !hmac.Equal([]byte(want), []byte(q.Get("sig"))) {
		return Signed{}, ErrBadSignature
	}
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		return Signed{}, ErrBadSignature
	}
	if l.now().Unix() > exp {
		return Signed{}, ErrExpired
	}
	s := Signed{Disposition: q.Get("disp"), ContentType: q.Get("ct")}
	if v := q.Get("len"); v != "" {
		s.Size, _ = strconv.ParseInt(v, 10, 64)
	}
	return s, nil
}

func (l *Local) wrap(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("blob: %s %s: %w", op, key, err)
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
