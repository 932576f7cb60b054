package gcs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	gstorage "cloud.google.com/go/storage"

	"github.com/nixport/nixport/storage"
)

// A lease is the object leases/<name>. Its metadata holds the
// storage.LeaseRecord (holder, expiry, and a token unique to each write);
// its body holds the same as JSON, for people reading the bucket. The
// protocol is storage.TryVersionedLease's, over GCS's conditional writes,
// which the service applies atomically per object, with the object's
// generation as the record's version: a create has the precondition
// DoesNotExist, a replace GenerationMatch of the generation read (or of
// our own last one, to renew), and a release deletes with GenerationMatch
// too, which GCS honours; fake-gcs-server does not, so there a release
// racing a takeover of our expired lease could delete the new holder's
// lease: that holder's next Renew then fails.
const (
	metaLeaseHolder  = "nixport-lease-holder"
	metaLeaseExpires = "nixport-lease-expires"
	metaLeaseName    = "nixport-lease-name"
)

// TryLease implements storage.Leaser.
func (b *Backend) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	return storage.TryVersionedLease(ctx, leaseStore{b}, b.log, name, holder, ttl, opts...)
}

// leaseStore is the backend as a storage.VersionedLeaseStore; a version is
// an object generation, in decimal.
type leaseStore struct{ b *Backend }

func leaseKey(name string) string { return leasePrefix + name }

// CreateLease implements storage.VersionedLeaseStore.
func (s leaseStore) CreateLease(ctx context.Context, r storage.LeaseRecord) (string, error) {
	return s.write(ctx, r, gstorage.Conditions{DoesNotExist: true})
}

// ReplaceLease implements storage.VersionedLeaseStore.
func (s leaseStore) ReplaceLease(ctx context.Context, r storage.LeaseRecord, version string) (string, error) {
	gen, err := parseGeneration(version)
	if err != nil {
		return "", err
	}
	return s.write(ctx, r, gstorage.Conditions{GenerationMatch: gen})
}

// write stores r under conds and returns the generation written.
func (s leaseStore) write(ctx context.Context, r storage.LeaseRecord, conds gstorage.Conditions) (string, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	attrs, err := s.b.writeSmall(ctx, smallWrite{
		key:   leaseKey(r.Name),
		data:  body,
		conds: &conds,
		metadata: map[string]string{
			metaLeaseName:    r.Name,
			metaLeaseHolder:  r.Holder,
			metaLeaseExpires: r.Expires.Format(time.RFC3339Nano),
			metaToken:        r.Token,
		},
	})
	if err != nil {
		return "", storageErr(err)
	}
	return strconv.FormatInt(attrs.Generation, 10), nil
}

// ReadLease implements storage.VersionedLeaseStore: it reads the record
// from the object's metadata.
func (s leaseStore) ReadLease(ctx context.Context, name string) (storage.LeaseRecord, string, error) {
	ctx, cancel := s.b.opContext(ctx)
	defer cancel()
	attrs, err := s.b.bucket.Object(leaseKey(name)).Attrs(ctx)
	if err != nil {
		return storage.LeaseRecord{}, "", storageErr(err)
	}
	r := storage.LeaseRecord{
		Name:   attrs.Metadata[metaLeaseName],
		Holder: attrs.Metadata[metaLeaseHolder],
		Token:  attrs.Metadata[metaToken],
	}
	// Without a valid expiry the record keeps a zero one: it counts as
	// expired.
	if expires, err := time.Parse(time.RFC3339Nano, attrs.Metadata[metaLeaseExpires]); err == nil {
		r.Expires = expires
	}
	return r, strconv.FormatInt(attrs.Generation, 10), nil
}

// DeleteLease implements storage.VersionedLeaseStore.
func (s leaseStore) DeleteLease(ctx context.Context, name, version string) error {
	gen, err := parseGeneration(version)
	if err != nil {
		return err
	}
	ctx, cancel := s.b.opContext(ctx)
	defer cancel()
	return storageErr(s.b.bucket.Object(leaseKey(name)).If(gstorage.Conditions{GenerationMatch: gen}).Delete(ctx))
}

// parseGeneration reads a version of a lease record.
func parseGeneration(version string) (int64, error) {
	gen, err := strconv.ParseInt(version, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lease record version %q is not a generation: %w", version, err)
	}
	return gen, nil
}
