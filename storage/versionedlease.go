package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrConditionFailed is returned (wrapped) by a backend's conditional write
// whose condition did not hold: the object exists (create only), or it is
// no longer the version the write named (replace only): an HTTP 412.
var ErrConditionFailed = errors.New("precondition failed")

// VersionedLeaseStore is what a networked backend (GCS, S3) offers for
// leases: one stored record per lease name, and conditional writes of it,
// which the service applies atomically per object, judged by a version of
// the record that every write changes (GCS: the object's generation; S3:
// its ETag, which differs for every record since each holds a token of its
// own). The version is opaque here: it is only compared and passed back.
// TryVersionedLease builds the lease protocol on it, so that a backend
// keeps only its SDK calls and the mapping of its errors.
//
// Errors: a condition that fails wraps ErrConditionFailed, a record that
// does not exist wraps ErrNotFound; any other error is the service's. A
// conditional write whose response is lost may have happened, and the
// SDK's retry of it then fails its condition: the protocol recognises such
// a write afterwards by its record's token, so a store need not.
type VersionedLeaseStore interface {
	// CreateLease stores r as the record of lease r.Name if there is none,
	// and returns its version; if there is one, it fails with
	// ErrConditionFailed.
	CreateLease(ctx context.Context, r LeaseRecord) (version string, err error)
	// ReplaceLease stores r as the record of lease r.Name if the stored one
	// is at version, and returns the new version; else it fails with
	// ErrConditionFailed, or ErrNotFound when there is none.
	ReplaceLease(ctx context.Context, r LeaseRecord, version string) (string, error)
	// ReadLease returns the record of lease name and its version, or
	// ErrNotFound. A record that cannot be decoded comes back with a zero
	// Expires (and whatever could be read of it), without an error.
	ReadLease(ctx context.Context, name string) (LeaseRecord, string, error)
	// DeleteLease removes the record of lease name, only while it is at
	// version where the service can make a delete conditional. It may fail
	// with ErrNotFound or ErrConditionFailed: nothing was deleted.
	DeleteLease(ctx context.Context, name, version string) error
}

// leaseRounds bounds how often TryVersionedLease re-reads a lease that
// changed under it before it gives up.
const leaseRounds = 5

// TryVersionedLease implements Leaser.TryLease over a backend's store of
// lease records, logging to log (the backend's). Exclusivity rests on the
// store's conditional writes:
//   - taking a free lease creates its record (CreateLease): of concurrent
//     takers, exactly one creates it;
//   - taking over an expired (or our holder's, or a gone holder's) lease
//     replaces the record at the version that was read and judged: of
//     concurrent takers, exactly one replaces that version, and the
//     others' writes fail their condition;
//   - Renew replaces the record at our own last version, so it fails once
//     anyone else has written the lease.
//
// A conditional write whose response is lost may have happened: after a
// failed condition the writer reads the lease back and recognises its own
// write by the token. Release reads the lease and deletes it only while it
// is still our version (DeleteLease, conditional where the service honours
// that: where it does not, a release racing a takeover of our expired
// lease could delete the new holder's lease; that holder's next Renew then
// fails, and it stops). No step relies on a precondition of delete or copy.
func TryVersionedLease(ctx context.Context, store VersionedLeaseStore, log logrus.FieldLogger, name, holder string, ttl time.Duration, opts ...LeaseOption) (Lease, error) {
	base, err := NewLeaseBase(name, holder, ttl, opts...)
	if err != nil {
		return nil, err
	}
	l := &versionedLease{LeaseBase: base, store: store, log: log}
	log = log.WithFields(logrus.Fields{"lease": name, "holder": holder})
	for range leaseRounds {
		// A free lease: create it.
		err := l.write(ctx, true, "")
		if err == nil {
			log.Debug("lease taken")
			return l, nil
		}
		if !errors.Is(err, ErrConditionFailed) {
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		}
		current, version, err := l.read(ctx)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // released meanwhile: try again to create it
		case err != nil:
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		case l.adopt(current, version):
			log.Debug("lease taken (the response to our create was lost)")
			return l, nil
		}
		reason, err := l.TakeoverReason(current)
		if err != nil {
			return nil, err
		}
		// Expired, our holder's, or its holder gone: replace exactly the
		// version read.
		err = l.write(ctx, false, version)
		if err == nil {
			log.WithFields(logrus.Fields{"previous_holder": current.Holder, "expires": current.Expires, "reason": reason}).Info("took over lease")
			return l, nil
		}
		if !conditionFailedOrGone(err) {
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

// conditionFailedOrGone reports whether a replace failed because the
// record is no longer the version named: another write, or a delete.
func conditionFailedOrGone(err error) bool {
	return errors.Is(err, ErrConditionFailed) || errors.Is(err, ErrNotFound)
}

// versionedLease is a lease held through a VersionedLeaseStore: the
// shared LeaseBase, and the version of its record.
type versionedLease struct {
	*LeaseBase
	store VersionedLeaseStore
	log   logrus.FieldLogger

	// Guarded by the LeaseBase's lock (Update):
	version string // version of our last known write
	// pending holds the tokens of writes whose outcome is unknown (they
	// failed, but may have happened with their response lost): finding
	// one of them in the stored record means the lease is ours.
	pending []string
}

// Renew implements Lease.
func (l *versionedLease) Renew(ctx context.Context) error {
	return l.Update("renewing", func() error {
		err := l.write(ctx, false, l.version)
		if err == nil || !conditionFailedOrGone(err) {
			return err
		}
		switch ours, err := l.confirm(ctx); {
		case err != nil:
			return err
		case ours:
			return nil
		default:
			return ErrLeaseLost
		}
	})
}

// Release implements Lease.
func (l *versionedLease) Release(ctx context.Context) error {
	return l.Update("releasing", func() error {
		current, version, err := l.read(ctx)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		case !l.adopt(current, version):
			l.log.WithFields(logrus.Fields{"lease": l.Name(), "holder": current.Holder}).Debug("lease already lost, nothing to release")
			return nil
		}
		err = l.store.DeleteLease(ctx, l.Name(), version)
		if err != nil && !conditionFailedOrGone(err) {
			return err
		}
		l.Released()
		return nil
	})
}

// write stores a new record for us (NextRecord): created if create, else
// replacing exactly version. On success the lease holds the new record at
// its version; on failure the token attempted is pending, for confirm.
func (l *versionedLease) write(ctx context.Context, create bool, version string) error {
	r := l.NextRecord()
	var err error
	var written string
	if create {
		written, err = l.store.CreateLease(ctx, r)
	} else {
		written, err = l.store.ReplaceLease(ctx, r, version)
	}
	if err != nil {
		l.pending = append(l.pending, r.Token)
		return err
	}
	l.Hold(r)
	l.version, l.pending = written, nil
	return nil
}

// confirm reads the lease after a conditional write failed and reports
// whether the stored record is ours after all (a write whose response was
// lost happened, and its retry found the condition spent by the write
// itself), adopting it if so.
func (l *versionedLease) confirm(ctx context.Context) (bool, error) {
	current, version, err := l.read(ctx)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return l.adopt(current, version), nil
}

// adopt reports whether the record read (at version) is our last known
// write or one of our pending ones, and if so makes it our last known
// write.
func (l *versionedLease) adopt(current LeaseRecord, version string) bool {
	known := l.Ours(current) && version == l.version
	if !known && !slices.Contains(l.pending, current.Token) {
		return false
	}
	l.Hold(current)
	l.version, l.pending = version, nil
	return true
}

// read returns the stored record and its version.
func (l *versionedLease) read(ctx context.Context) (LeaseRecord, string, error) {
	r, version, err := l.store.ReadLease(ctx, l.Name())
	if err == nil && r.Expires.IsZero() {
		// A record that cannot be read has no valid expiry: it counts as
		// expired, so that damage cannot block a lease for good.
		l.log.WithFields(logrus.Fields{"lease": l.Name(), "holder": r.Holder}).Warn("lease record without a valid expiry; treating it as expired")
	}
	return r, version, err
}
