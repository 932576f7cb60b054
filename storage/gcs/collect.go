package gcs

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"strings"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/opencontainers/go-digest"
	"google.golang.org/api/iterator"

	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// listPage is how many blobs one listing request asks for (GCS's most).
const listPage = 1000

// blobModified is when the blob's object was last written or refreshed:
// the latest of its creation, its last update and its refresh time.
func blobModified(attrs *gstorage.ObjectAttrs) time.Time {
	m := attrs.Created
	if attrs.Updated.After(m) {
		m = attrs.Updated
	}
	if t, err := time.Parse(time.RFC3339Nano, attrs.Metadata[metaRefreshed]); err == nil && t.After(m) {
		m = t
	}
	return m
}

// RefreshBlob implements storage.Backend: unless the blob was written or
// refreshed within Options.RefreshSlack, it writes the time into the
// object's metadata, an update of the generation it read only (so a
// refresh never lands on a copy stored since, which is new anyway), which
// bumps its metageneration and so makes a DeleteBlob that judged the
// blob before fail.
func (b *Backend) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	key, attrs, err := b.blobAttrs(ctx, dgst)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	now := time.Now()
	if !blobModified(attrs).Before(now.Add(-b.refreshSlack)) {
		return blobInfo(dgst, attrs), nil
	}
	metadata := maps.Clone(attrs.Metadata)
	if metadata == nil {
		metadata = map[string]string{}
	}
	metadata[metaRefreshed] = now.UTC().Format(time.RFC3339Nano)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	_, err = b.bucket.Object(key).If(gstorage.Conditions{GenerationMatch: attrs.Generation}).
		Update(octx, gstorage.ObjectAttrsToUpdate{Metadata: metadata})
	switch {
	case err == nil:
		return blobInfo(dgst, attrs), nil
	case isPreconditionFailed(err):
		// Deleted and stored again since it was read: the new copy is
		// as recent as a refresh.
		return b.StatBlob(ctx, dgst)
	default:
		return storage.BlobInfo{}, wrapErr("refreshing blob", dgst.String(), err)
	}
}

// ListBlobs implements storage.Backend, one page of listPage blobs per
// request, each request under Options.OpTimeout. Objects under the blob
// prefix whose names are not a sha256 hex are not nixport's, and skipped.
func (b *Backend) ListBlobs(ctx context.Context) iter.Seq2[storage.BlobStat, error] {
	return func(yield func(storage.BlobStat, error) bool) {
		query := &gstorage.Query{Prefix: blobPrefix}
		if err := query.SetAttrSelection([]string{"Name", "Size", "Created", "Updated", "Metadata"}); err != nil {
			yield(storage.BlobStat{}, fmt.Errorf("listing blobs: %w", err))
			return
		}
		token := ""
		for {
			page, next, err := b.listBlobPage(ctx, query, token)
			if err != nil {
				yield(storage.BlobStat{}, fmt.Errorf("listing blobs: %w", err))
				return
			}
			for _, attrs := range page {
				d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(attrs.Name, blobPrefix))
				if reference.ValidDigest(d) != nil {
					continue
				}
				if !yield(storage.BlobStat{Digest: d, Size: attrs.Size, Modified: blobModified(attrs)}, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			token = next
		}
	}
}

// listBlobPage lists the page of blobs that token starts.
func (b *Backend) listBlobPage(ctx context.Context, query *gstorage.Query, token string) ([]*gstorage.ObjectAttrs, string, error) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	var page []*gstorage.ObjectAttrs
	next, err := iterator.NewPager(b.bucket.Objects(ctx, query), listPage, token).NextPage(&page)
	return page, next, err
}

// DeleteBlob implements storage.Backend: it deletes the generation and
// metageneration it judged older than cutoff, and nothing else; a refresh
// or a new copy since makes GCS refuse (412), and the blob stays.
func (b *Backend) DeleteBlob(ctx context.Context, dgst digest.Digest, cutoff time.Time) error {
	key, attrs, err := b.blobAttrs(ctx, dgst)
	if err != nil {
		return fmt.Errorf("deleting blob: %w", err)
	}
	if m := blobModified(attrs); !m.Before(cutoff) {
		return recentError(dgst, m, cutoff)
	}
	octx, cancel := b.opContext(ctx)
	defer cancel()
	err = b.bucket.Object(key).If(gstorage.Conditions{GenerationMatch: attrs.Generation, MetagenerationMatch: attrs.Metageneration}).Delete(octx)
	switch {
	case err == nil:
		return nil
	case isPreconditionFailed(err):
		return fmt.Errorf("blob %s changed while being deleted: %w", dgst, storage.ErrBlobRecent)
	case isNotExist(err):
		// The generation judged above is gone: a delete of ours whose
		// answer was lost, and its retry found nothing (a new write of the
		// blob would be another generation, and fail the condition).
		return nil
	default:
		return wrapErr("deleting blob", dgst.String(), err)
	}
}

func recentError(dgst digest.Digest, modified, cutoff time.Time) error {
	return fmt.Errorf("blob %s modified at %s, not before %s: %w", dgst,
		modified.UTC().Format(time.RFC3339Nano), cutoff.UTC().Format(time.RFC3339Nano), storage.ErrBlobRecent)
}
