// Package s3store is nixport's backend for Amazon S3 and the servers that
// speak its API (Cloudflare R2, MinIO, Ceph, versitygw, ...). Like the GCS
// backend, it lets several nixport instances share one bucket: every
// instance sees every blob, cache entry and tag another built, and leases
// (storage.Leaser) keep them from building one image twice at once.
//
// Layout in the bucket:
//
//	blobs/sha256/<hex>   blob content; Content-Type is the blob's media type
//	                     (application/octet-stream if it has none), and the
//	                     metadata key nixport-media-type holds it exactly
//	objects/<name>       small named objects (caches, tag index)
//	leases/<sha256>      lease records, named by the hash of the lease's
//	                     name (see lease.go)
//	probes/<random>      written and deleted by New, to check the server
//	refreshed/<hex>      empty; its last write is the blob's last refresh
//
// A blob's time for the garbage collector (storage.BlobStat.Modified) is
// the later of its own last write and its refresh object's, rounded up
// to the next second (S3 keeps whole seconds). S3 cannot change an
// object's time or ETag without copying all of it, which would also break
// the downloads in flight (they read If-Match the ETag), hence the second
// object. Nor can S3 delete on a condition that a refresh changes: the
// collector's last look at both objects and its delete are two requests,
// and a refresh landing between them is not seen (see DeleteBlob).
//
// Blobs are never overwritten and never visible in part. A blob is spooled
// to a local temporary file while it is hashed (its name, its digest, is
// unknown until the end, and S3 cannot rename an object); once the shared
// blob writer has verified the digest, it is uploaded under its final name
// with If-None-Match: *, as one PutObject, or, past Options.PartSize, as a
// multipart upload whose parts go up several at once and which is completed
// (with If-None-Match: * again) only after every part is stored. S3 makes
// an object visible only when its PUT or its completion succeeds, whole.
// Every upload declares the SHA-256 of what it sends (of the blob, which is
// its digest, or of each part), so the server refuses bytes damaged on the
// way. A failed upload is aborted; one abandoned by a crash is aborted by
// the next New once it is older than Options.StaleUploadAge. A 412 (the
// object exists) means another writer stored the same bytes first, which
// is success.
//
// The conditional writes (If-None-Match: * to create, If-Match: <ETag> to
// replace exactly what was read) are what CreateObject and the leases rest
// on; AWS S3 honours both on PUT (since 2024), as does versitygw. New checks
// that the server does, and refuses to start on one that does not: a
// server that ignored them would let two instances hold one lease. (Blobs
// alone would be safe even then: they are content-addressed and verified,
// so a second PUT of the same name stores the same bytes again.)
//
// Every request is retried by the SDK's standard retryer, configured here:
// exponential backoff with full jitter on 5xx, 429, throttling codes,
// conflicting conditional requests and cut or truncated connections, and
// no client-side retry quota. Every write may be repeated: a conditional
// write whose response was lost fails its condition on the retry, and the
// writer recognises its own write afterwards by a token in what it wrote.
// Every call runs under a deadline (Options.OpTimeout, or
// Options.TransferTimeout for blob content).
//
// Blob downloads are redirected (307) to short-lived presigned URLs when
// Options.PresignedURLs is set, so that layer bytes go straight from S3 to
// the client; otherwise nixport streams them, with ranged GETs.
package s3store

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/storage"
)

// Prefixes of the kinds of object in the bucket.
const (
	blobPrefix    = "blobs/sha256/"
	objectPrefix  = "objects/"
	leasePrefix   = "leases/"
	probePrefix   = "probes/"
	refreshPrefix = "refreshed/"
)

// Limits S3 sets on multipart uploads.
const (
	// MinPartSize is the smallest part but the last.
	MinPartSize = 5 << 20
	// maxParts is the most parts of one upload.
	maxParts = 10_000
)

// Defaults for the zero values of Options.
const (
	DefaultSignedURLTTL      = 5 * time.Minute
	DefaultPartSize          = 16 << 20
	DefaultUploadConcurrency = 4
	DefaultOpTimeout         = time.Minute
	DefaultTransferTimeout   = 30 * time.Minute
	DefaultRetryInitial      = 100 * time.Millisecond
	DefaultRetryMax          = 5 * time.Second
	DefaultRetryAttempts     = 10
	// DefaultStaleUploadAge is twice DefaultTransferTimeout: an upload
	// that old is no longer running anywhere.
	DefaultStaleUploadAge = 2 * DefaultTransferTimeout
)

// Options configure a Backend. Only Bucket is required.
type Options struct {
	// Bucket is the name of an existing bucket.
	Bucket string
	// Region is the bucket's region; empty: the AWS configuration's
	// (AWS_REGION, or the profile's region).
	Region string
	// Endpoint is the base URL of an S3-compatible server, such as
	// "https://minio.example:9000", or empty for AWS S3 itself.
	Endpoint string
	// ForcePathStyle addresses the bucket in the path (endpoint/bucket/key)
	// rather than in the host name (bucket.endpoint/key), as most servers
	// other than AWS need.
	ForcePathStyle bool
	// Credentials, if set, replace the standard AWS chain (environment,
	// shared files, web identity, container and instance roles).
	Credentials aws.CredentialsProvider

	// PresignedURLs makes SignedBlobURL offer presigned GET URLs, so that
	// blob downloads are redirected to S3 instead of streamed.
	PresignedURLs bool
	// SignedURLTTL is how long a presigned URL stays valid
	// (DefaultSignedURLTTL if zero).
	SignedURLTTL time.Duration

	// PartSize is the size of the parts of a multipart upload; blobs no
	// larger are uploaded with one PutObject (DefaultPartSize if zero; at
	// least MinPartSize). A blob of more than 10,000 parts gets larger
	// parts.
	PartSize int64
	// UploadConcurrency bounds the parts of one blob uploaded at once
	// (DefaultUploadConcurrency if zero).
	UploadConcurrency int
	// OpTimeout bounds each metadata operation and small object transfer,
	// retries included (DefaultOpTimeout if zero).
	OpTimeout time.Duration
	// TransferTimeout bounds each blob upload or download, retries
	// included (DefaultTransferTimeout if zero).
	TransferTimeout time.Duration
	// RetryInitial and RetryMax bound the pause between two attempts of a
	// request, which doubles from one attempt to the next, with full
	// jitter (DefaultRetryInitial and DefaultRetryMax if zero);
	// RetryAttempts bounds the attempts of one request
	// (DefaultRetryAttempts if zero).
	RetryInitial  time.Duration
	RetryMax      time.Duration
	RetryAttempts int
	// StaleUploadAge is the age past which New aborts a multipart upload of
	// a blob that is still open: its writer is gone (DefaultStaleUploadAge
	// if zero; it must exceed TransferTimeout, which bounds a live one).
	StaleUploadAge time.Duration

	// TempDir is where blobs are spooled while written (os.TempDir() if
	// empty). It needs room for the largest layers being built at once.
	TempDir string

	// Log receives the backend's logs (and the SDK's); nil discards them.
	Log logrus.FieldLogger
}

// Backend stores blobs and objects in an S3 bucket. It is safe for
// concurrent use, and any number of Backends (in any number of processes)
// may share a bucket.
type Backend struct {
	client    *s3.Client
	presigner *s3.PresignClient // nil: stream blobs rather than redirect
	bucket    string
	log       logrus.FieldLogger

	signedURLTTL    time.Duration
	partSize        int64
	concurrency     int
	opTimeout       time.Duration
	transferTimeout time.Duration
	retryInitial    time.Duration
	retryMax        time.Duration
	staleUploadAge  time.Duration
	tempDir         string

	// What the server honours beyond conditional PUTs, as New found.
	conditionalCompletion bool // If-None-Match on CompleteMultipartUpload
	conditionalDelete     bool // If-Match on DeleteObject
}

var (
	_ storage.Backend = (*Backend)(nil)
	_ storage.Leaser  = (*Backend)(nil)
)

// New returns a backend on the bucket. It checks everything it can before
// the first pull would, with an error that says what is wrong: a region and
// credentials are found, the bucket exists and may be read (HeadBucket),
// and written and deleted from, and the server honours the conditional
// writes the backend relies on (a small probe object created twice with
// If-None-Match: *, then replaced with a stale If-Match: both must fail;
// without them it refuses to start), and those it can do without (the
// completion of a multipart upload with If-None-Match: *, a delete with a
// stale If-Match: without them it says so, and does without).
// It then aborts this bucket's abandoned blob uploads.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3 storage: no bucket given")
	}
	b := &Backend{
		bucket:          opts.Bucket,
		log:             storage.ServiceLog(opts.Log, "s3", opts.Bucket),
		signedURLTTL:    cmp.Or(opts.SignedURLTTL, DefaultSignedURLTTL),
		partSize:        cmp.Or(opts.PartSize, DefaultPartSize),
		concurrency:     cmp.Or(opts.UploadConcurrency, DefaultUploadConcurrency),
		opTimeout:       cmp.Or(opts.OpTimeout, DefaultOpTimeout),
		transferTimeout: cmp.Or(opts.TransferTimeout, DefaultTransferTimeout),
		retryInitial:    cmp.Or(opts.RetryInitial, DefaultRetryInitial),
		retryMax:        cmp.Or(opts.RetryMax, DefaultRetryMax),
		staleUploadAge:  cmp.Or(opts.StaleUploadAge, DefaultStaleUploadAge),
		tempDir:         opts.TempDir,
	}
	if err := b.checkOptions(opts); err != nil {
		return nil, fmt.Errorf("s3 storage: %w", err)
	}
	storage.RemoveDeadSpools(b.tempDir, "s3", b.log)

	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer { return b.newRetryer(cmp.Or(opts.RetryAttempts, DefaultRetryAttempts)) }),
		// The SDK's own log lines would otherwise go to stderr as plain
		// text, among nixport's structured ones.
		awsconfig.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			entry := b.log.WithField("from", "aws-sdk")
			if c == logging.Warn {
				entry.Warnf(format, v...)
			} else {
				entry.Debugf(format, v...)
			}
		})),
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 storage: reading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("s3 storage: no AWS region: set AWS_REGION (S3-compatible servers usually accept us-east-1)")
	}
	if err := b.checkCredentials(ctx, cfg.Credentials); err != nil {
		return nil, err
	}
	b.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.ForcePathStyle
		// Checksums where the backend declares them (a blob's SHA-256),
		// not the SDK's default CRC32 trailers, which some S3-compatible
		// servers reject.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if opts.PresignedURLs {
		b.presigner = s3.NewPresignClient(b.client)
	}

	if err := b.checkBucket(ctx, cfg.Region); err != nil {
		return nil, err
	}
	if err := b.checkConditionalWrites(ctx); err != nil {
		return nil, err
	}
	b.abortStaleUploads(ctx)
	return b, nil
}

// checkOptions checks what can be checked without a request.
func (b *Backend) checkOptions(opts Options) error {
	if opts.Endpoint != "" {
		if _, err := storage.ParseEndpoint(opts.Endpoint); err != nil {
			return err
		}
	}
	switch {
	case b.partSize < MinPartSize:
		return fmt.Errorf("part size %d is below S3's minimum of %d", b.partSize, MinPartSize)
	case b.partSize > 5<<30:
		return fmt.Errorf("part size %d is above S3's maximum of 5 GiB", b.partSize)
	case b.concurrency < 1:
		return fmt.Errorf("upload concurrency %d is below 1", b.concurrency)
	case b.signedURLTTL < time.Second:
		return fmt.Errorf("signed URL lifetime %s is below a second", b.signedURLTTL)
	case b.signedURLTTL > 7*24*time.Hour:
		return fmt.Errorf("signed URL lifetime %s is above SigV4's maximum of 7 days", b.signedURLTTL)
	case b.staleUploadAge <= b.transferTimeout:
		return fmt.Errorf("stale upload age %s does not exceed the transfer timeout %s: live uploads would be aborted", b.staleUploadAge, b.transferTimeout)
	}
	return nil
}

// checkCredentials makes sure the credential chain finds credentials, and
// says where it looked if it does not.
func (b *Backend) checkCredentials(ctx context.Context, creds aws.CredentialsProvider) error {
	if creds == nil {
		return errors.New("s3 storage: no AWS credentials provider configured")
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	if _, err := creds.Retrieve(ctx); err != nil {
		return fmt.Errorf("s3 storage: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "+
			"or AWS_PROFILE with a shared credentials file, or run with a container or instance role): %w", err)
	}
	return nil
}

// checkBucket makes sure the bucket exists and may be read.
func (b *Backend) checkBucket(ctx context.Context, region string) error {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	_, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.bucket)})
	switch status := httpStatus(err); {
	case err == nil:
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("s3 storage: bucket %s does not exist (create it first): %w", b.bucket, err)
	case status == http.StatusForbidden:
		return fmt.Errorf("s3 storage: access to bucket %s denied: the credentials need to list, read, write and delete objects in it: %w", b.bucket, err)
	case status == http.StatusMovedPermanently:
		return fmt.Errorf("s3 storage: bucket %s is not in region %s (set AWS_REGION to the bucket's): %w", b.bucket, region, err)
	default:
		return fmt.Errorf("s3 storage: checking bucket %s: %w", b.bucket, err)
	}
}

// checkConditionalWrites writes, replaces and deletes a probe object: it
// checks the permissions the backend needs, and that the server refuses a
// create of an existing object (If-None-Match: *) and a replace of one that
// changed (If-Match).
func (b *Backend) checkConditionalWrites(ctx context.Context) error {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	key := probePrefix + crand.Text()
	put := func(cond func(*s3.PutObjectInput)) error {
		in := &s3.PutObjectInput{
			Bucket: aws.String(b.bucket),
			Key:    aws.String(key),
			Body:   strings.NewReader("nixport checks that this server honours conditional writes\n"),
		}
		cond(in)
		_, err := b.client.PutObject(ctx, in)
		return err
	}
	createOnce := func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }
	// The key is new: a 412 here is our own write, retried after its
	// response was lost.
	if err := put(createOnce); err != nil && !isPreconditionFailed(err) {
		if httpStatus(err) == http.StatusForbidden {
			return fmt.Errorf("s3 storage: writing to bucket %s denied: the credentials need to write and delete objects in it: %w", b.bucket, err)
		}
		return fmt.Errorf("s3 storage: writing a probe object to bucket %s: %w", b.bucket, err)
	}
	defer func() {
		if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}); err != nil {
			b.log.WithError(err).WithField("object", key).Warn("deleting the probe object")
		}
	}()
	var unsupported []string
	switch err := put(createOnce); {
	case err == nil:
		unsupported = append(unsupported, "If-None-Match: * (it replaced an existing object)")
	case !isPreconditionFailed(err):
		return fmt.Errorf("s3 storage: probing conditional writes in bucket %s: %w", b.bucket, err)
	}
	switch err := put(func(in *s3.PutObjectInput) { in.IfMatch = aws.String(wrongETag) }); {
	case err == nil:
		unsupported = append(unsupported, "If-Match (it replaced an object whose ETag differed)")
	case !isPreconditionFailed(err):
		return fmt.Errorf("s3 storage: probing conditional writes in bucket %s: %w", b.bucket, err)
	}
	if len(unsupported) > 0 {
		return fmt.Errorf("s3 storage: the server of bucket %s does not honour %s on PutObject; nixport needs conditional writes "+
			"to create objects once and to keep build leases exclusive between instances", b.bucket, strings.Join(unsupported, ", nor "))
	}
	if err := b.checkConditionalCompletion(ctx, key); err != nil {
		return err
	}
	return b.checkConditionalDelete(ctx, key)
}

// wrongETag is an ETag no object has.
const wrongETag = `"00000000000000000000000000000000"`

// checkConditionalCompletion completes a one-part upload of the existing
// probe object with If-None-Match: *, which must fail. A server that
// ignores the condition, or refuses it as not implemented, costs nothing
// of safety: a blob's name is its verified content, so completing it a
// second time stores the same bytes again. Uploads are then completed
// without it, and the log says so.
func (b *Backend) checkConditionalCompletion(ctx context.Context, key string) error {
	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("s3 storage: starting a multipart upload in bucket %s (large blobs need them): %w", b.bucket, err)
	}
	uploadID := created.UploadId
	finished := false
	defer func() {
		if !finished {
			b.abortUpload(ctx, key, aws.ToString(uploadID), b.log.WithField("object", key))
		}
	}()
	part, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), UploadId: uploadID, PartNumber: aws.Int32(1),
		Body: strings.NewReader("probe\n"),
	})
	if err != nil {
		return fmt.Errorf("s3 storage: uploading a part in bucket %s (large blobs need multipart uploads): %w", b.bucket, err)
	}
	_, err = b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}},
		IfNoneMatch:     aws.String("*"),
	})
	switch {
	case isPreconditionFailed(err):
		b.conditionalCompletion = true
		return nil
	case err == nil, isNotImplemented(err):
		finished = err == nil
		b.log.WithError(err).Warn("the server does not honour If-None-Match on CompleteMultipartUpload: large blobs are completed " +
			"without it, which is safe (a blob's name is its verified content: a second completion stores the same bytes)")
		return nil
	default:
		return fmt.Errorf("s3 storage: completing a multipart upload in bucket %s: %w", b.bucket, err)
	}
}

// checkConditionalDelete deletes the probe object with a stale If-Match,
// which must fail. Without it (ignored, or refused as not implemented),
// releasing a lease deletes it unconditionally, and the log says what that
// risks.
func (b *Backend) checkConditionalDelete(ctx context.Context, key string) error {
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), IfMatch: aws.String(wrongETag)})
	switch {
	case isPreconditionFailed(err):
		b.conditionalDelete = true
		return nil
	case err == nil, isNotImplemented(err):
		b.log.WithError(err).Warn("the server does not honour If-Match on DeleteObject: a released build lease is deleted without it; " +
			"a release racing another instance's takeover of an expired lease can then delete the new lease, " +
			"whose holder stops its build at its next renewal, and another instance builds the image again")
		return nil
	default:
		return fmt.Errorf("s3 storage: probing conditional deletes in bucket %s: %w", b.bucket, err)
	}
}

// Name implements storage.Backend.
func (b *Backend) Name() string { return "s3" }

// Bucket returns the name of the backend's bucket.
func (b *Backend) Bucket() string { return b.bucket }

// opContext bounds a metadata operation or small transfer.
func (b *Backend) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opTimeout)
}

// transferContext bounds a blob upload or download.
func (b *Backend) transferContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.transferTimeout)
}

// newRetryer is the SDK's standard retryer, retrying what may succeed if
// sent again, with the backend's backoff and without the client-side retry
// quota (a token bucket shared by every request, which would fail
// requests outright during an outage rather than let them back off).
func (b *Backend) newRetryer(attempts int) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return b.retryPause(attempt), nil
		})
		o.RateLimiter = ratelimit.None
		o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(moreRetryable))
	})
}

// moreRetryable adds to the SDK's retryable errors: a 429 whatever its
// code; a 409 ConditionalRequestConflict (S3's answer to a conditional
// write racing another on the same key: the retry meets the settled
// object); and a response cut short (truncated body).
func moreRetryable(err error) aws.Ternary {
	switch {
	case httpStatus(err) == http.StatusTooManyRequests, apiCode(err) == "ConditionalRequestConflict":
		return aws.TrueTernary
	case errors.Is(err, io.ErrUnexpectedEOF):
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// retryPause is the pause before attempt n+1 of a request: exponential
// from RetryInitial up to RetryMax, with full jitter.
func (b *Backend) retryPause(n int) time.Duration {
	ceiling := b.retryInitial << min(max(n-1, 0), 16)
	if ceiling > b.retryMax || ceiling <= 0 {
		ceiling = b.retryMax
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + 1
}

// httpStatus returns the HTTP status of the response that caused err, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// apiCode returns S3's error code ("NoSuchKey") of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isPreconditionFailed reports whether err is S3's 412: a condition
// (If-None-Match, If-Match) did not hold.
func isPreconditionFailed(err error) bool {
	return httpStatus(err) == http.StatusPreconditionFailed || apiCode(err) == "PreconditionFailed"
}

// isNotImplemented reports whether err is a 501: the server lacks what
// the request asked for (a condition, say).
func isNotImplemented(err error) bool {
	return httpStatus(err) == http.StatusNotImplemented || apiCode(err) == "NotImplemented"
}

// isNotExist reports whether err says the object (or the upload) does not
// exist; a missing bucket is another matter.
func isNotExist(err error) bool {
	if err == nil {
		return false
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return true
	case "NoSuchBucket":
		return false
	}
	return httpStatus(err) == http.StatusNotFound
}

// conditionErr marks S3's 412 as storage.ErrConditionFailed, for the
// protocols of the storage package.
func conditionErr(err error) error { return storage.MarkServiceError(err, isPreconditionFailed, nil) }

// storageErr is conditionErr that also marks "no such object" as
// storage.ErrNotFound.
func storageErr(err error) error {
	return storage.MarkServiceError(err, isPreconditionFailed, isNotExist)
}

// wrapErr adds context to an error from S3, mapping "no such object" to
// storage.ErrNotFound.
func wrapErr(op, what string, err error) error {
	if isNotExist(err) {
		return fmt.Errorf("%s %s: %w", op, what, storage.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}
