// Package blob is object storage: an S3 bucket (aws-sdk-go-v2: presigned
// URLs, multipart for large objects, server-side encryption, a CDN base URL
// for public objects) or, for the embedded default, a local folder whose
// objects the API serves through signed, expiring links. Keys are always
// chosen by the server; ValidKey refuses anything that could escape a
// folder. It imports nothing of ours.
package blob

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// Errors callers tell apart.
var (
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("blob: object not found")
	// ErrInvalidKey: the key is empty, too long, or could escape its folder.
	ErrInvalidKey = errors.New("blob: invalid key")
)

// Object describes a stored object.
type Object struct {
	Key          string
	Size         int64
	ContentType  string
	CacheControl string
	ETag         string
	LastModified time.Time
}

// PutOptions are the headers an object is stored with.
type PutOptions struct {
	ContentType        string
	CacheControl       string
	ContentDisposition string
	// Size is the body's length when known (-1 or 0: unknown). S3 streams a
	// body of unknown length in multipart chunks.
	Size int64
}

// GetURLOptions shape a presigned GET.
type GetURLOptions struct {
	// ContentDisposition overrides the response's Content-Disposition
	// (e.g. `attachment; filename="report.pdf"`).
	ContentDisposition string
}

// PutConstraints are what a presigned PUT enforces: the client must send
// exactly this Content-Type and this Content-Length.
type PutConstraints struct {
	ContentType string
	Size        int64
}

// PresignedRequest is a request a client can make without credentials
// until ExpiresAt: the method, URL and headers it must send.
type PresignedRequest struct {
	Method    string      `json:"method"`
	URL       string      `json:"url"`
	Headers   http.Header `json:"headers"`
	ExpiresAt time.Time   `json:"expires_at"`
}

// Store is the whole storage surface; consumers declare the narrow part
// they use.
type Store interface {
	// Put streams r into key. Errors: ErrInvalidKey, or a storage error.
	Put(ctx context.Context, key string, r io.Reader, opt PutOptions) (Object, error)
	// Get opens the object; the caller closes the body. Errors:
	// ErrNotFound, ErrInvalidKey.
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// Head describes the object. Errors: ErrNotFound, ErrInvalidKey.
	Head(ctx context.Context, key string) (Object, error)
	// Exists reports whether key holds an object.
	Exists(ctx context.Context, key string) (bool, error)
	// Copy copies src to dst, keeping its headers. Errors: ErrNotFound.
	Copy(ctx context.Context, src, dst string) error
	// Delete removes the objects; missing ones are not an error.
	Delete(ctx context.Context, keys ...string) error
	// PresignGet returns a URL that reads key until ttl passes.
	PresignGet(ctx context.Context, key string, ttl time.Duration, opt GetURLOptions) (string, error)
	// PresignPut returns a request that writes key, with exactly the given
	// content type and size, until ttl passes.
	PresignPut(ctx context.Context, key string, ttl time.Duration, c PutConstraints) (PresignedRequest, error)
	// PublicURL is the CDN URL of key, or "" when there is no CDN.
	PublicURL(key string) string
	// Kind is "s3" or "local".
	Kind() string
}

// MaxKeyLen bounds keys (S3 allows 1024 bytes).
const MaxKeyLen = 512

// ValidKey reports whether key is a safe object key: 1..MaxKeyLen bytes of
// [A-Za-z0-9._-] in segments separated by single slashes, no segment "." or
// "..", no leading or trailing slash.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// joinURL joins a base URL and a key.
func joinURL(base, key string) string {
	return strings.TrimRight(base, "/") + "/" + key
}
