package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	tm "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config configures an S3 (or S3-compatible) bucket.
type S3Config struct {
	Bucket   string
	Region   string
	Endpoint string // empty: AWS; set for MinIO, versitygw, R2, ...
	// ForcePathStyle addresses the bucket as endpoint/bucket/key rather than
	// bucket.endpoint/key (most S3-compatible servers need it).
	ForcePathStyle bool
	// AccessKeyID and SecretAccessKey, when both set, are static
	// credentials; otherwise the SDK's default chain (environment, shared
	// files, web identity, ECS/EC2 roles) is used.
	AccessKeyID     string
	SecretAccessKey string
	// SSE is the server-side encryption to ask for: "", "AES256" or "aws:kms".
	SSE string
	// CDNBaseURL, when set, is where public objects are served from
	// (CDNBaseURL + "/" + key).
	CDNBaseURL string
	// PartSize is the multipart chunk size (0: 5 MiB, S3's minimum). A body
	// up to PartSize is sent in one PutObject from one buffer; a larger one
	// as a multipart upload holding about PartSize × (Concurrency + 2).
	PartSize int64
	// Concurrency is the parts uploaded at once per object (0: 2).
	Concurrency int
	// HTTPClient, if set, replaces the SDK's.
	HTTPClient *http.Client
}

// S3 stores objects in an S3 bucket.
type S3 struct {
	cfg      S3Config
	client   *s3.Client
	presign  *s3.PresignClient
	transfer *tm.Client
}

// NewS3 builds the client; it makes no request.
func NewS3(ctx context.Context, c S3Config) (*S3, error) {
	if c.Bucket == "" {
		return nil, errors.New("blob: S3 bucket is required")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PartSize <= 0 {
		c.PartSize = 5 << 20
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(c.Region),
		// Checksums only where S3 requires them: a presigned PUT must not
		// demand a checksum header the browser cannot compute, and
		// S3-compatible servers differ in their support.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if c.AccessKeyID != "" && c.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("blob: load AWS config: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = c.ForcePathStyle
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
	return &S3{
		cfg:     c,
		client:  client,
		presign: s3.NewPresignClient(client),
		transfer: tm.New(client, func(o *tm.Options) {
			o.PartSizeBytes = c.PartSize
			o.MultipartUploadThreshold = c.PartSize
			o.Concurrency = c.Concurrency
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		}),
	}, nil
}

// Client is the underlying S3 client (tests create and delete buckets).
func (s *S3) Client() *s3.Client { return s.client }

// Kind implements Store.
func (s *S3) Kind() string { return "s3" }

func (s *S3) sse() types.ServerSideEncryption { return types.ServerSideEncryption(s.cfg.SSE) }

// Put implements Store: the transfer manager reads the body a part at a
// time, sending one PutObject for a small body and a multipart upload for a
// large one, so memory stays at a few parts whatever the size.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, opt PutOptions) (Object, error) {
	if !ValidKey(key) {
		return Object{}, ErrInvalidKey
	}
	cr := &countingReader{r: r}
	in := &tm.UploadObjectInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(key),
		Body:                 cr,
		ContentType:          optional(opt.ContentType),
		CacheControl:         optional(opt.CacheControl),
		ContentDisposition:   optional(opt.ContentDisposition),
		ServerSideEncryption: tmtypes.ServerSideEncryption(s.cfg.SSE),
	}
	out, err := s.transfer.UploadObject(ctx, in)
	if err != nil {
		return Object{}, fmt.Errorf("blob: put %s: %w", key, err)
	}
	return Object{Key: key, Size: cr.n, ContentType: opt.ContentType, CacheControl: opt.CacheControl, ETag: aws.ToString(out.ETag)}, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if !ValidKey(key) {
		return nil, Object{}, ErrInvalidKey
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, Object{}, s.wrap("get", key, err)
	}
	return out.Body, Object{Key: key, Size: aws.ToInt64(out.ContentLength), ContentType: aws.ToString(out.ContentType),
		CacheControl: aws.ToString(out.CacheControl), ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}, nil
}

// Head implements Store.
func (s *S3) Head(ctx context.Context, key string) (Object, error) {
	if !ValidKey(key) {
		return Object{}, ErrInvalidKey
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return Object{}, s.wrap("head", key, err)
	}
	return Object{Key: key, Size: aws.ToInt64(out.ContentLength), ContentType: aws.ToString(out.ContentType),
		CacheControl: aws.ToString(out.CacheControl), ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}, nil
}

// Exists implements Store.
func (s *S3) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.Head(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Copy implements Store.
func (s *S3) Copy(ctx context.Context, src, dst string) error {
	if !ValidKey(src) || !ValidKey(dst) {
		return ErrInvalidKey
	}
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(dst),
		CopySource:           aws.String(url.PathEscape(s.cfg.Bucket) + "/" + src),
		MetadataDirective:    types.MetadataDirectiveCopy,
		ServerSideEncryption: s.sse(),
	})
	if err != nil {
		return s.wrap("copy", src, err)
	}
	return nil
}

// Delete implements Store. Keys of one upload are few, so one request per
// key keeps to the API every S3-compatible server implements the same way.
func (s *S3) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		if !ValidKey(k) {
			errs = append(errs, fmt.Errorf("%w: %q", ErrInvalidKey, k))
			continue
		}
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k)})
		if err != nil && !isNotFound(err) {
			errs = append(errs, s.wrap("delete", k, err))
		}
	}
	return errors.Join(errs...)
}

// PresignGet implements Store.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration, opt GetURLOptions) (string, error) {
	if !ValidKey(key) {
		return "", ErrInvalidKey
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket:                     aws.String(s.cfg.Bucket),
		Key:                        aws.String(key),
		ResponseContentDisposition: optional(opt.ContentDisposition),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("blob: presign get %s: %w", key, err)
	}
	return req.URL, nil
}

// PresignPut implements Store: Content-Type and Content-Length are signed
// headers, so S3 refuses the PUT if the client sends another type or size.
func (s *S3) PresignPut(ctx context.Context, key string, ttl time.Duration, c PutConstraints) (PresignedRequest, error) {
	if !ValidKey(key) {
		return PresignedRequest{}, ErrInvalidKey
	}
	if c.Size <= 0 || c.ContentType == "" {
		return PresignedRequest{}, errors.New("blob: presigned PUT needs a content type and a size")
	}
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(s.cfg.Bucket),
		Key:                  aws.String(key),
		ContentType:          aws.String(c.ContentType),
		ContentLength:        aws.Int64(c.Size),
		ServerSideEncryption: s.sse(),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return PresignedRequest{}, fmt.Errorf("blob: presign put %s: %w", key, err)
	}
	h := http.Header{}
	for k, v := range req.SignedHeader {
		if !strings.EqualFold(k, "Host") {
			h[http.CanonicalHeaderKey(k)] = v
		}
	}
	h.Set("Content-Type", c.ContentType)
	h.Set("Content-Length", fmt.Sprint(c.Size))
	return PresignedRequest{Method: http.MethodPut, URL: req.URL, Headers: h, ExpiresAt: time.Now().Add(ttl).UTC()}, nil
}

// PublicURL implements Store.
func (s *S3) PublicURL(key string) string {
	if s.cfg.CDNBaseURL == "" {
		return ""
	}
	return joinURL(s.cfg.CDNBaseURL, key)
}

func (s *S3) wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("blob: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("blob: %s %s: %w", op, key, err)
}

func isNotFound(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchObject":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
