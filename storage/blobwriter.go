package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// BlobSink is the part of a BlobWriter that differs between backends:
// where the bytes go while they are written, and how they get their final
// name. NewBlobWriter wraps a sink in what every backend's writer does the
// same way: hashing and counting the bytes as they pass, verifying them
// (VerifyBlob) before anything is published, returning a blob already
// stored (refreshed) instead of publishing it again, refusing to be used after Commit
// or Cancel, and discarding the temporary data exactly once, whatever
// happens.
//
// The writer calls a sink from one goroutine at a time.
type BlobSink interface {
	// Write stores bytes somewhere temporary, where no reader of blobs
	// sees them. As io.Writer, it returns how many bytes of p it stored,
	// and an error if not all; the writer hashes exactly those. A backend
	// that needs another checksum of the bytes (GCS: CRC32C) computes it
	// here.
	io.Writer
	// RefreshBlob returns the info of the blob stored under dgst,
	// refreshed, or an error wrapping ErrNotFound: the backend's own
	// RefreshBlob. The writer uses it rather than a plain stat so that
	// the blob it hands back as stored is not deleted by a garbage
	// collection already under way.
	RefreshBlob(ctx context.Context, dgst digest.Digest) (BlobInfo, error)
	// Publish makes the bytes written visible as the blob info describes.
	// They are verified: they hash to info.Digest and number info.Size.
	// It creates the blob only if none is stored under info.Digest; if one
	// was stored meanwhile (by a concurrent writer of the same bytes), it
	// leaves that blob untouched and returns its info. It is called at
	// most once, and never after Discard.
	Publish(ctx context.Context, info BlobInfo) (BlobInfo, error)
	// Discard removes the temporary data. It is called exactly once: by
	// Cancel, or at the end of Commit whatever its outcome. What a
	// successful Publish made visible stays.
	Discard() error
}

// NewBlobWriter returns a BlobWriter for a blob of mediaType (which may be
// empty) whose bytes go to the sink newSink makes. It checks ctx and the
// media type before it calls newSink, so a writer that cannot be used
// leaves nothing temporary behind. With a nil log, the writer logs nothing.
//
// Every backend's NewBlobWriter is this with a sink of its own. The writer
// is not safe for concurrent use; one goroutine writes and then commits or
// cancels.
func NewBlobWriter(ctx context.Context, mediaType string, log logrus.FieldLogger, newSink func() (BlobSink, error)) (BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if mediaType != "" {
		// The media type comes back as a Content-Type header: refuse what
		// is not one rather than store it.
		if _, _, err := mime.ParseMediaType(mediaType); err != nil {
			return nil, fmt.Errorf("new blob: media type %q: %w", mediaType, err)
		}
	}
	sink, err := newSink()
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &blobWriter{sink: sink, mediaType: mediaType, hash: sha256.New(), log: log}, nil
}

// blobWriter hashes and counts what passes into its sink, so the content
// is read exactly once.
type blobWriter struct {
	sink      BlobSink
	mediaType string
	hash      hash.Hash
	size      int64
	writeErr  error              // first write failure; Commit refuses after one
	closed    bool               // Commit or Cancel has run
	log       logrus.FieldLogger // nil: no log
}

var errWriterClosed = errors.New("writer already committed or cancelled")

func (w *blobWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("writing blob: %w", errWriterClosed)
	}
	if w.writeErr != nil {
		return 0, w.writeErr
	}
	n, err := w.sink.Write(p)
	if n < 0 || n > len(p) {
		n, err = 0, fmt.Errorf("the sink reports writing %d of %d bytes", n, len(p))
	} else if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	w.hash.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.writeErr = fmt.Errorf("writing blob: %w", err)
		return n, w.writeErr
	}
	return n, nil
}

// Cancel implements BlobWriter.
func (w *blobWriter) Cancel() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.sink.Discard(); err != nil {
		return fmt.Errorf("cancelling blob: %w", err)
	}
	return nil
}

// Commit implements BlobWriter. The temporary data is discarded whatever
// the outcome, so the caller need not (but may) call Cancel.
func (w *blobWriter) Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (BlobInfo, error) {
	if w.closed {
		return BlobInfo{}, fmt.Errorf("committing blob: %w", errWriterClosed)
	}
	w.closed = true
	defer func() {
		if err := w.sink.Discard(); err != nil && w.log != nil {
			// Only space is lost: what was published stays.
			w.log.WithError(err).Warn("discarding a blob's temporary data")
		}
	}()

	info, err := w.verify(ctx, expected, expectedSize)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("committing blob: %w", err)
	}
	// Fast path: a blob already stored needs nothing published, only
	// refreshed, so that a collection does not take it away now that
	// the caller is told it is stored.
	if existing, err := w.sink.RefreshBlob(ctx, info.Digest); err == nil {
		if w.log != nil {
			w.log.WithFields(logrus.Fields{"digest": info.Digest, "size": info.Size}).Debug("blob already stored")
		}
		return existing, nil
	} else if !errors.Is(err, ErrNotFound) {
		return BlobInfo{}, fmt.Errorf("committing blob %s: %w", info.Digest, err)
	}
	stored, err := w.sink.Publish(ctx, info)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("committing blob %s: %w", info.Digest, err)
	}
	return stored, nil
}

// verify checks what was written against the caller's expectations and
// returns the info the blob will be stored with.
func (w *blobWriter) verify(ctx context.Context, expected digest.Digest, expectedSize int64) (BlobInfo, error) {
	if err := ctx.Err(); err != nil {
		return BlobInfo{}, err
	}
	if w.writeErr != nil {
		return BlobInfo{}, w.writeErr
	}
	info := BlobInfo{
		Digest:    digest.NewDigest(digest.SHA256, w.hash),
		Size:      w.size,
		MediaType: w.mediaType,
	}
	if err := VerifyBlob(info, expected, expectedSize); err != nil {
		return BlobInfo{}, err
	}
	return info, nil
}
