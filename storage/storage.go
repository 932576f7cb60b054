// Package storage keeps nixport's content-addressed blobs (layers, configs,
// manifests) and the small named objects that the build caches and tag index
// need. It keeps bytes only: what HTTP makes of them (ranges, ETags,
// redirects) is the web package's, the same for every backend. Every backend (filesystem, GCS, S3) satisfies Backend and passes the one
// suite in storagetest, so the builder and the registry API never care where
// bytes live.
//
// Blobs are immutable: a writer streams into a temporary location, the digest
// and size are verified, and only then does the blob appear under its final
// name. A reader never sees a partial blob and nothing is overwritten.
// NewBlobWriter does the part of this that is the same everywhere (hashing,
// verifying, cancelling) around a BlobSink, which each backend provides.
// Likewise for the backends on a networked service (GCS, S3), whose
// conditional writes may happen with their response lost:
// TryVersionedLease is their one lease protocol, around the SDK calls of
// a VersionedLeaseStore, and CreateObjectOnce their one conditional create.
package storage

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned (wrapped) when a blob or object does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned by CreateObject when the object already exists.
var ErrExists = errors.New("already exists")

// ErrDigestMismatch is returned by Commit when the written bytes do not hash
// to the expected digest, or their size differs from the expected size.
var ErrDigestMismatch = errors.New("digest or size mismatch")

// ErrInvalidName is returned when an object name is not acceptable (empty,
// absolute, holding "..", or characters outside the allowed set).
var ErrInvalidName = errors.New("invalid object name")

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Digest    digest.Digest
	Size      int64
	MediaType string // as given when the blob was written; may be empty
}

// BlobWriter streams a new blob into storage. The blob becomes visible only
// when Commit succeeds. Exactly one of Commit or Cancel must be called.
type BlobWriter interface {
	io.Writer
	// Commit verifies the written bytes and publishes the blob under its
	// sha256 digest. If expected is not empty, the computed digest must equal
	// it, and if expectedSize >= 0 the size must equal it (else
	// ErrDigestMismatch and nothing is stored). Committing a blob that
	// already exists succeeds and leaves the existing blob untouched.
	Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (BlobInfo, error)
	// Cancel discards everything written. Safe to call after Commit (no-op).
	Cancel() error
}

// Backend is the storage interface every backend satisfies.
type Backend interface {
	// Name is a short identifier for logs ("filesystem", "gcs", "s3").
	Name() string

	// NewBlobWriter starts a new blob of the given media type.
	NewBlobWriter(ctx context.Context, mediaType string) (BlobWriter, error)
	// StatBlob returns the blob's info, or an error wrapping ErrNotFound.
	StatBlob(ctx context.Context, dgst digest.Digest) (BlobInfo, error)
	// OpenBlob opens the blob for reading: a seekable reader of exactly
	// the stored bytes, and the blob's info. Seeking is cheap (a backend
	// that fetches over the network reads only from where a read starts),
	// so ranges of a blob are served by seeking.
	OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, BlobInfo, error)
	// SignedBlobURL returns a short-lived URL a client may fetch the blob
	// from directly, and true; false when the backend offers none (the
	// blob is then streamed). It does not check that the blob exists.
	SignedBlobURL(ctx context.Context, dgst digest.Digest) (string, bool, error)
	// PutObject stores a small named object, replacing any previous value.
	// Names are slash-separated relative paths ("tags/shell/git/latest").
	PutObject(ctx context.Context, name string, data []byte) error
	// CreateObject stores a small named object only if it does not exist yet,
	// else returns an error wrapping ErrExists.
	CreateObject(ctx context.Context, name string, data []byte) error
	// GetObject reads a small named object, or an error wrapping ErrNotFound.
	GetObject(ctx context.Context, name string) ([]byte, error)
	// ListObjects returns the names of all objects under prefix (a directory
	// name ending in "/"), sorted.
	ListObjects(ctx context.Context, prefix string) ([]string, error)
	// DeleteObject removes a named object; deleting a missing one succeeds.
	DeleteObject(ctx context.Context, name string) error
}

// PutBlob stores the whole of r as a blob, verifying it against expected
// (which may be empty to accept whatever r hashes to) and expectedSize
// (negative: unchecked).
func PutBlob(ctx context.Context, b Backend, mediaType string, expected digest.Digest, expectedSize int64, r io.Reader) (BlobInfo, error) {
	w, err := b.NewBlobWriter(ctx, mediaType)
	if err != nil {
		return BlobInfo{}, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Cancel()
		return BlobInfo{}, err
	}
	return w.Commit(ctx, expected, expectedSize)
}
