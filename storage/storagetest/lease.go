package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/storage"
)

// runLeaseTests checks storage.Leaser. Lease expiry is real time: the short
// leases below expire in well under a second, and the long ones cannot
// expire during a test.
func runLeaseTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	leaser := func(t *testing.T) storage.Leaser {
		t.Helper()
		l, ok := newBackend(t).(storage.Leaser)
		if !ok {
			t.Fatal("the backend stopped implementing storage.Leaser")
		}
		return l
	}
	const long = time.Hour

	t.Run("AcquireAndBlock", func(t *testing.T) {
		b := leaser(t)
		before := time.Now()
		a := tryLease(t, b, "build/shell", "instance-a", long)
		if a.Holder() != "instance-a" {
			t.Errorf("Holder() = %q, want instance-a", a.Holder())
		}
		if exp := a.Expires(); exp.Before(before.Add(long)) || exp.After(time.Now().Add(long)) {
			t.Errorf("Expires() = %s, want about an hour from now", exp)
		}
		requireHeld(t, b, "build/shell", "instance-b", "instance-a")
		// Other names are independent, including ones that are a prefix
		// or an extension of a held name.
		for _, other := range []string{"build/shell/git", "build", "build/shel", "other"} {
			tryLease(t, b, other, "instance-b", long)
		}
	})

	t.Run("SameHolderRetakes", func(t *testing.T) {
		b := leaser(t)
		first := tryLease(t, b, "image", "instance-a", long)
		second := tryLease(t, b, "image", "instance-a", long)
		if err := first.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew of the replaced lease: %v, want ErrLeaseLost", err)
		}
		if err := second.Renew(t.Context()); err != nil {
			t.Errorf("Renew of the current lease: %v", err)
		}
		requireHeld(t, b, "image", "instance-b", "instance-a")
	})

	t.Run("Renew", func(t *testing.T) {
		b := leaser(t)
		const ttl = time.Second
		a := tryLease(t, b, "image", "instance-a", ttl)
		first := a.Expires()
		time.Sleep(600 * time.Millisecond)
		if err := a.Renew(t.Context()); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		if !a.Expires().After(first) {
			t.Errorf("Expires() after Renew = %s, not later than %s", a.Expires(), first)
		}
		time.Sleep(600 * time.Millisecond)
		// Past the first expiry, within the renewed one.
		requireHeld(t, b, "image", "instance-b", "instance-a")
	})

	t.Run("ExpiryTakeover", func(t *testing.T) {
		b := leaser(t)
		const ttl = 100 * time.Millisecond
		a := tryLease(t, b, "image", "instance-a", ttl)
		time.Sleep(2 * ttl)
		bl := tryLease(t, b, "image", "instance-b", long)
		if err := a.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew by the previous holder: %v, want ErrLeaseLost", err)
		}
		// Releasing a lost lease leaves the new holder's alone.
		if err := a.Release(t.Context()); err != nil {
			t.Errorf("Release of a lost lease: %v", err)
		}
		requireHeld(t, b, "image", "instance-c", "instance-b")
		if err := bl.Renew(t.Context()); err != nil {
			t.Errorf("Renew by the new holder: %v", err)
		}
	})

	t.Run("Release", func(t *testing.T) {
		b := leaser(t)
		a := tryLease(t, b, "image", "instance-a", long)
		if err := a.Release(t.Context()); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if err := a.Release(t.Context()); err != nil {
			t.Errorf("second Release: %v", err)
		}
		if err := a.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew after Release: %v, want ErrLeaseLost", err)
		}
		tryLease(t, b, "image", "instance-b", long)
		requireHeld(t, b, "image", "instance-a", "instance-b")
	})

	// Of many takers at once, of a free lease and of an expired one, exactly
	// one wins; the others are told who holds it.
	t.Run("ConcurrentTakers", func(t *testing.T) {
		b := leaser(t)
		for round := range 3 {
			name := fmt.Sprintf("image-%d", round)
			concurrentTakers(t, b, name)

			const ttl = 50 * time.Millisecond
			tryLease(t, b, name+"-expired", "previous", ttl)
			time.Sleep(2 * ttl)
			concurrentTakers(t, b, name+"-expired")
		}
	})

	// A lease whose holder the taker knows to be gone (a crashed process)
	// is taken over at once, as an expired one is; others still wait.
	t.Run("GoneHolderTakeover", func(t *testing.T) {
		b := leaser(t)
		var asked sync.Map
		gone := storage.TakeOverGone(func(holder string) bool {
			asked.Store(holder, true)
			return holder == "crashed"
		})
		crashed := tryLease(t, b, "image", "crashed", long)
		taker, err := b.TryLease(t.Context(), "image", "instance-b", long, gone)
		if err != nil {
			t.Fatalf("TryLease of a gone holder's lease: %v", err)
		}
		if err := crashed.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew by the gone holder: %v, want ErrLeaseLost", err)
		}
		// instance-b is not gone: its lease holds against the same option.
		if _, err := b.TryLease(t.Context(), "image", "instance-c", long, gone); !errors.Is(err, storage.ErrLeaseHeld) {
			t.Errorf("TryLease of a live holder's lease: %v, want ErrLeaseHeld", err)
		}
		// The option is never asked about the taker's own holder.
		if _, err := b.TryLease(t.Context(), "image", "instance-b", long, gone); err != nil {
			t.Errorf("TryLease by the holder itself: %v", err)
		}
		if _, ok := asked.Load("instance-b"); !ok {
			t.Error("gone was not asked about instance-b")
		}
		taker.Release(t.Context())
		if _, ok := asked.Load("crashed"); !ok {
			t.Error("gone was not asked about the crashed holder")
		}
		// Of many takers of a gone holder's lease, exactly one wins.
		for round := range 3 {
			name := fmt.Sprintf("image-%d", round)
			tryLease(t, b, name, "crashed", long)
			concurrentTakers(t, b, name, gone)
		}
	})

	t.Run("SeparateFromObjects", func(t *testing.T) {
		b := leaser(t)
		objects := b.(storage.Backend)
		if err := objects.PutObject(t.Context(), "image", []byte("object")); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		l := tryLease(t, b, "image", "instance-a", long)
		requireObject(t, objects, "image", []byte("object"))
		requireList(t, objects, "", []string{"image"})
		if err := objects.DeleteObject(t.Context(), "image"); err != nil {
			t.Fatalf("DeleteObject: %v", err)
		}
		if err := l.Renew(t.Context()); err != nil {
			t.Errorf("Renew after deleting the object of the same name: %v", err)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		b := leaser(t)
		for _, name := range []string{"", "../x", "/abs", "a//b", "a b", strings.Repeat("a", 300)} {
			if _, err := b.TryLease(t.Context(), name, "h", long); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("TryLease(%q) error = %v, want one wrapping ErrInvalidName", name, err)
			}
		}
		if _, err := b.TryLease(t.Context(), "ok", "", long); err == nil {
			t.Error("TryLease with an empty holder succeeded")
		}
		if _, err := b.TryLease(t.Context(), "ok", "h", 0); err == nil {
			t.Error("TryLease with a zero ttl succeeded")
		}
	})
}

// concurrentTakers has several holders try the lease at once and checks
// that exactly one wins.
func concurrentTakers(t *testing.T, b storage.Leaser, name string, opts ...storage.LeaseOption) {
	t.Helper()
	const takers = 8
	leases := make([]storage.Lease, takers)
	errs := make([]error, takers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() {
			<-start
			leases[i], errs[i] = b.TryLease(t.Context(), name, fmt.Sprintf("taker-%d", i), time.Hour, opts...)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("%s: takers %d and %d both got the lease", name, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrLeaseHeld):
			t.Errorf("%s: taker %d: %v, want nil or ErrLeaseHeld", name, i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no taker got the lease", name)
	}
	for i, err := range errs {
		var held *storage.LeaseHeldError
		if err != nil && errors.As(err, &held) && held.Holder != fmt.Sprintf("taker-%d", winner) {
			t.Errorf("%s: taker %d was told %q holds the lease, but taker-%d does", name, i, held.Holder, winner)
		}
	}
	if err := leases[winner].Renew(t.Context()); err != nil {
		t.Errorf("%s: Renew by the winner: %v", name, err)
	}
}

func tryLease(t *testing.T, b storage.Leaser, name, holder string, ttl time.Duration) storage.Lease {
	t.Helper()
	l, err := b.TryLease(t.Context(), name, holder, ttl)
	if err != nil {
		t.Fatalf("TryLease(%q, %q): %v", name, holder, err)
	}
	return l
}

// requireHeld checks that holder cannot take the lease because wantHolder
// holds it.
func requireHeld(t *testing.T, b storage.Leaser, name, holder, wantHolder string) {
	t.Helper()
	l, err := b.TryLease(t.Context(), name, holder, time.Hour)
	if err == nil {
		t.Errorf("TryLease(%q, %q) succeeded, want it held by %q", name, holder, wantHolder)
		l.Release(t.Context())
		return
	}
	var held *storage.LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, storage.ErrLeaseHeld) {
		t.Errorf("TryLease(%q, %q) error = %v, want a *LeaseHeldError wrapping ErrLeaseHeld", name, holder, err)
		return
	}
	if held.Holder != wantHolder || held.Name != name {
		t.Errorf("TryLease(%q, %q): told lease %q is held by %q, want %q held by %q", name, holder, held.Name, held.Holder, name, wantHolder)
	}
	if !held.Expires.After(time.Now()) {
		t.Errorf("TryLease(%q, %q): told the lease expires at %s, which has passed", name, holder, held.Expires)
	}
}
