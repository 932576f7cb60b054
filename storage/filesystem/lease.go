package filesystem

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/storage"
)

// Leases live in their own directory, one flat pair of files per lease:
//
//	leases/<sha256 of name>.lease   the current storage.LeaseRecord (JSON)
//	leases/<sha256 of name>.lock    guards every change to the .lease file
//
// The file names are hashes so that lease names that are prefixes of each
// other ("shell" and "shell/git", both image names) do not collide as file
// and directory, and long names still fit NAME_MAX.
//
// Exclusivity: every read-decide-write of a lease (take, take over, renew,
// release) runs while holding an exclusive flock(2) on the lease's .lock
// file, so the decisions of all goroutines and processes on the directory
// are serialised: of several takers of a free or expired lease exactly one
// finds it free, writes its record and wins; the others find that record.
// The record itself only ever changes atomically: a first lease is created
// with link(2) (which fails if the name exists), later ones replace it with
// rename(2) of a complete, fsynced temporary file, so a crash leaves the old
// or the new record, never a torn one, and the kernel drops the lock of a
// process that dies. Lock files are never removed: removing one while
// another process waits on it would let two lockers proceed at once.
//
// This holds for processes sharing one kernel, and over NFS as far as the
// client implements flock with server-side locks (Linux does, on NFSv4).
const leaseDir = "leases"

// lockPoll is how often a lease operation retries a lock held by someone
// else. Lease operations hold the lock for a few file operations only.
const lockPoll = 5 * time.Millisecond

var _ storage.Leaser = (*Backend)(nil)

// leasePaths returns the lease's record and lock file, relative to the root.
func leasePaths(name string) (record, lock string) {
	sum := sha256.Sum256([]byte(name))
	base := leaseDir + "/" + hex.EncodeToString(sum[:])
	return base + ".lease", base + ".lock"
}

// TryLease implements storage.Leaser.
func (b *Backend) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	base, err := storage.NewLeaseBase(name, holder, ttl, opts...)
	if err != nil {
		return nil, err
	}
	recordPath, lockPath := leasePaths(name)
	l := &lease{LeaseBase: base, backend: b, recordPath: recordPath, lockPath: lockPath}
	err = l.locked(ctx, func() error {
		current, err := l.read()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return l.write(ctx, b.root.Link)
		case errors.Is(err, errDamagedRecord):
			// Records are only ever replaced whole, so this is damage from
			// outside; left alone it would block the lease for good.
			b.log.WithError(err).WithFields(logrus.Fields{"lease": name, "holder": holder}).Warn("replacing damaged lease record")
			return l.write(ctx, b.root.Rename)
		case err != nil:
			return err
		}
		reason, err := l.TakeoverReason(current)
		if err != nil {
			return err
		}
		b.log.WithFields(logrus.Fields{
			"lease": name, "holder": holder, "previous_holder": current.Holder, "expires": current.Expires, "reason": reason,
		}).Info("taking over lease")
		return l.write(ctx, b.root.Rename)
	})
	if err != nil {
		return nil, fmt.Errorf("taking lease %s: %w", name, err)
	}
	return l, nil
}

// lease is a lease held through this backend: the shared storage.LeaseBase
// and the files that keep it.
type lease struct {
	*storage.LeaseBase
	backend    *Backend
	recordPath string
	lockPath   string
}

// Renew implements storage.Lease.
func (l *lease) Renew(ctx context.Context) error {
	return l.Update("renewing", func() error {
		return l.locked(ctx, func() error {
			if err := l.stillOurs(); err != nil {
				return err
			}
			return l.write(ctx, l.backend.root.Rename)
		})
	})
}

// Release implements storage.Lease.
func (l *lease) Release(ctx context.Context) error {
	return l.Update("releasing", func() error {
		return l.locked(ctx, func() error {
			if err := l.stillOurs(); err != nil {
				l.backend.log.WithError(err).WithField("lease", l.Name()).Debug("lease already lost, nothing to release")
				return nil
			}
			if err := l.backend.root.Remove(l.recordPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			l.Released()
			return l.backend.syncDir(leaseDir)
		})
	})
}

// stillOurs checks, under the lock, that the stored record is the one we
// wrote last.
func (l *lease) stillOurs() error {
	current, err := l.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("record removed: %w", storage.ErrLeaseLost)
	case err != nil:
		return err
	case !l.Ours(current):
		return fmt.Errorf("taken over by %q: %w", current.Holder, storage.ErrLeaseLost)
	}
	return nil
}

// errDamagedRecord is returned (wrapped) by read for a record that is not
// valid JSON.
var errDamagedRecord = errors.New("damaged lease record")

// read returns the stored record. Call with the lock held.
func (l *lease) read() (storage.LeaseRecord, error) {
	data, err := l.backend.root.ReadFile(l.recordPath)
	if err != nil {
		return storage.LeaseRecord{}, err
	}
	var r storage.LeaseRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return storage.LeaseRecord{}, fmt.Errorf("lease record %s: %w: %w", l.recordPath, errDamagedRecord, err)
	}
	return r, nil
}

// write stores a new record for us (storage.LeaseBase.NextRecord) and
// gives it the record's name with place (link to create, rename to
// replace). Call with the lock held. On success the lease holds the new
// record.
func (l *lease) write(ctx context.Context, place func(oldname, newname string) error) error {
	b := l.backend
	r := l.NextRecord()
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	temp, err := b.writeTemp(ctx, "lease", data)
	if err != nil {
		return err
	}
	defer b.removeQuietly(temp) // gone after a rename; a spare name after a link
	if err := place(temp, l.recordPath); err != nil {
		return err
	}
	if err := b.syncDir(leaseDir); err != nil {
		return err
	}
	l.Hold(r)
	return nil
}

// locked runs fn while holding the lease's lock file exclusively, waiting
// for the lock until ctx is done.
func (l *lease) locked(ctx context.Context, fn func() error) error {
	b := l.backend
	if err := b.root.MkdirAll(leaseDir, dirPerm); err != nil {
		return err
	}
	f, err := b.root.OpenFile(l.lockPath, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return fmt.Errorf("opening lock file: %w", err)
	}
	defer f.Close() // closing the descriptor also drops the lock
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("locking %s: %w", l.lockPath, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock %s: %w", l.lockPath, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	defer syscall.Flock(fd, syscall.LOCK_UN)
	return fn()
}
