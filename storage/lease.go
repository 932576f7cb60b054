package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
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
	// callers with different holders, at most one gets the lease. Options
	// (TakeOverGone) are passed to NewLeaseBase.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...LeaseOption) (Lease, error)
}

// LeaseOption adjusts one TryLease.
type LeaseOption func(*LeaseBase)

// TakeOverGone makes TryLease count a lease as expired when gone says its
// holder is gone (the caller knows its holder names, say a process known
// to have died), so that it is taken over at once rather than at its
// expiry, by the same conditional write that takes over an expired lease.
// gone is never asked about the caller's own holder. It must answer true
// only when sure: a live holder judged gone would lose its lease to a
// second holder.
func TakeOverGone(gone func(holder string) bool) LeaseOption {
	return func(l *LeaseBase) { l.gone = gone }
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

// LeaseBase is the part of a Lease that every backend keeps the same way:
// the lease's name, holder and ttl, the token and expiry of the record the
// holder last wrote, and the lock that orders the holder's own updates. It
// makes the records to write (NextRecord) and judges the records read
// (CanTake, Ours). A backend's lease embeds it, which gives Holder and
// Expires, and adds Renew and Release: its own conditional writes, each
// made through Update, under whose lock the backend may keep more state of
// its own (GCS: the generation of the record).
type LeaseBase struct {
	name   string
	holder string
	ttl    time.Duration
	gone   func(holder string) bool // TakeOverGone's; nil: none is

	mu      sync.Mutex // guards the fields below
	token   string     // identifies our record among all records of the lease
	expires time.Time
}

// NewLeaseBase checks the arguments of TryLease (ValidLeaseArgs) and
// returns the base of a lease not yet taken, with TryLease's options.
func NewLeaseBase(name, holder string, ttl time.Duration, opts ...LeaseOption) (*LeaseBase, error) {
	if err := ValidLeaseArgs(name, holder, ttl); err != nil {
		return nil, err
	}
	l := &LeaseBase{name: name, holder: holder, ttl: ttl}
	for _, opt := range opts {
		opt(l)
	}
	return l, nil
}

// Update runs fn, one of the holder's updates of the lease (a renewal, a
// release), while holding the lock that orders them, and says what failed:
// an error of fn comes back as "<doing> lease <name>: <error>", wrapped.
func (l *LeaseBase) Update(doing string, fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := fn(); err != nil {
		return fmt.Errorf("%s lease %s: %w", doing, l.name, err)
	}
	return nil
}

// Name returns the lease's name.
func (l *LeaseBase) Name() string { return l.name }

// Holder implements Lease.
func (l *LeaseBase) Holder() string { return l.holder }

// Expires implements Lease. Do not call it from within Update.
func (l *LeaseBase) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// NextRecord returns a new record of the lease for its holder, expiring
// ttl from now, with a token of its own. Writing it changes nothing here
// until Hold says it was written.
func (l *LeaseBase) NextRecord() LeaseRecord {
	return LeaseRecord{
		Name:    l.name,
		Holder:  l.holder,
		Expires: time.Now().Add(l.ttl).UTC(),
		Token:   rand.Text(),
	}
}

// Hold records that r, a record of ours (from NextRecord), is the one
// stored: its token and expiry are now the lease's. Call it, as Ours and
// Released, from within Update, or before the lease is shared (TryLease).
func (l *LeaseBase) Hold(r LeaseRecord) {
	l.token, l.expires = r.Token, r.Expires
}

// Ours reports whether r is the record we last wrote (Hold).
func (l *LeaseBase) Ours(r LeaseRecord) bool {
	return l.token != "" && r.Token == l.token
}

// Released records that the lease was given up: it no longer expires in
// the future.
func (l *LeaseBase) Released() {
	l.expires = time.Time{}
}

// CanTake returns nil if the holder may take the lease whose stored record
// is current: it has expired, it is the holder's own, or its holder is
// gone (TakeOverGone). Otherwise it returns a *LeaseHeldError saying who
// holds it and until when.
func (l *LeaseBase) CanTake(current LeaseRecord) error {
	_, err := l.TakeoverReason(current)
	return err
}

// TakeoverReason is CanTake that also says, for logs, why the holder may
// take the lease: "own" (the holder's own record), "expired", or "holder
// gone" (TakeOverGone).
func (l *LeaseBase) TakeoverReason(current LeaseRecord) (string, error) {
	switch {
	case current.Holder == l.holder:
		return "own", nil
	case !current.HeldAgainst(l.holder, time.Now()):
		return "expired", nil
	case l.gone != nil && l.gone(current.Holder):
		return "holder gone", nil
	}
	return "", &LeaseHeldError{Name: l.name, Holder: current.Holder, Expires: current.Expires}
}
