package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/storage"
)

// A lease is the object leases/<sha256 of its name>, holding the
// storage.LeaseRecord (name, holder, expiry, and a token unique to each
// write) as JSON. The key is a hash so that lease names that are prefixes
// of each other ("shell" and "shell/git", both image names) do not collide
// on servers that keep objects as files in directories (versitygw, MinIO),
// where "a" and "a/b" cannot both be objects.
//
// Exclusivity rests on S3's conditional writes, which the service applies
// atomically per key:
//   - taking a free lease creates the object with If-None-Match: *: of
//     concurrent takers, exactly one creates it;
//   - taking over an expired (or our holder's) lease replaces it with
//     If-Match of the ETag that was read and judged expired: of concurrent
//     takers, exactly one replaces that version, and the others' writes
//     fail with 412 (every record differs by its token, so every write has
//     an ETag of its own);
//   - Renew replaces with If-Match of our own last ETag, so it fails once
//     anyone else has written the lease.
//
// A conditional write whose response is lost may have happened: after a
// 412 the writer reads the lease back and recognises its own write by the
// token. Release reads the lease and deletes it only while it is still our
// version, with If-Match on the delete where the server honours it (New
// checks; versitygw does). On a server that does not, a release racing a
// takeover of our expired lease could delete the new holder's lease: that
// holder's next Renew then fails, and it stops.

// leaseRounds bounds how often TryLease re-reads a lease that changed under
// it before it gives up.
const leaseRounds = 5

// leaseKey returns the object key of a lease.
func leaseKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return leasePrefix + hex.EncodeToString(sum[:])
}

// TryLease implements storage.Leaser.
func (b *Backend) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	base, err := storage.NewLeaseBase(name, holder, ttl, opts...)
	if err != nil {
		return nil, err
	}
	l := &lease{LeaseBase: base, backend: b, key: leaseKey(name)}
	log := b.log.WithFields(logrus.Fields{"lease": name, "holder": holder})
	for range leaseRounds {
		// A free lease: create it.
		err := l.write(ctx, smallWrite{ifNoneMatch: true})
		if err == nil {
			log.Debug("lease taken")
			return l, nil
		}
		if !isPreconditionFailed(err) {
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		}
		current, etag, err := l.read(ctx)
		switch {
		case isNotExist(err):
			continue // released meanwhile: try again to create it
		case err != nil:
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		case l.adopt(current, etag):
			log.Debug("lease taken (the response to our create was lost)")
			return l, nil
		}
		reason, err := l.TakeoverReason(current)
		if err != nil {
			return nil, err
		}
		// Expired, our holder's, or its holder gone: replace exactly the
		// version read.
		err = l.write(ctx, smallWrite{ifMatch: etag})
		if err == nil {
			log.WithFields(logrus.Fields{"previous_holder": current.Holder, "expires": current.Expires, "reason": reason}).Info("took over lease")
			return l, nil
		}
		if !isPreconditionFailed(err) && !isNotExist(err) {
			return nil, fmt.Errorf("taking over lease %s: %w", name, err)
		}
		if ours, err := l.confirm(ctx); err != nil {
			return nil, fmt.Errorf("taking over lease %s: %w", name, err)
		} else if ours {
			return l, nil
		}
		// Someone else changed (or released) it first: judge anew.
	}
	return nil, fmt.Errorf("taking lease %s: it changed under us %d times in a row", name, leaseRounds)
}

// lease is a lease held through this backend: the shared
// storage.LeaseBase, and the ETag of its record.
type lease struct {
	*storage.LeaseBase
	backend *Backend
	key     string

	// Guarded by the LeaseBase's lock (Update):
	etag string // ETag of our last known write
	// pending holds the tokens of writes whose outcome is unknown (they
	// failed, but may have happened with their response lost): finding
	// one of them in the stored record means the lease is ours.
	pending []string
}

// Renew implements storage.Lease.
func (l *lease) Renew(ctx context.Context) error {
	return l.Update("renewing", func() error {
		err := l.write(ctx, smallWrite{ifMatch: l.etag})
		if err == nil || (!isPreconditionFailed(err) && !isNotExist(err)) {
			return err
		}
		switch ours, err := l.confirm(ctx); {
		case err != nil:
			return err
		case ours:
			return nil
		default:
			return storage.ErrLeaseLost
		}
	})
}

// Release implements storage.Lease.
func (l *lease) Release(ctx context.Context) error {
	return l.Update("releasing", func() error {
		current, etag, err := l.read(ctx)
		switch {
		case isNotExist(err):
			return nil
		case err != nil:
			return err
		case !l.adopt(current, etag):
			l.backend.log.WithFields(logrus.Fields{"lease": l.Name(), "holder": current.Holder}).Debug("lease already lost, nothing to release")
			return nil
		}
		dctx, cancel := l.backend.opContext(ctx)
		defer cancel()
		del := &s3.DeleteObjectInput{Bucket: aws.String(l.backend.bucket), Key: aws.String(l.key)}
		if l.backend.conditionalDelete {
			del.IfMatch = aws.String(etag)
		}
		_, err = l.backend.client.DeleteObject(dctx, del)
		if err != nil && !isNotExist(err) && !isPreconditionFailed(err) {
			return err
		}
		l.Released()
		return nil
	})
}

// write stores a new record for us (storage.LeaseBase.NextRecord) under
// the condition of sw. On success the lease holds the new record at its
// ETag; on failure the token attempted is pending, for confirm.
func (l *lease) write(ctx context.Context, sw smallWrite) error {
	r := l.NextRecord()
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sw.key, sw.data = l.key, body
	etag, err := l.backend.writeSmall(ctx, sw)
	if err != nil {
		l.pending = append(l.pending, r.Token)
		return err
	}
	l.Hold(r)
	l.etag, l.pending = etag, nil
	return nil
}

// confirm reads the lease after a conditional write failed and reports
// whether the stored record is ours after all (a write whose response was
// lost happened, and its retry found the condition spent by the write
// itself), adopting it if so.
func (l *lease) confirm(ctx context.Context) (bool, error) {
	current, etag, err := l.read(ctx)
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return l.adopt(current, etag), nil
}

// adopt reports whether the record read (with its ETag) is our last known
// write or one of our pending ones, and if so makes it our last known
// write.
func (l *lease) adopt(current storage.LeaseRecord, etag string) bool {
	known := l.Ours(current) && etag == l.etag
	if !known && !slices.Contains(l.pending, current.Token) {
		return false
	}
	l.Hold(current)
	l.etag, l.pending = etag, nil
	return true
}

// read returns the stored record and its ETag.
func (l *lease) read(ctx context.Context) (storage.LeaseRecord, string, error) {
	data, etag, err := l.backend.readSmall(ctx, l.key)
	if err != nil {
		return storage.LeaseRecord{}, "", err
	}
	var r storage.LeaseRecord
	if err := json.Unmarshal(data, &r); err != nil || r.Expires.IsZero() {
		// A record that cannot be read has no valid expiry: it counts as
		// expired, so that damage cannot block a lease for good.
		l.backend.log.WithError(err).WithField("lease", l.Name()).Warn("lease record without a valid expiry; treating it as expired")
		return storage.LeaseRecord{}, etag, nil
	}
	return r, etag, nil
}
