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
//
// Blobs are removed only by the garbage collector (package blobgc), through
// ListBlobs and DeleteBlob, and a blob in use must never go. Every blob has
// a time it was last written or refreshed (BlobStat.Modified): a writer that
// stores a blob already there (Commit) or makes a new reference to a stored
// blob without writing it (a cache hit, a mount) refreshes it
// (RefreshBlob), and DeleteBlob removes a blob only if it was neither
// written nor refreshed since the collector's cutoff, as one step with the
// delete where the backend allows (see each backend's DeleteBlob). So a blob
// a build or push is about to reference survives every collection that
// started before its reference was recorded and within the grace period
// after its last write or refresh.
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
	"iter"
	"time"

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

// ErrBlobRecent is returned (wrapped) by DeleteBlob when the blob was
// written or refreshed at or after the cutoff: it is left in place.
var ErrBlobRecent = errors.New("blob written or refreshed since the cutoff")

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Digest    digest.Digest
	Size      int64
	MediaType string // as given when the blob was written; may be empty
}

// BlobStat is a stored blob as ListBlobs sees it.
type BlobStat struct {
	Digest digest.Digest
	Size   int64
	// Modified is when the blob was last written or refreshed
	// (RefreshBlob), by the clock of the backend's choice (the server's,
	// or the writer's), never earlier than the true time: a backend whose
	// clock counts whole seconds rounds up.
	Modified time.Time
}

// BlobWriter streams a new blob into storage. The blob becomes visible only
// when Commit succeeds. Exactly one of Commit or Cancel must be called.
type BlobWriter interface {
	io.Writer
	// Commit verifies the written bytes and publishes the blob under its
	// sha256 digest. If expected is not empty, the computed digest must equal
	// it, and if expectedSize >= 0 the size must equal it (else
	// ErrDigestMismatch and nothing is stored). Committing a blob that
	// already exists succeeds and leaves the existing blob's bytes
	// untouched; it refreshes the blob (Backend.RefreshBlob).
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
	// RefreshBlob is StatBlob for a writer about to reference a blob it
	// did not write (a cache hit, a mount, a layout's blob already
	// stored): it also refreshes the blob, so that its Modified is no
	// earlier than the start of the call, less the backend's refresh
	// slack (zero but for GCS, see gcs.Options.RefreshSlack). A blob not
	// stored is an error wrapping ErrNotFound: the caller must then write
	// it. Commit of a blob already stored refreshes it this way.
	RefreshBlob(ctx context.Context, dgst digest.Digest) (BlobInfo, error)
	// ListBlobs yields every stored blob, in no particular order, paging
	// through the backend's listing (a bucket may hold millions); an
	// error ends the sequence. Blobs written or deleted while it runs may
	// or may not be yielded.
	ListBlobs(ctx context.Context) iter.Seq2[BlobStat, error]
	// DeleteBlob removes the blob unless it was written or refreshed at
	// or after cutoff: then it returns an error wrapping ErrBlobRecent and
	// leaves the blob in place. A blob not stored is an error wrapping
	// ErrNotFound. The check and the delete are one step where the
	// backend offers one (filesystem: a rename; GCS: a delete conditional
	// on the generation and metageneration); S3 offers none, and a refresh
	// landing between its last look and the delete (one request apart)
	// is not seen. A blob deleted may be written again at once.
	DeleteBlob(ctx context.Context, dgst digest.Digest, cutoff time.Time) error
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
