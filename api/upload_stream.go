package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/blob"
	"github.com/rentalportal/portal/store"
)

// maxBytes is the per-file limit of a kind.
func (s *Server) maxBytes(kind string) int64 {
	if kind == store.UploadKindDocument {
		return s.cfg.Uploads.MaxDocumentBytes
	}
	return s.cfg.Uploads.MaxImageBytes
}

// errTooLarge is what limitReader returns past its limit.
var errTooLarge = errors.New("file over its size limit")

// limitReader fails with errTooLarge once more than n bytes were read, so
// that an over-limit body never completes an upload.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errTooLarge
	}
	return n, err
}

// storeFile sniffs a file's head, refuses types not allowed for the kind
// (415) and images whose header declares too many pixels (422), then
// streams head and rest into storage under a new key, at most the kind's
// limit (413). Nothing is buffered beyond the sniffed head.
func (s *Server) storeFile(ctx context.Context, owner, kind, filename string, r io.Reader) (*store.Upload, error) {
	br := bufio.NewReaderSize(r, sniffLen)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, readError(err)
	}
	ct := sniff(head)
	if !allowedTypes[kind][ct] {
		return nil, portal.Errorf(portal.EUNSUPPORTED, "the file is not an allowed %s type (%s)", kind, allowedList(kind))
	}
	if err := s.checkPixels(kind, ct, head); err != nil {
		return nil, err
	}
	u := newUpload(owner, kind, ct, filename)
	limit := s.maxBytes(kind)
	opt := blob.PutOptions{ContentType: ct, CacheControl: cacheOriginal, Size: -1}
	if kind == store.UploadKindDocument {
		opt.ContentDisposition = disposition(u)
	}
	obj, err := s.deps.Blobs.Put(ctx, u.ObjectKey, &limitReader{r: br, n: limit}, opt)
	if err != nil {
		_ = s.deps.Blobs.Delete(context.WithoutCancel(ctx), u.ObjectKey)
		if errors.Is(err, errTooLarge) {
			return nil, portal.Errorf(portal.ETOOLARGE, "a %s may be at most %d bytes", kind, limit)
		}
		if rerr := readError(err); portal.ErrorCode(rerr) != portal.EINTERNAL {
			return nil, rerr
		}
		return nil, blobError(err)
	}
	if obj.Size == 0 {
		_ = s.deps.Blobs.Delete(context.WithoutCancel(ctx), u.ObjectKey)
		return nil, portal.Errorf(portal.EINVALID, "the file is empty")
	}
	u.Size = obj.Size
	u.Status = store.UploadReady
	if kind == store.UploadKindImage {
		u.Status = store.UploadProcessing
	}
	return u, nil
}

func (s *Server) checkPixels(kind, ct string, head []byte) error {
	if kind != store.UploadKindImage {
		return nil
	}
	if w, h, ok := imagePixels(head); ok && int64(w)*int64(h) > s.cfg.Uploads.MaxImagePixels {
		return portal.Errorf(portal.EUNPROCESSABLE, "the image is %dx%d: at most %d pixels are allowed", w, h, s.cfg.Uploads.MaxImagePixels)
	}
	return nil
}

// readError maps failures reading the request body: over the whole
// request's limit is 413, a client that went away or sent a broken body 400.
func readError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		return portal.WrapError(portal.ETOOLARGE, err, "request body too large")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, multipart.ErrMessageTooLarge):
		return portal.WrapError(portal.EINVALID, err, "malformed multipart body")
	}
	var pe *portal.Error
	if errors.As(err, &pe) {
		return err
	}
	return portal.WrapError(portal.EINTERNAL, err, "read upload")
}

func allowedList(kind string) string {
	var out []string
	for _, t := range []string{"image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "application/pdf"} {
		if allowedTypes[kind][t] {
			out = append(out, t)
		}
	}
	return strings.Join(out, ", ")
}
