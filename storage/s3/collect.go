package s3store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// refreshKey returns the key of the object whose last write is the last
// refresh of the blob stored under blobKey.
func refreshKey(blobKey string) string {
	return refreshPrefix + strings.TrimPrefix(blobKey, blobPrefix)
}

// s3Time turns a time S3 reports, in whole seconds, into one never earlier
// than the true time.
func s3Time(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Truncate(time.Second).Add(time.Second)
}

// RefreshBlob implements storage.Backend: it writes the blob's refresh
// object, then checks that the blob is still there. A DeleteBlob that
// looks at the refresh object after this write keeps the blob; one that
// looked before and deletes after (the two are one request apart) is the
// gap S3 leaves.
func (b *Backend) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	key, _, err := b.headBlob(ctx, dgst)
	if err != nil {
		return storage.BlobInfo{}, err // a missing blob needs no refresh object
	}
	if _, err := b.writeSmall(ctx, smallWrite{key: refreshKey(key), data: nil}); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("refreshing blob %s: %w", dgst, err)
	}
	return b.StatBlob(ctx, dgst)
}

// ListBlobs implements storage.Backend: the listing of the blobs merged
// with that of their refresh objects, both in the key order S3 lists in,
// a page at a time each. (A server that listed out of order would make
// some blobs look older than they are here; DeleteBlob looks again.)
func (b *Backend) ListBlobs(ctx context.Context) iter.Seq2[storage.BlobStat, error] {
	return func(yield func(storage.BlobStat, error) bool) {
		nextRefresh, stop := iter.Pull2(b.listKeys(ctx, refreshPrefix))
		defer stop()
		refresh, refreshErr, more := nextRefresh()
		for obj, err := range b.listKeys(ctx, blobPrefix) {
			if err != nil {
				yield(storage.BlobStat{}, fmt.Errorf("listing blobs: %w", err))
				return
			}
			hex := strings.TrimPrefix(aws.ToString(obj.Key), blobPrefix)
			d := digest.NewDigestFromEncoded(digest.SHA256, hex)
			if reference.ValidDigest(d) != nil {
				continue // not a name nixport writes
			}
			for more && refreshErr == nil && strings.TrimPrefix(aws.ToString(refresh.Key), refreshPrefix) < hex {
				refresh, refreshErr, more = nextRefresh()
			}
			if refreshErr != nil {
				yield(storage.BlobStat{}, fmt.Errorf("listing blob refreshes: %w", refreshErr))
				return
			}
			modified := s3Time(obj.LastModified)
			if more && strings.TrimPrefix(aws.ToString(refresh.Key), refreshPrefix) == hex {
				if r := s3Time(refresh.LastModified); r.After(modified) {
					modified = r
				}
			}
			if !yield(storage.BlobStat{Digest: d, Size: aws.ToInt64(obj.Size), Modified: modified}, nil) {
				return
			}
		}
	}
}

// listKeys yields the objects under prefix, one page per request, each
// request under Options.OpTimeout.
func (b *Backend) listKeys(ctx context.Context, prefix string) iter.Seq2[types.Object, error] {
	return func(yield func(types.Object, error) bool) {
		pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
			Bucket: aws.String(b.bucket),
			Prefix: aws.String(prefix),
		})
		for pages.HasMorePages() {
			pctx, cancel := b.opContext(ctx)
			page, err := pages.NextPage(pctx)
			cancel()
			if err != nil {
				yield(types.Object{}, err)
				return
			}
			for _, obj := range page.Contents {
				if !yield(obj, nil) {
					return
				}
			}
		}
	}
}

// DeleteBlob implements storage.Backend: it looks at the blob and its
// refresh object, and deletes the blob if neither was written since
// cutoff, If-Match the ETag it saw where the server honours that (so a
// blob replaced by other bytes meanwhile stays; a blob's content is its
// name, so that is only ever a damaged copy being repaired). A refresh
// written between the look and the delete is not seen: S3 has no delete
// conditional on the time of another object, nor one on this object's
// time that general purpose buckets honour.
func (b *Backend) DeleteBlob(ctx context.Context, dgst digest.Digest, cutoff time.Time) error {
	key, out, err := b.headBlob(ctx, dgst)
	if err != nil {
		return fmt.Errorf("deleting blob: %w", err)
	}
	modified := s3Time(out.LastModified)
	rkey := refreshKey(key)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	refresh, err := b.client.HeadObject(octx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(rkey)})
	switch {
	case err == nil:
		if r := s3Time(refresh.LastModified); r.After(modified) {
			modified = r
		}
	case !isNotExist(err):
		return wrapErr("deleting blob", dgst.String(), err)
	}
	if !modified.Before(cutoff) {
		return fmt.Errorf("blob %s modified at %s, not before %s: %w", dgst,
			modified.UTC().Format(time.RFC3339), cutoff.UTC().Format(time.RFC3339Nano), storage.ErrBlobRecent)
	}
	in := &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}
	if b.conditionalDelete {
		in.IfMatch = out.ETag
	}
	_, err = b.client.DeleteObject(octx, in)
	if isPreconditionFailed(err) {
		// Either the blob changed, or a delete of ours whose answer was
		// lost took it and the retry found its condition spent: which,
		// the blob's absence tells.
		if _, _, herr := b.headBlob(ctx, dgst); errors.Is(herr, storage.ErrNotFound) {
			err = nil
		}
	}
	switch {
	case isPreconditionFailed(err):
		return fmt.Errorf("blob %s changed while being deleted: %w", dgst, storage.ErrBlobRecent)
	case isNotExist(err):
		// Gone already: a delete of ours whose answer was lost.
	case err != nil:
		return wrapErr("deleting blob", dgst.String(), err)
	}
	// The refresh object of a blob gone is only clutter; one left behind
	// makes a copy stored later no older than it is.
	if _, err := b.client.DeleteObject(octx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(rkey)}); err != nil && !isNotExist(err) {
		b.log.WithError(err).WithFields(logrus.Fields{"digest": dgst, "object": rkey}).Warn("deleting a deleted blob's refresh object")
	}
	return nil
}
