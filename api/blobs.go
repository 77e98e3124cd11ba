package api

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/blob"
)

// localBlobs is what the local blob store adds to BlobStore: checking the
// links it signed.
type localBlobs interface {
	Verify(method, key string, q url.Values) (blob.Signed, error)
	Disposition(key string) string
}

// blobKey is the object key of a /blobs/*key request.
func blobKey(c *gin.Context) string { return strings.TrimPrefix(c.Param("key"), "/") }

func linkError(err error) error {
	switch {
	case errors.Is(err, blob.ErrExpired):
		return portal.WrapError(portal.EFORBIDDEN, err, "the link has expired")
	case errors.Is(err, blob.ErrBadSignature):
		return portal.WrapError(portal.EFORBIDDEN, err, "the link's signature is invalid")
	}
	return portal.WrapError(portal.ENOTFOUND, err, "not found")
}

// serveBlob answers GET and HEAD /blobs/*key for the local store: a signed,
// unexpired link gets the object with its stored type and cache headers,
// nosniff (from the route's security headers), ranges, and documents as
// attachments.
func (s *Server) serveBlob(c *gin.Context) {
	lb, ok := s.deps.Blobs.(localBlobs)
	if !ok {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "not found"))
		return
	}
	key := blobKey(c)
	signed, err := lb.Verify(http.MethodGet, key, c.Request.URL.Query())
	if err != nil {
		renderError(c, linkError(err))
		return
	}
	body, obj, err := s.deps.Blobs.Get(c.Request.Context(), key)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			renderError(c, portal.WrapError(portal.ENOTFOUND, err, "not found"))
			return
		}
		renderError(c, blobError(err))
		return
	}
	defer body.Close()
	h := c.Writer.Header()
	h.Set("Content-Type", obj.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", obj.CacheControl)
	if obj.CacheControl == "" {
		h.Set("Cache-Control", cacheOriginal)
	}
	disp := signed.Disposition
	if disp == "" {
		disp = lb.Disposition(key)
	}
	if disp != "" {
		h.Set("Content-Disposition", disp)
	}
	if rs, ok := body.(io.ReadSeeker); ok {
		http.ServeContent(c.Writer, c.Request, "", obj.LastModified, rs)
		return
	}
	c.DataFromReader(http.StatusOK, obj.Size, obj.ContentType, body, nil)
}

// putBlob answers PUT /blobs/*key, the local store's presigned upload: the
// Content-Type must be the signed one and the body exactly the signed size,
// as S3 enforces for its presigned PUTs.
func (s *Server) putBlob(c *gin.Context) {
	lb, ok := s.deps.Blobs.(localBlobs)
	if !ok {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "not found"))
		return
	}
	key := blobKey(c)
	signed, err := lb.Verify(http.MethodPut, key, c.Request.URL.Query())
	if err != nil {
		renderError(c, linkError(err))
		return
	}
	if c.GetHeader("Content-Type") != signed.ContentType {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "Content-Type must be %s as signed", signed.ContentType))
		return
	}
	if c.Request.ContentLength != signed.Size {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "Content-Length must be %d as signed", signed.Size))
		return
	}
	lr := &limitReader{r: c.Request.Body, n: signed.Size}
	obj, err := s.deps.Blobs.Put(c.Request.Context(), key, lr, blob.PutOptions{ContentType: signed.ContentType,
		CacheControl: cacheOriginal, Size: signed.Size})
	if err == nil && obj.Size != signed.Size {
		err = portal.Errorf(portal.EINVALID, "the body is %d bytes, %d were signed", obj.Size, signed.Size)
	}
	if err != nil {
		_ = s.deps.Blobs.Delete(c.Request.Context(), key)
		if rerr := readError(err); portal.ErrorCode(rerr) != portal.EINTERNAL {
			renderError(c, rerr)
			return
		}
		renderError(c, blobError(err))
		return
	}
	c.Status(http.StatusOK)
}
