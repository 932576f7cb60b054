package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// listBatch is how many directory entries ListBlobs reads at a time, so
// that a directory of millions of blobs is never held in memory whole.
const listBatch = 1000

// RefreshBlob implements storage.Backend: it sets the blob's modification
// time to now. Setting it goes through the blob's name, so it either
// happens before a concurrent DeleteBlob renames the blob away, which then
// sees it and puts the blob back, or finds no blob.
func (b *Backend) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	name, err := blobPath(dgst)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.BlobInfo{}, err
	}
	now := time.Now()
	if err := b.root.Chtimes(name, now, now); err != nil {
		return storage.BlobInfo{}, blobError("refreshing", dgst, err)
	}
	return b.StatBlob(ctx, dgst)
}

// ListBlobs implements storage.Backend, reading the blob directory in
// batches. Files that are not blobs (type files, names that are not a
// sha256 hex) are skipped.
func (b *Backend) ListBlobs(ctx context.Context) iter.Seq2[storage.BlobStat, error] {
	return func(yield func(storage.BlobStat, error) bool) {
		dir, err := b.root.Open(blobDir)
		if err != nil {
			yield(storage.BlobStat{}, fmt.Errorf("listing blobs: %w", err))
			return
		}
		defer dir.Close()
		for {
			if err := ctx.Err(); err != nil {
				yield(storage.BlobStat{}, err)
				return
			}
			entries, err := dir.ReadDir(listBatch)
			for _, e := range entries {
				d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
				if reference.ValidDigest(d) != nil {
					continue
				}
				fi, err := e.Info()
				if err != nil || !fi.Mode().IsRegular() {
					continue // deleted since the directory was read, or not a blob
				}
				if !yield(storage.BlobStat{Digest: d, Size: fi.Size(), Modified: fi.ModTime()}, nil) {
					return
				}
			}
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(storage.BlobStat{}, fmt.Errorf("listing blobs: %w", err))
				return
			}
		}
	}
}

// DeleteBlob implements storage.Backend. The blob is renamed into tmp/,
// one atomic step, and its modification time is judged there: a refresh
// before the rename is seen, and the blob is put back (with a link, which
// leaves alone a copy written meanwhile); a refresh after it finds no
// blob, and its writer stores the blob again. Its type file goes the same
// way once the blob has gone, unless the blob was stored again meanwhile.
// A crash between the rename and the removal leaves the blob in tmp/,
// removed with the other temporary files by the next New.
func (b *Backend) DeleteBlob(ctx context.Context, dgst digest.Digest, cutoff time.Time) error {
	name, err := blobPath(dgst)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := b.root.Lstat(name)
	if err != nil {
		return blobError("deleting", dgst, err)
	}
	if !fi.ModTime().Before(cutoff) {
		return recentError(dgst, fi.ModTime(), cutoff)
	}
	trash := b.trashName()
	if err := b.root.Rename(name, trash); err != nil {
		return blobError("deleting", dgst, err)
	}
	log := b.log.WithFields(logrus.Fields{"digest": dgst, "file": trash})
	if fi, err := b.root.Lstat(trash); err == nil && !fi.ModTime().Before(cutoff) {
		// Refreshed between the first look and the rename.
		if err := b.root.Link(trash, name); err != nil && !errors.Is(err, fs.ErrExist) {
			log.WithError(err).Error("putting back a blob refreshed while it was being deleted failed; it is left in tmp/")
			return fmt.Errorf("deleting blob %s: putting it back after a refresh: %w", dgst, err)
		}
		b.removeQuietly(trash)
		if err := b.syncDir(blobDir); err != nil {
			return fmt.Errorf("deleting blob %s: %w", dgst, err)
		}
		return recentError(dgst, fi.ModTime(), cutoff)
	}
	if err := b.root.Remove(trash); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The name is gone already; the file is removed as a stale
		// temporary file later.
		log.WithError(err).Warn("removing a deleted blob's file")
	}
	if err := b.syncDir(blobDir); err != nil {
		return fmt.Errorf("deleting blob %s: %w", dgst, err)
	}
	b.removeTypeFile(name, log)
	return nil
}

// removeTypeFile removes the type file of a blob just deleted. A writer
// storing the blob again writes its type file before the blob and looks
// for it after (Publish): the type file is moved away first and the blob
// looked for after, so that either the writer sees its type file gone and
// writes it again, or this sees the blob back and puts the file back.
func (b *Backend) removeTypeFile(blobName string, log logrus.FieldLogger) {
	typeName := blobName + typeSuffix
	trash := b.trashName()
	if err := b.root.Rename(typeName, trash); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.WithError(err).Warn("removing a deleted blob's type file")
		}
		return
	}
	if _, err := b.root.Lstat(blobName); err == nil {
		if err := b.root.Link(trash, typeName); err != nil && !errors.Is(err, fs.ErrExist) {
			log.WithError(err).Warn("putting back the type file of a blob stored again")
		}
	}
	b.removeQuietly(trash)
}

// trashName is a new name in tmp/ for a file being deleted, named like
// createTemp's so that a crash leaves nothing New does not remove.
func (b *Backend) trashName() string {
	return tempDir + "/" + procalive.NamePrefix("gc-") + rand.Text()
}

func recentError(dgst digest.Digest, modified, cutoff time.Time) error {
	return fmt.Errorf("blob %s modified at %s, not before %s: %w", dgst,
		modified.UTC().Format(time.RFC3339Nano), cutoff.UTC().Format(time.RFC3339Nano), storage.ErrBlobRecent)
}
