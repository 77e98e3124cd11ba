package testkit

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rentalportal/portal/blob"
)

// S3Config returns the test S3 server's settings (versitygw, which checks
// signatures) with a bucket name of the caller's choosing.
func S3Config(t testing.TB, bucket string) blob.S3Config {
	t.Helper()
	return blob.S3Config{
		Bucket:          bucket,
		Region:          Env(t, "TEST_S3_REGION"),
		Endpoint:        Env(t, "TEST_S3_ENDPOINT"),
		ForcePathStyle:  true,
		AccessKeyID:     Env(t, "TEST_S3_ACCESS_KEY"),
		SecretAccessKey: Env(t, "TEST_S3_SECRET_KEY"),
	}
}

// S3Bucket creates a bucket with a random name on the test S3 server and
// returns a store on it; the bucket and its objects are deleted when the
// test ends. Fields of base other than the connection settings (part size,
// SSE, CDN URL) are kept.
func S3Bucket(t testing.TB, base blob.S3Config) *blob.S3 {
	t.Helper()
	c := S3Config(t, RandomName("test-"))
	c.PartSize, c.Concurrency, c.SSE, c.CDNBaseURL = base.PartSize, base.Concurrency, base.SSE, base.CDNBaseURL
	ctx := context.Background()
	s, err := blob.NewS3(ctx, c)
	if err != nil {
		t.Fatalf("s3 client: %v", err)
	}
	cl := s.Client()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(c.Bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", c.Bucket, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(c.Bucket)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				break
			}
			for _, o := range page.Contents {
				_, _ = cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(c.Bucket), Key: o.Key})
			}
		}
		_, _ = cl.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(c.Bucket)})
	})
	return s
}

// S3Keys lists every key in the store's bucket.
func S3Keys(t testing.TB, s *blob.S3, bucket string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}
