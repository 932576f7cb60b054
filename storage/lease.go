package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLeaseHeld is returned (wrapped, as a *LeaseHeldError) by TryLease when
// another holder has the lease and it has not expired.
var ErrLeaseHeld = errors.New("lease held by another holder")

// ErrLeaseLost is returned (wrapped) by Renew when the lease is no longer
// ours: it expired and another holder took it over, or it was removed.
var ErrLeaseLost = errors.New("lease lost")

// Leaser is implemented by backends that can arbitrate between several
// nixport instances sharing them, so that only one of them builds a given
// image at a time. It is optional: a caller checks with a type assertion.
//
// A lease has a name (an object name, see ValidObjectName; lease names and
// object names do not collide), a holder (who holds it, for logs and error
// messages; an instance's own identifier) and an expiry, so that a holder
// that crashes stops blocking others once its lease times out. Expiry is
// judged with the clocks of the machines involved: they must agree to well
// within the lease's ttl (as NTP keeps them).
type Leaser interface {
	// TryLease takes the lease called name for holder, for ttl, if nobody
	// else holds it: if it is free, expired, or held by the same holder
	// (an instance restarted under the same identity takes its lease back;
	// its earlier Lease value then fails to renew). Otherwise it returns a
	// *LeaseHeldError, which wraps ErrLeaseHeld. Of several concurrent
	// callers with different holders, at most one gets the lease.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)
}

// Lease is a lease taken with TryLease. Its methods are safe for concurrent
// use (a renewing goroutine beside the one that releases).
type Lease interface {
	// Renew extends the lease by its ttl from now. It fails with an error
	// wrapping ErrLeaseLost if the lease expired and was taken over, or was
	// removed; the caller must then stop acting as the holder.
	Renew(ctx context.Context) error
	// Release gives the lease up, so that another holder may take it at
	// once. It is best effort: a lease already lost is left alone (that is
	// no error), and one that cannot be released still expires.
	Release(ctx context.Context) error
	// Holder returns the holder the lease was taken for.
	Holder() string
	// Expires returns when the lease expires unless renewed, as of the last
	// successful TryLease or Renew.
	Expires() time.Time
}

// LeaseHeldError says who holds a lease that TryLease could not take, and
// until when, so that a caller can wait for the holder's work or for the
// expiry. It wraps ErrLeaseHeld.
type LeaseHeldError struct {
	Name    string
	Holder  string
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("lease %s is held by %q until %s", e.Name, e.Holder, e.Expires.UTC().Format(time.RFC3339Nano))
}

// Unwrap makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// LeaseRecord is what a backend stores for a lease: who holds it, until
// when, and a token unique to the TryLease that took it, which tells that
// holder's later updates apart from anyone else's.
type LeaseRecord struct {
	Name    string    `json:"name"`
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
	Token   string    `json:"token"`
}

// HeldAgainst reports whether the record keeps holder from taking the lease
// at now: it has not expired and another holder has it.
func (r LeaseRecord) HeldAgainst(holder string, now time.Time) bool {
	return r.Holder != holder && now.Before(r.Expires)
}

// ValidLeaseArgs checks the arguments of TryLease, as every backend does.
// Errors about the name wrap ErrInvalidName.
func ValidLeaseArgs(name, holder string, ttl time.Duration) error {
	if err := ValidObjectName(name); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if holder == "" {
		return fmt.Errorf("lease %s: empty holder", name)
	}
	if len(holder) > 256 {
		return fmt.Errorf("lease %s: holder longer than 256 bytes", name)
	}
	if ttl <= 0 {
		return fmt.Errorf("lease %s: ttl %s is not positive", name, ttl)
	}
	return nil
}
