package gcs

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"google.golang.org/api/googleapi"

	"github.com/nixport/nixport/storage"
)

// blobCacheControl lets caches keep what is served from a blob's object
// (through a signed URL) for good: the content at a digest never changes.
const blobCacheControl = "max-age=31536000, immutable"

// defaultContentType is the Content-Type of a blob without a media type.
const defaultContentType = "application/octet-stream"

var crc32cTable = crc32.MakeTable(crc32.Castagnoli)

// blobKey returns the object name of the blob with the given digest. Only
// valid sha256 digests are accepted; anything else cannot be stored here,
// so it is reported as not found.
func blobKey(dgst digest.Digest) (string, error) {
	hex, err := storage.SHA256Hex(dgst)
	if err != nil {
		return "", fmt.Errorf("%w: %w", err, storage.ErrNotFound)
	}
	return blobPrefix + hex, nil
}

// NewBlobWriter implements storage.Backend: storage.NewBlobWriter around a
// local spool file, which Commit uploads under the blob's final name.
func (b *Backend) NewBlobWriter(ctx context.Context, mediaType string) (storage.BlobWriter, error) {
	return storage.NewBlobWriter(ctx, mediaType, b.log, func() (storage.BlobSink, error) {
		f, err := b.createSpool()
		if err != nil {
			return nil, err
		}
		return &blobSink{backend: b, file: f, crc: crc32.New(crc32cTable)}, nil
	})
}

// blobSink is a blob's storage.BlobSink: it spools into a local file,
// computing the CRC32C that the upload declares as it goes.
type blobSink struct {
	backend *Backend
	file    *os.File
	crc     hash.Hash32
}

func (s *blobSink) Write(p []byte) (int, error) {
	n, err := s.file.Write(p)
	s.crc.Write(p[:n])
	if err != nil {
		return n, fmt.Errorf("spooling: %w", err)
	}
	return n, nil
}

func (s *blobSink) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	return s.backend.RefreshBlob(ctx, dgst)
}

// Discard implements storage.BlobSink: it removes the spool file.
func (s *blobSink) Discard() error {
	s.file.Close()
	if err := os.Remove(s.file.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing spool file: %w", err)
	}
	return nil
}

// Publish implements storage.BlobSink: it uploads the spooled bytes under
// the blob's name, starting again from the spool when an attempt fails
// beyond the client's own retries of its requests (a resumable upload whose
// session broke, say).
func (s *blobSink) Publish(ctx context.Context, info storage.BlobInfo) (storage.BlobInfo, error) {
	b := s.backend
	log := b.log.WithFields(logrus.Fields{"digest": info.Digest, "size": info.Size})
	var err error
	for attempt := 1; ; attempt++ {
		var stored storage.BlobInfo
		stored, err = s.uploadOnce(ctx, info)
		if err == nil {
			if stored != info {
				log.Debug("blob stored meanwhile by another writer")
			} else {
				log.WithField("attempt", attempt).Debug("blob stored")
			}
			return stored, nil
		}
		if ctx.Err() != nil || !retryableUpload(err) || attempt >= b.uploadAttempts {
			return storage.BlobInfo{}, fmt.Errorf("upload (attempt %d of %d): %w", attempt, b.uploadAttempts, err)
		}
		pause := b.uploadPause(attempt)
		log.WithError(err).WithFields(logrus.Fields{"attempt": attempt, "pause": pause.String()}).Warn("blob upload failed, starting again")
		select {
		case <-ctx.Done():
			return storage.BlobInfo{}, fmt.Errorf("upload (attempt %d): %w (after %w)", attempt, ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

// uploadPause is the pause before upload attempt n+1: exponential, with
// full jitter.
func (b *Backend) uploadPause(n int) time.Duration {
	ceiling := b.retry.Initial << min(n, 16)
	if ceiling > b.retry.Max || ceiling <= 0 {
		ceiling = b.retry.Max
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + 1
}

// retryableUpload reports whether a failed upload may succeed if started
// again. Authorisation failures will not; anything else may be transient,
// including a 400 or 404 from a resumable upload session that went wrong.
func retryableUpload(err error) bool {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code != http.StatusUnauthorized && gerr.Code != http.StatusForbidden
	}
	return true
}

// uploadOnce makes one upload of the spooled bytes with a DoesNotExist
// precondition. A 412 means the object exists already: then it returns the
// stored blob's info, having checked its size and CRC32C against ours.
func (s *blobSink) uploadOnce(ctx context.Context, info storage.BlobInfo) (storage.BlobInfo, error) {
	b := s.backend
	key, err := blobKey(info.Digest)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	tctx, cancel := b.transferContext(ctx)
	defer cancel()
	obj := b.bucket.Object(key).If(gstorage.Conditions{DoesNotExist: true})
	if info.Size >= int64(b.chunkSize) {
		// A resumable upload: a chunk is sent again in its session only
		// after the server answered that it failed (408, 429, 5xx). After
		// a lost response, the chunk may have been stored, and a server
		// that does not track offsets (fake-gcs-server appends it again)
		// would store it twice: the upload then starts afresh instead.
		obj = obj.Retryer(gstorage.WithErrorFunc(serverAnsweredRetryable))
	}
	ow := obj.NewWriter(tctx)
	ow.ContentType = defaultContentType
	ow.Metadata = map[string]string{}
	if info.MediaType != "" {
		ow.ContentType = info.MediaType
		ow.Metadata[metaMediaType] = info.MediaType
	}
	ow.CacheControl = blobCacheControl
	// GCS refuses to finalise an object whose bytes do not match the
	// declared checksum: whatever happens to a chunk on its way, nothing
	// but these bytes can appear under this name.
	crc := s.crc.Sum32()
	ow.CRC32C = crc
	ow.SendCRC32C = true
	ow.ChunkSize = b.chunkSize

	_, err = io.Copy(ow, io.NewSectionReader(s.file, 0, info.Size))
	if err != nil {
		cancel() // makes Close return at once, uploading nothing
		ow.Close()
		return storage.BlobInfo{}, fmt.Errorf("uploading: %w", err)
	}
	err = ow.Close()
	var attrs *gstorage.ObjectAttrs
	switch {
	case err == nil:
		attrs = ow.Attrs()
	case isPreconditionFailed(err):
		// Stored before, by another writer or by this one's request
		// whose response was lost.
		attrs, err = b.bucket.Object(key).Attrs(tctx)
		if err != nil {
			return storage.BlobInfo{}, fmt.Errorf("checking the blob stored meanwhile: %w", err)
		}
	default:
		return storage.BlobInfo{}, fmt.Errorf("uploading: %w", err)
	}
	if attrs.Size != info.Size || attrs.CRC32C != crc {
		// Cannot happen with a server that checks the declared CRC32C.
		// The object cannot hold this blob, and would keep it from ever
		// being stored: remove it, and let the next attempt store it.
		b.removeCorrupt(tctx, key, attrs, info, crc)
		return storage.BlobInfo{}, fmt.Errorf("the object stored has size %d and CRC32C %08x, want %d and %08x", attrs.Size, attrs.CRC32C, info.Size, crc)
	}
	return blobInfo(info.Digest, attrs), nil
}

// serverAnsweredRetryable reports whether err is a retryable status the
// server answered with (as opposed to a connection that failed, when the
// request may or may not have reached it).
func serverAnsweredRetryable(err error) bool {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return false
	}
	return gerr.Code == http.StatusRequestTimeout || gerr.Code == http.StatusTooManyRequests || gerr.Code >= 500
}

// removeCorrupt deletes the generation of a blob's object that does not
// hold the blob. Its size or CRC32C differ from the blob's, so whatever it
// holds is not the content its name promises, and nobody can rely on it.
func (b *Backend) removeCorrupt(ctx context.Context, key string, attrs *gstorage.ObjectAttrs, info storage.BlobInfo, crc uint32) {
	log := b.log.WithFields(logrus.Fields{
		"digest": info.Digest, "object": key, "generation": attrs.Generation,
		"object_size": attrs.Size, "object_crc32c": fmt.Sprintf("%08x", attrs.CRC32C),
		"size": info.Size, "crc32c": fmt.Sprintf("%08x", crc),
	})
	err := b.bucket.Object(key).If(gstorage.Conditions{GenerationMatch: attrs.Generation}).Delete(ctx)
	if err != nil && !isNotExist(err) && !isPreconditionFailed(err) {
		log.WithError(err).Error("blob object does not match its name, and removing it failed")
		return
	}
	log.Error("removed a blob object that did not match its name")
}

// blobInfo assembles a blob's info from its object's attributes.
func blobInfo(dgst digest.Digest, attrs *gstorage.ObjectAttrs) storage.BlobInfo {
	return storage.BlobInfo{Digest: dgst, Size: attrs.Size, MediaType: attrs.Metadata[metaMediaType]}
}

// blobAttrs returns the attributes of the blob's object.
func (b *Backend) blobAttrs(ctx context.Context, dgst digest.Digest) (string, *gstorage.ObjectAttrs, error) {
	key, err := blobKey(dgst)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	attrs, err := b.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return "", nil, wrapErr("stat blob", dgst.String(), err)
	}
	return key, attrs, nil
}

// StatBlob implements storage.Backend.
func (b *Backend) StatBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	_, attrs, err := b.blobAttrs(ctx, dgst)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	return blobInfo(dgst, attrs), nil
}

// readAttempts bounds how often a reader opens its stream again, from
// where it broke, before it reports the failure.
const readAttempts = 5

// OpenBlob implements storage.Backend. The reader reads the generation that
// was stat'ed, under Options.TransferTimeout from now, with range reads from
// where each read after a seek starts: seeking costs nothing, and only what
// is read is fetched.
func (b *Backend) OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	key, attrs, err := b.blobAttrs(ctx, dgst)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	tctx, cancel := b.transferContext(ctx)
	obj := b.bucket.Object(key).Generation(attrs.Generation)
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		r, err := obj.NewRangeReader(ctx, offset, -1)
		if err != nil {
			return nil, wrapErr("reading", key, err)
		}
		return r, nil
	}
	r := storage.NewRangeReader(tctx, cancel, key, attrs.Size, readAttempts, open, b.log.WithField("digest", dgst))
	return r, blobInfo(dgst, attrs), nil
}

// SignedBlobURL implements storage.Backend: with a signing key, a V4 signed
// URL of the blob's object, valid for Options.SignedURLTTL.
func (b *Backend) SignedBlobURL(ctx context.Context, dgst digest.Digest) (string, bool, error) {
	if b.signer == nil {
		return "", false, nil
	}
	key, err := blobKey(dgst)
	if err != nil {
		return "", false, err
	}
	u, err := b.signedURL(key)
	if err != nil {
		return "", false, fmt.Errorf("signing a URL for blob %s: %w", dgst, err)
	}
	return u, true, nil
}
