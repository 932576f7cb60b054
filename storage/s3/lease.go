package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nixport/nixport/storage"
)

// A lease is the object leases/<sha256 of its name>, holding the
// storage.LeaseRecord (name, holder, expiry, and a token unique to each
// write) as JSON. The key is a hash so that lease names that are prefixes
// of each other ("shell" and "shell/git", both image names) do not collide
// on servers that keep objects as files in directories (versitygw, MinIO),
// where "a" and "a/b" cannot both be objects.
//
// The protocol is storage.TryVersionedLease's, over S3's conditional
// writes, which the service applies atomically per key, with the object's
// ETag as the record's version (every record differs by its token, so
// every write has an ETag of its own): a create has If-None-Match: *, a
// replace If-Match of the ETag read (or of our own last one, to renew),
// and a release deletes with If-Match where the server honours it (New
// checks; versitygw does). On a server that does not, a release racing a
// takeover of our expired lease could delete the new holder's lease: that
// holder's next Renew then fails, and it stops.

// leaseKey returns the object key of a lease.
func leaseKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return leasePrefix + hex.EncodeToString(sum[:])
}

// TryLease implements storage.Leaser.
func (b *Backend) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	return storage.TryVersionedLease(ctx, leaseStore{b}, b.log, name, holder, ttl, opts...)
}

// leaseStore is the backend as a storage.VersionedLeaseStore; a version is
// an ETag.
type leaseStore struct{ b *Backend }

// CreateLease implements storage.VersionedLeaseStore.
func (s leaseStore) CreateLease(ctx context.Context, r storage.LeaseRecord) (string, error) {
	return s.write(ctx, r, smallWrite{ifNoneMatch: true})
}

// ReplaceLease implements storage.VersionedLeaseStore.
func (s leaseStore) ReplaceLease(ctx context.Context, r storage.LeaseRecord, etag string) (string, error) {
	return s.write(ctx, r, smallWrite{ifMatch: etag})
}

// write stores r under the condition of sw and returns the ETag written.
func (s leaseStore) write(ctx context.Context, r storage.LeaseRecord, sw smallWrite) (string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	sw.key, sw.data = leaseKey(r.Name), body
	etag, err := s.b.writeSmall(ctx, sw)
	return etag, storageErr(err)
}

// ReadLease implements storage.VersionedLeaseStore.
func (s leaseStore) ReadLease(ctx context.Context, name string) (storage.LeaseRecord, string, error) {
	data, etag, err := s.b.readSmall(ctx, leaseKey(name))
	if err != nil {
		return storage.LeaseRecord{}, "", storageErr(err)
	}
	var r storage.LeaseRecord
	if err := json.Unmarshal(data, &r); err != nil {
		// Damaged: a zero expiry, which counts as expired.
		return storage.LeaseRecord{}, etag, nil
	}
	return r, etag, nil
}

// DeleteLease implements storage.VersionedLeaseStore, with If-Match only
// where the server honours it.
func (s leaseStore) DeleteLease(ctx context.Context, name, etag string) error {
	ctx, cancel := s.b.opContext(ctx)
	defer cancel()
	del := &s3.DeleteObjectInput{Bucket: aws.String(s.b.bucket), Key: aws.String(leaseKey(name))}
	if s.b.conditionalDelete {
		del.IfMatch = aws.String(etag)
	}
	_, err := s.b.client.DeleteObject(ctx, del)
	return storageErr(err)
}
