// Package gcs is nixport's Google Cloud Storage backend. It lets several
// stateless nixport instances behind one load balancer share one bucket:
// every instance sees every blob, cache entry and tag another built, and
// leases (storage.Leaser) keep them from building one image twice at once.
//
// Layout in the bucket:
//
//	blobs/sha256/<hex>   blob content; ContentType is the blob's media type
//	                     (application/octet-stream if it has none), and the
//	                     metadata key nixport-media-type holds it exactly
//	objects/<name>       small named objects (caches, tag index)
//	leases/<name>        lease records (see lease.go)
//
// A blob's time for the garbage collector (storage.BlobStat.Modified) is
// the latest of its creation, its last metadata update, and the time
// RefreshBlob wrote into its metadata (key nixport-refreshed), which
// bumps its metageneration; DeleteBlob deletes only the generation and
// metageneration it judged, so a refresh or a new copy in between makes
// the delete fail (412) and the blob stays. (fake-gcs-server ignores
// preconditions on delete, and does not bump the metageneration: against
// it the look and the delete are two steps.)
//
// Blobs are never overwritten and never visible in part: a blob is spooled
// to a local temporary file while it is hashed (its name is unknown until
// the end), then uploaded under its final name with a DoesNotExist
// precondition, as one request or as a resumable upload in chunks of
// Options.ChunkSize. GCS makes the object visible only once the upload
// finalises, and refuses to finalise it unless its bytes match the CRC32C
// declared up front. A 412 (the object exists) means another writer stored
// the same bytes first, which is success.
//
// Every request is retried with exponential backoff and jitter on 408, 429,
// 5xx and connection errors, including writes: every write is idempotent,
// either by its precondition or by writing the same value again, and a
// write whose response was lost is recognised afterwards by a token the
// writer puts in the object's metadata. Every call runs under a deadline
// (Options.OpTimeout, or Options.TransferTimeout for blob content).
//
// Blob downloads are redirected (307) to short-lived V4 signed URLs when a
// signing key is configured, so that layer bytes go straight from GCS to the
// client; otherwise nixport streams them, with Range support.
package gcs

import (
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/nixport/nixport/storage"
)

// Prefixes of the three kinds of object in the bucket.
const (
	blobPrefix   = "blobs/sha256/"
	objectPrefix = "objects/"
	leasePrefix  = "leases/"
)

// Defaults for the zero values of Options.
const (
	DefaultSignedURLTTL    = 5 * time.Minute
	DefaultChunkSize       = 8 << 20
	DefaultOpTimeout       = time.Minute
	DefaultTransferTimeout = 30 * time.Minute
	DefaultRetryInitial    = 100 * time.Millisecond
	DefaultRetryMax        = 5 * time.Second
	DefaultRetryAttempts   = 10
	DefaultUploadAttempts  = 5
	DefaultRefreshSlack    = 5 * time.Minute
)

// Options configure a Backend. Only Bucket is required.
type Options struct {
	// Bucket is the name of an existing bucket.
	Bucket string

	// SigningKey, with SigningAccount, makes ServeBlob redirect to V4 signed
	// URLs instead of streaming blobs itself. It is the service account's
	// RSA private key, PEM-encoded (PKCS#1 or PKCS#8), or the whole JSON key
	// file of the service account, in which case SigningAccount defaults
	// to the file's client_email.
	SigningKey []byte
	// SigningAccount is the service account's e-mail address.
	SigningAccount string
	// SignedURLTTL is how long a signed URL stays valid
	// (DefaultSignedURLTTL if zero).
	SignedURLTTL time.Duration

	// Endpoint is the base URL of a GCS emulator, such as
	// "http://127.0.0.1:4443" (fake-gcs-server), or empty for GCS itself.
	// New then builds a client for it without authentication, and signed
	// URLs point at it (over plain HTTP if its scheme is http).
	Endpoint string
	// Client, if set, is used instead of one New builds (tests share one
	// client between backends); New's other client settings are then
	// ignored, and Close does not close it.
	Client *gstorage.Client
	// ClientOptions are passed to gstorage.NewClient (credentials, say).
	// Without any, the client finds Application Default Credentials.
	ClientOptions []option.ClientOption

	// ChunkSize is the size of the chunks of a resumable upload, and so
	// the memory an upload holds (DefaultChunkSize if zero). Blobs no
	// larger are uploaded in a single request.
	ChunkSize int
	// OpTimeout bounds each metadata operation and small object transfer,
	// retries included (DefaultOpTimeout if zero).
	OpTimeout time.Duration
	// TransferTimeout bounds each blob upload or download, retries
	// included (DefaultTransferTimeout if zero).
	TransferTimeout time.Duration
	// RetryInitial and RetryMax bound the pause between two attempts of a
	// request, which doubles from the first to the second with full jitter
	// (DefaultRetryInitial and DefaultRetryMax if zero); RetryAttempts
	// bounds the attempts of one request (DefaultRetryAttempts if zero).
	RetryInitial  time.Duration
	RetryMax      time.Duration
	RetryAttempts int
	// UploadAttempts bounds how many times a blob upload that failed beyond
	// its own retries starts again from the spooled copy
	// (DefaultUploadAttempts if zero).
	UploadAttempts int

	// RefreshSlack: RefreshBlob writes nothing to a blob written or
	// refreshed less than this long ago (DefaultRefreshSlack if zero).
	// GCS takes about one update of an object a second, and the base
	// layers every build reuses would be refreshed by each; a garbage
	// collection's grace period must exceed it.
	RefreshSlack time.Duration

	// TempDir is where blobs are spooled while written (os.TempDir() if
	// empty). It needs room for the largest layers being built at once.
	TempDir string

	// Log receives the backend's logs; nil discards them.
	Log logrus.FieldLogger
}

// Backend stores blobs and objects in a GCS bucket. It is safe for
// concurrent use, and any number of Backends (in any number of processes)
// may share a bucket.
type Backend struct {
	client     *gstorage.Client
	ownsClient bool
	bucket     *gstorage.BucketHandle
	name       string
	log        logrus.FieldLogger

	signer *signer // nil: stream blobs rather than redirect

	chunkSize       int
	opTimeout       time.Duration
	transferTimeout time.Duration
	retry           gax.Backoff
	uploadAttempts  int
	refreshSlack    time.Duration
	tempDir         string
}

var (
	_ storage.Backend = (*Backend)(nil)
	_ storage.Leaser  = (*Backend)(nil)
)

// New returns a backend on the bucket, checking that it can list the
// bucket's objects so that a missing bucket or permission fails here, with
// a clear error, rather than on the first pull.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if opts.Bucket == "" {
		return nil, errors.New("gcs storage: no bucket given")
	}
	b := &Backend{
		name:            opts.Bucket,
		log:             storage.ServiceLog(opts.Log, "gcs", opts.Bucket),
		chunkSize:       cmp.Or(opts.ChunkSize, DefaultChunkSize),
		opTimeout:       cmp.Or(opts.OpTimeout, DefaultOpTimeout),
		transferTimeout: cmp.Or(opts.TransferTimeout, DefaultTransferTimeout),
		uploadAttempts:  cmp.Or(opts.UploadAttempts, DefaultUploadAttempts),
		refreshSlack:    cmp.Or(opts.RefreshSlack, DefaultRefreshSlack),
		tempDir:         opts.TempDir,
		retry: gax.Backoff{
			Initial:    cmp.Or(opts.RetryInitial, DefaultRetryInitial),
			Max:        cmp.Or(opts.RetryMax, DefaultRetryMax),
			Multiplier: 2,
		},
	}
	storage.RemoveDeadSpools(b.tempDir, "gcs", b.log)
	if b.chunkSize < googleapi.MinUploadChunkSize {
		return nil, fmt.Errorf("gcs storage: chunk size %d is below the minimum of %d", b.chunkSize, googleapi.MinUploadChunkSize)
	}
	var endpoint *url.URL
	if opts.Endpoint != "" {
		u, err := storage.ParseEndpoint(opts.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("gcs storage: %w", err)
		}
		endpoint = u
	}
	if len(opts.SigningKey) > 0 || opts.SigningAccount != "" {
		s, err := newSigner(opts.SigningKey, opts.SigningAccount, cmp.Or(opts.SignedURLTTL, DefaultSignedURLTTL), endpoint)
		if err != nil {
			return nil, fmt.Errorf("gcs storage: signing: %w", err)
		}
		b.signer = s
	}

	b.client = opts.Client
	if b.client == nil {
		clientOpts := opts.ClientOptions
		if endpoint != nil {
			clientOpts = append([]option.ClientOption{
				option.WithEndpoint(endpoint.Scheme + "://" + endpoint.Host + "/storage/v1/"),
				option.WithoutAuthentication(),
			}, clientOpts...)
		}
		c, err := gstorage.NewClient(ctx, clientOpts...)
		if err != nil {
			return nil, fmt.Errorf("gcs storage: creating client: %w", err)
		}
		b.client, b.ownsClient = c, true
	}
	b.bucket = b.client.Bucket(opts.Bucket).Retryer(
		// Every operation is idempotent (see the package comment), so
		// every one may be retried.
		gstorage.WithPolicy(gstorage.RetryAlways),
		gstorage.WithBackoff(b.retry),
		gstorage.WithMaxAttempts(cmp.Or(opts.RetryAttempts, DefaultRetryAttempts)),
	)

	if err := b.checkAccess(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// checkAccess lists at most one blob.
func (b *Backend) checkAccess(ctx context.Context) error {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	it := b.bucket.Objects(ctx, &gstorage.Query{Prefix: blobPrefix})
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		return fmt.Errorf("gcs storage: listing bucket %s: %w", b.name, err)
	}
	return nil
}

// Name implements storage.Backend.
func (b *Backend) Name() string { return "gcs" }

// Bucket returns the name of the backend's bucket.
func (b *Backend) Bucket() string { return b.name }

// Close closes the client if New created it. The backend must not be used
// afterwards.
func (b *Backend) Close() error {
	if !b.ownsClient {
		return nil
	}
	return b.client.Close()
}

// opContext bounds a metadata operation or small transfer.
func (b *Backend) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opTimeout)
}

// transferContext bounds a blob upload or download.
func (b *Backend) transferContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.transferTimeout)
}

// Metadata keys the backend sets on objects.
const (
	metaMediaType = "nixport-media-type" // a blob's media type, exactly
	metaToken     = "nixport-write"      // unique per write, to recognise our own
	metaRefreshed = "nixport-refreshed"  // a blob's last refresh (RFC 3339)
)

// smallWrite describes the upload of a small object, held whole in memory.
type smallWrite struct {
	key      string
	data     []byte
	conds    *gstorage.Conditions // nil: unconditional
	metadata map[string]string
}

// writeSmall uploads a small object in a single request (retried by the
// client from the buffered data), under a deadline. It returns the new
// object's attributes, or the error of the write, such as a 412 when conds
// fail.
//
// The client does not retry a write whose response fails while it reads
// it; nor does it after its attempts are spent. writeSmall then writes
// again, since every write here may be repeated: a repeated conditional
// write fails its condition if the first went through, which the callers
// tell apart by the token in the metadata.
func (b *Backend) writeSmall(ctx context.Context, sw smallWrite) (*gstorage.ObjectAttrs, error) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		attrs, err := b.writeSmallOnce(ctx, sw)
		if err == nil || !gstorage.ShouldRetry(err) || ctx.Err() != nil || attempt >= b.uploadAttempts {
			return attrs, err
		}
		pause := b.uploadPause(attempt)
		b.log.WithError(err).WithFields(logrus.Fields{"object": sw.key, "attempt": attempt, "pause": pause.String()}).Debug("write failed, writing again")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (after %w)", ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

func (b *Backend) writeSmallOnce(ctx context.Context, sw smallWrite) (*gstorage.ObjectAttrs, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	obj := b.bucket.Object(sw.key)
	if sw.conds != nil {
		obj = obj.If(*sw.conds)
	}
	w := obj.NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	w.Metadata = sw.metadata
	// One chunk bigger than the data: a single request, retried from the
	// buffer, and a buffer no bigger than needed (rounded up to 256 KiB).
	w.ChunkSize = len(sw.data) + 1
	if _, err := w.Write(sw.data); err != nil {
		cancel() // makes Close return at once
		w.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return w.Attrs(), nil
}

// isPreconditionFailed reports whether err is GCS's 412: the object exists
// (DoesNotExist) or has another generation (GenerationMatch).
func isPreconditionFailed(err error) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed
}

// isNotExist reports whether err says the object does not exist.
func isNotExist(err error) bool {
	var gerr *googleapi.Error
	return errors.Is(err, gstorage.ErrObjectNotExist) || (errors.As(err, &gerr) && gerr.Code == http.StatusNotFound)
}

// conditionErr marks GCS's 412 as storage.ErrConditionFailed, for the
// protocols of the storage package.
func conditionErr(err error) error { return storage.MarkServiceError(err, isPreconditionFailed, nil) }

// storageErr is conditionErr that also marks "no such object" as
// storage.ErrNotFound.
func storageErr(err error) error {
	return storage.MarkServiceError(err, isPreconditionFailed, isNotExist)
}

// wrapErr adds context to an error from GCS, mapping "no such object" to
// storage.ErrNotFound.
func wrapErr(op, what string, err error) error {
	if isNotExist(err) {
		return fmt.Errorf("%s %s: %w", op, what, storage.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// signer makes V4 signed URLs with a service account's private key, so
// that signing needs no network call.
type signer struct {
	account  string
	key      []byte // PEM
	ttl      time.Duration
	hostname string // "" for the client's own (storage.googleapis.com)
	insecure bool   // plain http (an emulator)
}

func newSigner(key []byte, account string, ttl time.Duration, endpoint *url.URL) (*signer, error) {
	if len(key) == 0 || (account == "" && !isJSONKey(key)) {
		return nil, errors.New("both a signing key and a signing account are needed")
	}
	if isJSONKey(key) {
		var sa struct {
			PrivateKey  string `json:"private_key"`
			ClientEmail string `json:"client_email"`
		}
		if err := json.Unmarshal(key, &sa); err != nil {
			return nil, fmt.Errorf("reading JSON key: %w", err)
		}
		if sa.PrivateKey == "" {
			return nil, errors.New("the JSON key has no private_key")
		}
		key = []byte(sa.PrivateKey)
		if account == "" {
			account = sa.ClientEmail
		}
		if account == "" {
			return nil, errors.New("the JSON key has no client_email, and no signing account is given")
		}
	}
	if _, err := ParseRSAKey(key); err != nil {
		return nil, err
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("signed URL lifetime %s is below a second", ttl)
	}
	if ttl > 7*24*time.Hour {
		return nil, fmt.Errorf("signed URL lifetime %s is above V4's maximum of 7 days", ttl)
	}
	s := &signer{account: account, key: key, ttl: ttl}
	if endpoint != nil {
		s.hostname = endpoint.Host
		s.insecure = endpoint.Scheme == "http"
	}
	return s, nil
}

func isJSONKey(key []byte) bool {
	return strings.HasPrefix(strings.TrimSpace(string(key)), "{")
}

// ParseRSAKey parses a PEM-encoded RSA private key, PKCS#1 or PKCS#8.
func ParseRSAKey(pemKey []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return nil, errors.New("signing key: no PEM block found")
	}
	if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: neither PKCS#1 nor PKCS#8: %w", err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: a %T, not an RSA key", parsed)
	}
	return key, nil
}

// signedURL returns a URL that GETs the object until it expires.
func (b *Backend) signedURL(key string) (string, error) {
	s := b.signer
	return b.bucket.SignedURL(key, &gstorage.SignedURLOptions{
		GoogleAccessID: s.account,
		PrivateKey:     s.key,
		Method:         http.MethodGet,
		// The client takes X-Goog-Expires as the whole seconds from its
		// own reading of the clock, a moment later than ours: half a
		// second more makes it the configured lifetime exactly.
		Expires:  time.Now().Add(s.ttl.Truncate(time.Second) + time.Second/2),
		Scheme:   gstorage.SigningSchemeV4,
		Hostname: s.hostname,
		Insecure: s.insecure,
	})
}

// createSpool makes the local file a blob is written to before upload.
func (b *Backend) createSpool() (*os.File, error) {
	return storage.CreateSpool(b.tempDir, "gcs")
}
