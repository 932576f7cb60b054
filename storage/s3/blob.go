package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/storage"
)

// blobCacheControl lets caches keep what is served from a blob's object
// (through a presigned URL) for good: the content at a digest never changes.
const blobCacheControl = "max-age=31536000, immutable"

// defaultContentType is the Content-Type of a blob without a media type.
const defaultContentType = "application/octet-stream"

// Metadata keys the backend sets on objects (x-amz-meta-*).
const (
	metaMediaType = "nixport-media-type" // a blob's media type, exactly
	metaToken     = "nixport-write"      // unique per write, to recognise our own
)

// errStored says that an upload found its object already stored (412).
var errStored = errors.New("stored meanwhile")

// blobKey returns the object key of the blob with the given digest. Only
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
		f, err := storage.CreateSpool(b.tempDir, "s3")
		if err != nil {
			return nil, err
		}
		return &blobSink{backend: b, file: f}, nil
	})
}

// blobSink is a blob's storage.BlobSink: it spools into a local file.
type blobSink struct {
	backend *Backend
	file    *os.File
}

func (s *blobSink) Write(p []byte) (int, error) {
	n, err := s.file.Write(p)
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

// Publish implements storage.BlobSink: it uploads the spooled, verified
// bytes under the blob's name, in one request or in parts, created only if
// no object has that name.
func (s *blobSink) Publish(ctx context.Context, info storage.BlobInfo) (storage.BlobInfo, error) {
	b := s.backend
	key, err := blobKey(info.Digest)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	ctx, cancel := b.transferContext(ctx)
	defer cancel()
	log := b.log.WithFields(logrus.Fields{"digest": info.Digest, "size": info.Size})
	if info.Size <= b.partSize {
		err = s.putWhole(ctx, key, info)
	} else {
		err = s.putParts(ctx, key, info, log)
	}
	switch {
	case err == nil:
		log.Debug("blob stored")
		return info, nil
	case errors.Is(err, errStored):
		stored, err := b.storedMeanwhile(ctx, key, info)
		if err != nil {
			return storage.BlobInfo{}, err
		}
		log.Debug("blob stored meanwhile by another writer")
		return stored, nil
	default:
		return storage.BlobInfo{}, fmt.Errorf("uploading: %w", err)
	}
}

// putWhole uploads the blob in one PutObject, declaring its SHA-256 (which
// is its digest), so that the server stores nothing but these bytes.
func (s *blobSink) putWhole(ctx context.Context, key string, info storage.BlobInfo) error {
	b := s.backend
	sum, err := hex.DecodeString(info.Digest.Encoded())
	if err != nil {
		return err
	}
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:         aws.String(b.bucket),
		Key:            aws.String(key),
		Body:           io.NewSectionReader(s.file, 0, info.Size),
		ContentLength:  aws.Int64(info.Size),
		ContentType:    aws.String(contentType(info.MediaType)),
		CacheControl:   aws.String(blobCacheControl),
		Metadata:       blobMetadata(info.MediaType),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
		IfNoneMatch:    aws.String("*"),
	})
	if isPreconditionFailed(err) {
		return errStored
	}
	return err
}

// putParts uploads the blob as a multipart upload, UploadConcurrency parts
// at once, each declaring its SHA-256, and completes it only once every
// part is stored. Whatever fails, the upload is aborted: its parts are
// never seen, and stop costing space.
func (s *blobSink) putParts(ctx context.Context, key string, info storage.BlobInfo, log logrus.FieldLogger) error {
	b := s.backend
	partSize := max(b.partSize, (info.Size+maxParts-1)/maxParts)
	count := int((info.Size + partSize - 1) / partSize)
	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(b.bucket),
		Key:               aws.String(key),
		ContentType:       aws.String(contentType(info.MediaType)),
		CacheControl:      aws.String(blobCacheControl),
		Metadata:          blobMetadata(info.MediaType),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		return fmt.Errorf("starting a multipart upload: %w", err)
	}
	uploadID := aws.ToString(created.UploadId)
	log = log.WithFields(logrus.Fields{"upload_id": uploadID, "parts": count})
	finished := false
	defer func() {
		if !finished {
			b.abortUpload(context.WithoutCancel(ctx), key, uploadID, log)
		}
	}()

	parts := make([]types.CompletedPart, count)
	jobs := make([]func(context.Context) error, count)
	for i := range count {
		offset := int64(i) * partSize
		size := min(partSize, info.Size-offset)
		jobs[i] = func(ctx context.Context) error {
			part, err := s.uploadPart(ctx, key, uploadID, int32(i+1), offset, size)
			parts[i] = part
			return err
		}
	}
	if err := parallel.Run(ctx, b.concurrency, jobs); err != nil {
		return err
	}
	complete := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(b.bucket),
		Key:             aws.String(key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if b.conditionalCompletion {
		complete.IfNoneMatch = aws.String("*")
	}
	_, err = b.client.CompleteMultipartUpload(ctx, complete)
	switch {
	case err == nil:
		finished = true
		return nil
	case isPreconditionFailed(err):
		return errStored // our parts are aborted
	case isNotExist(err):
		// The upload is gone: our completion went through and its
		// response was lost (the retry finds no upload), or it was
		// aborted. What is stored under the name tells.
		finished = true
		return errStored
	default:
		return fmt.Errorf("completing the multipart upload: %w", err)
	}
}

// uploadPart uploads size bytes of the spool from offset as part number n.
func (s *blobSink) uploadPart(ctx context.Context, key, uploadID string, n int32, offset, size int64) (types.CompletedPart, error) {
	b := s.backend
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(s.file, offset, size)); err != nil {
		return types.CompletedPart{}, fmt.Errorf("reading part %d from the spool file: %w", n, err)
	}
	checksum := base64.StdEncoding.EncodeToString(h.Sum(nil))
	out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:         aws.String(b.bucket),
		Key:            aws.String(key),
		UploadId:       aws.String(uploadID),
		PartNumber:     aws.Int32(n),
		Body:           io.NewSectionReader(s.file, offset, size),
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(checksum),
	})
	if err != nil {
		return types.CompletedPart{}, fmt.Errorf("uploading part %d: %w", n, err)
	}
	return types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumSHA256: aws.String(checksum)}, nil
}

// abortUpload aborts a multipart upload, so that its parts neither cost
// space nor ever complete. A part whose upload was still being received
// when the abort came may land after it and bring the upload back (AWS
// says an abort may have to be repeated for this): the upload is looked
// for again, and aborted again, a few times with a growing pause. Should
// it still fail, a later New aborts the upload once it is stale.
func (b *Backend) abortUpload(ctx context.Context, key, uploadID string, log logrus.FieldLogger) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(b.bucket),
			Key:      aws.String(key),
			UploadId: aws.String(uploadID),
		})
		if err != nil && !isNotExist(err) {
			log.WithError(err).Warn("aborting a multipart upload failed; a later start aborts it once it is stale")
			return
		}
		_, err = b.client.ListParts(ctx, &s3.ListPartsInput{
			Bucket:   aws.String(b.bucket),
			Key:      aws.String(key),
			UploadId: aws.String(uploadID),
			MaxParts: aws.Int32(1),
		})
		if isNotExist(err) {
			log.WithField("attempts", attempt).Debug("multipart upload aborted")
			return
		}
		if attempt == abortAttempts {
			log.WithError(err).Warn("a multipart upload came back after its abort; a later start aborts it once it is stale")
			return
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return
		}
		pause *= 2
	}
}

// abortAttempts bounds the aborts of one upload (see abortUpload).
const abortAttempts = 5

// storedMeanwhile returns the info of the blob an upload found stored
// (by another writer, or by this one's request whose response was lost),
// having checked its size and, where the server reports it, its SHA-256
// against ours.
func (b *Backend) storedMeanwhile(ctx context.Context, key string, info storage.BlobInfo) (storage.BlobInfo, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       aws.String(b.bucket),
		Key:          aws.String(key),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return storage.BlobInfo{}, wrapErr("checking the blob stored meanwhile", info.Digest.String(), err)
	}
	stored := blobInfo(info.Digest, out)
	// A whole-object SHA-256 is the digest itself; a multipart upload's
	// ("<hash of the parts' hashes>-<parts>") is not comparable.
	sum, _ := hex.DecodeString(info.Digest.Encoded())
	checksum := aws.ToString(out.ChecksumSHA256)
	if stored.Size != info.Size || (checksum != "" && !strings.Contains(checksum, "-") && checksum != base64.StdEncoding.EncodeToString(sum)) {
		// Nothing nixport writes can be so (every upload declares its
		// checksum): something else put it there. It cannot hold this
		// blob, and would keep it from ever being stored: remove it.
		b.removeCorrupt(ctx, key, out, info)
		return storage.BlobInfo{}, fmt.Errorf("the object stored as %s has size %d and SHA-256 %q, not the blob's", key, stored.Size, checksum)
	}
	return stored, nil
}

// removeCorrupt deletes (if it has not changed since) an object under a
// blob's name that does not hold the blob.
func (b *Backend) removeCorrupt(ctx context.Context, key string, out *s3.HeadObjectOutput, info storage.BlobInfo) {
	log := b.log.WithFields(logrus.Fields{
		"digest": info.Digest, "object": key, "etag": aws.ToString(out.ETag),
		"object_size": aws.ToInt64(out.ContentLength), "size": info.Size,
	})
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), IfMatch: out.ETag})
	if err != nil && !isNotExist(err) && !isPreconditionFailed(err) {
		log.WithError(err).Error("blob object does not match its name, and removing it failed")
		return
	}
	log.Error("removed a blob object that did not match its name")
}

// contentType is the Content-Type a blob is stored (and served) with.
func contentType(mediaType string) string {
	if mediaType == "" {
		return defaultContentType
	}
	return mediaType
}

// blobMetadata keeps a blob's media type exactly (Content-Type may be
// normalised on the way); none for a blob without one.
func blobMetadata(mediaType string) map[string]string {
	if mediaType == "" {
		return nil
	}
	return map[string]string{metaMediaType: mediaType}
}

// metaValue returns a user metadata value; servers differ in the case of
// the keys they return.
func metaValue(m map[string]string, key string) string {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// blobInfo assembles a blob's info from its object's HEAD.
func blobInfo(dgst digest.Digest, out *s3.HeadObjectOutput) storage.BlobInfo {
	return storage.BlobInfo{Digest: dgst, Size: aws.ToInt64(out.ContentLength), MediaType: metaValue(out.Metadata, metaMediaType)}
}

// headBlob returns the blob's key and its object's HEAD.
func (b *Backend) headBlob(ctx context.Context, dgst digest.Digest) (string, *s3.HeadObjectOutput, error) {
	key, err := blobKey(dgst)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return "", nil, wrapErr("stat blob", dgst.String(), err)
	}
	return key, out, nil
}

// StatBlob implements storage.Backend.
func (b *Backend) StatBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	_, out, err := b.headBlob(ctx, dgst)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	return blobInfo(dgst, out), nil
}

// readAttempts bounds how often a reader opens its stream again, from
// where it broke, before it reports the failure.
const readAttempts = 5

// OpenBlob implements storage.Backend. The reader reads the object that
// was stat'ed (If-Match its ETag), under Options.TransferTimeout from now,
// with ranged GETs from where each read after a seek starts: seeking costs
// nothing, and only what is read is fetched.
func (b *Backend) OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	key, out, err := b.headBlob(ctx, dgst)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	tctx, cancel := b.transferContext(ctx)
	etag := aws.ToString(out.ETag)
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket:  aws.String(b.bucket),
			Key:     aws.String(key),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", offset)),
			IfMatch: aws.String(etag), // the object stat'ed: any other fails
		})
		if err != nil {
			return nil, wrapErr("reading", key, err)
		}
		return out.Body, nil
	}
	r := storage.NewRangeReader(tctx, cancel, key, aws.ToInt64(out.ContentLength), readAttempts, open, b.log.WithField("digest", dgst))
	return r, blobInfo(dgst, out), nil
}

// SignedBlobURL implements storage.Backend: with Options.PresignedURLs, a
// presigned GET of the blob's object, valid for Options.SignedURLTTL.
// Signing needs no request.
func (b *Backend) SignedBlobURL(ctx context.Context, dgst digest.Digest) (string, bool, error) {
	if b.presigner == nil {
		return "", false, nil
	}
	key, err := blobKey(dgst)
	if err != nil {
		return "", false, err
	}
	req, err := b.presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(b.signedURLTTL))
	if err != nil {
		return "", false, fmt.Errorf("presigning a URL for blob %s: %w", dgst, err)
	}
	return req.URL, true, nil
}
