package gcs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/storage"
)

// A lease is the object leases/<name>. Its metadata holds the
// storage.LeaseRecord (holder, expiry, and a token unique to each write);
// its body holds the same as JSON, for people reading the bucket.
//
// Exclusivity rests on GCS's conditional writes, which the service applies
// atomically per object:
//   - taking a free lease creates the object with a DoesNotExist
//     precondition: of concurrent takers, exactly one creates it;
//   - taking over an expired (or our holder's) lease overwrites it with
//     GenerationMatch of the generation that was read and judged expired:
//     of concurrent takers, exactly one replaces that generation, and the
//     others' writes fail with 412;
//   - Renew overwrites with GenerationMatch of our own last generation, so
//     it fails once anyone else has written the lease.
//
// A conditional write whose response is lost may have happened: after a
// 412 the writer reads the lease back and recognises its own write by the
// token. Release reads the lease and deletes it only while it is still our
// generation (and with GenerationMatch, which GCS honours; fake-gcs-server
// does not, so there a release racing a takeover of our expired lease could
// delete the new holder's lease: that holder's next Renew then fails). No
// step relies on a precondition of delete or copy.
const (
	metaLeaseHolder  = "nixport-lease-holder"
	metaLeaseExpires = "nixport-lease-expires"
	metaLeaseName    = "nixport-lease-name"
)

// leaseRounds bounds how often TryLease re-reads a lease that changed under
// it before it gives up.
const leaseRounds = 5

// TryLease implements storage.Leaser.
func (b *Backend) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	base, err := storage.NewLeaseBase(name, holder, ttl, opts...)
	if err != nil {
		return nil, err
	}
	l := &lease{LeaseBase: base, backend: b, key: leasePrefix + name}
	log := b.log.WithFields(logrus.Fields{"lease": name, "holder": holder})
	for range leaseRounds {
		// A free lease: create it.
		err := l.write(ctx, gstorage.Conditions{DoesNotExist: true})
		if err == nil {
			log.Debug("lease taken")
			return l, nil
		}
		if !isPreconditionFailed(err) {
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		}
		current, gen, err := l.read(ctx)
		switch {
		case isNotExist(err):
			continue // released meanwhile: try again to create it
		case err != nil:
			return nil, fmt.Errorf("taking lease %s: %w", name, err)
		case l.adopt(current, gen):
			log.Debug("lease taken (the response to our create was lost)")
			return l, nil
		}
		reason, err := l.TakeoverReason(current)
		if err != nil {
			return nil, err
		}
		// Expired, our holder's, or its holder gone: replace exactly the
		// generation read.
		err = l.write(ctx, gstorage.Conditions{GenerationMatch: gen})
		if err == nil {
			log.WithFields(logrus.Fields{"previous_holder": current.Holder, "expires": current.Expires, "reason": reason}).Info("took over lease")
			return l, nil
		}
		if !isPreconditionFailed(err) {
			return nil, fmt.Errorf("taking over lease %s: %w", name, err)
		}
		if ours, err := l.confirm(ctx); err != nil {
			return nil, fmt.Errorf("taking over lease %s: %w", name, err)
		} else if ours {
			return l, nil
		}
		// Someone else changed it first: judge the new record.
	}
	return nil, fmt.Errorf("taking lease %s: it changed under us %d times in a row", name, leaseRounds)
}

// lease is a lease held through this backend: the shared
// storage.LeaseBase, and what the object's generations add to it.
type lease struct {
	*storage.LeaseBase
	backend *Backend
	key     string

	// Guarded by the LeaseBase's lock (Update):
	gen int64 // generation of our last known write
	// pending holds the tokens of writes whose outcome is unknown (they
	// failed, but may have happened with their response lost): finding
	// one of them in the stored record means the lease is ours.
	pending []string
}

// Renew implements storage.Lease.
func (l *lease) Renew(ctx context.Context) error {
	return l.Update("renewing", func() error {
		err := l.write(ctx, gstorage.Conditions{GenerationMatch: l.gen})
		if !isPreconditionFailed(err) && !isNotExist(err) {
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
		current, gen, err := l.read(ctx)
		switch {
		case isNotExist(err):
			return nil
		case err != nil:
			return err
		case !l.adopt(current, gen):
			l.backend.log.WithFields(logrus.Fields{"lease": l.Name(), "holder": current.Holder}).Debug("lease already lost, nothing to release")
			return nil
		}
		dctx, cancel := l.backend.opContext(ctx)
		defer cancel()
		err = l.backend.bucket.Object(l.key).If(gstorage.Conditions{GenerationMatch: gen}).Delete(dctx)
		if err != nil && !isNotExist(err) && !isPreconditionFailed(err) {
			return err
		}
		l.Released()
		return nil
	})
}

// write stores a new record for us (storage.LeaseBase.NextRecord) under
// conds. On success the lease holds the new record at its generation; on
// failure the token attempted is pending, for confirm.
func (l *lease) write(ctx context.Context, conds gstorage.Conditions) error {
	r := l.NextRecord()
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	attrs, err := l.backend.writeSmall(ctx, smallWrite{
		key:   l.key,
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
		l.pending = append(l.pending, r.Token)
		return err
	}
	l.Hold(r)
	l.gen, l.pending = attrs.Generation, nil
	return nil
}

// confirm reads the lease after a conditional write failed and reports
// whether the stored record is ours after all (a write whose response was
// lost happened, and its retry found the condition spent by the write
// itself), adopting it if so.
func (l *lease) confirm(ctx context.Context) (bool, error) {
	current, gen, err := l.read(ctx)
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return l.adopt(current, gen), nil
}

// adopt reports whether the record read (at generation gen) is our last
// known write or one of our pending ones, and if so makes it our last
// known write.
func (l *lease) adopt(current storage.LeaseRecord, gen int64) bool {
	known := l.Ours(current) && gen == l.gen
	if !known && !slices.Contains(l.pending, current.Token) {
		return false
	}
	l.Hold(current)
	l.gen, l.pending = gen, nil
	return true
}

// read returns the stored record and its generation.
func (l *lease) read(ctx context.Context) (storage.LeaseRecord, int64, error) {
	ctx, cancel := l.backend.opContext(ctx)
	defer cancel()
	attrs, err := l.backend.bucket.Object(l.key).Attrs(ctx)
	if err != nil {
		return storage.LeaseRecord{}, 0, err
	}
	r := storage.LeaseRecord{
		Name:   attrs.Metadata[metaLeaseName],
		Holder: attrs.Metadata[metaLeaseHolder],
		Token:  attrs.Metadata[metaToken],
	}
	// A record that cannot be read has no valid expiry: it counts as
	// expired, so that damage cannot block a lease for good.
	if expires, err := time.Parse(time.RFC3339Nano, attrs.Metadata[metaLeaseExpires]); err == nil {
		r.Expires = expires
	} else {
		l.backend.log.WithError(err).WithField("lease", l.Name()).Warn("lease record without a valid expiry; treating it as expired")
	}
	return r, attrs.Generation, nil
}
