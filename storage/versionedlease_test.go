package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/storage"
)

// memLeases is a storage.VersionedLeaseStore in memory, with the semantics
// of a service's conditional writes, and faults a test asks for: a write
// that happens but whose response is lost, as the SDK's retry of it then
// reports it (its condition fails), and writes of another party made just
// before one of ours.
type memLeases struct {
	mu      sync.Mutex
	records map[string]memRecord
	writes  int // makes versions

	// lose holds, per operation ("create", "replace", "delete"), how many
	// of its next calls happen but answer ErrConditionFailed.
	lose map[string]int
	// before, if set, runs before each operation, outside the lock.
	before func(op string)
	// fail holds, per operation, an error it answers without doing
	// anything: a failure of the service.
	fail map[string]error
}

type memRecord struct {
	r       storage.LeaseRecord
	version string
}

func newMemLeases() *memLeases {
	return &memLeases{records: map[string]memRecord{}, lose: map[string]int{}, fail: map[string]error{}}
}

var errLostResponse = fmt.Errorf("%w: the retry of a write whose response was lost", storage.ErrConditionFailed)

// lost reports whether the operation's response is to be lost. Called
// with the lock held.
func (m *memLeases) lost(op string) bool {
	if m.lose[op] > 0 {
		m.lose[op]--
		return true
	}
	return false
}

// enter runs before and takes the lock, which the caller releases, unless
// the operation is to fail.
func (m *memLeases) enter(op string) error {
	if m.before != nil {
		m.before(op)
	}
	m.mu.Lock()
	if err := m.fail[op]; err != nil {
		m.mu.Unlock()
		return err
	}
	return nil
}

// put stores r unconditionally, as another party's write, and returns its
// version.
func (m *memLeases) put(r storage.LeaseRecord) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.store(r)
}

func (m *memLeases) store(r storage.LeaseRecord) string {
	m.writes++
	v := "v" + strconv.Itoa(m.writes)
	m.records[r.Name] = memRecord{r: r, version: v}
	return v
}

func (m *memLeases) get(name string) (memRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[name]
	return rec, ok
}

func (m *memLeases) CreateLease(_ context.Context, r storage.LeaseRecord) (string, error) {
	if err := m.enter("create"); err != nil {
		return "", err
	}
	defer m.mu.Unlock()
	if _, ok := m.records[r.Name]; ok {
		return "", fmt.Errorf("create: %w", storage.ErrConditionFailed)
	}
	v := m.store(r)
	if m.lost("create") {
		return "", errLostResponse
	}
	return v, nil
}

func (m *memLeases) ReplaceLease(_ context.Context, r storage.LeaseRecord, version string) (string, error) {
	if err := m.enter("replace"); err != nil {
		return "", err
	}
	defer m.mu.Unlock()
	cur, ok := m.records[r.Name]
	if !ok {
		return "", fmt.Errorf("replace: %w", storage.ErrNotFound)
	}
	if cur.version != version {
		return "", fmt.Errorf("replace: %w", storage.ErrConditionFailed)
	}
	v := m.store(r)
	if m.lost("replace") {
		return "", errLostResponse
	}
	return v, nil
}

func (m *memLeases) ReadLease(_ context.Context, name string) (storage.LeaseRecord, string, error) {
	if err := m.enter("read"); err != nil {
		return storage.LeaseRecord{}, "", err
	}
	defer m.mu.Unlock()
	cur, ok := m.records[name]
	if !ok {
		return storage.LeaseRecord{}, "", fmt.Errorf("read: %w", storage.ErrNotFound)
	}
	return cur.r, cur.version, nil
}

func (m *memLeases) DeleteLease(_ context.Context, name, version string) error {
	if err := m.enter("delete"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	cur, ok := m.records[name]
	if !ok {
		return fmt.Errorf("delete: %w", storage.ErrNotFound)
	}
	if cur.version != version {
		return fmt.Errorf("delete: %w", storage.ErrConditionFailed)
	}
	delete(m.records, name)
	if m.lost("delete") {
		return errLostResponse
	}
	return nil
}

func quietLog() logrus.FieldLogger {
	log, _ := logtest.NewNullLogger()
	return log
}

func tryMem(t *testing.T, m *memLeases, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	t.Helper()
	return storage.TryVersionedLease(t.Context(), m, quietLog(), "build/x", holder, ttl, opts...)
}

func mustTryMem(t *testing.T, m *memLeases, holder string, ttl time.Duration) storage.Lease {
	t.Helper()
	l, err := tryMem(t, m, holder, ttl)
	if err != nil {
		t.Fatalf("TryVersionedLease(%s): %v", holder, err)
	}
	return l
}

// requireHolder checks who the stored record names, and that it is the
// record the lease holds.
func requireHolder(t *testing.T, m *memLeases, l storage.Lease, holder string) {
	t.Helper()
	rec, ok := m.get("build/x")
	if !ok {
		t.Fatalf("no record stored, want one of %s", holder)
	}
	if rec.r.Holder != holder {
		t.Errorf("stored record of %q, want %q", rec.r.Holder, holder)
	}
	if l != nil && !rec.r.Expires.Equal(l.Expires()) {
		t.Errorf("stored record expires %s, the lease says %s", rec.r.Expires, l.Expires())
	}
}

func TestVersionedLease(t *testing.T) {
	const long = time.Hour
	expired := func(holder string) storage.LeaseRecord {
		return storage.LeaseRecord{Name: "build/x", Holder: holder, Expires: time.Now().Add(-time.Minute), Token: "token-of-" + holder}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, m *memLeases)
	}{
		{"free lease taken, held against others, renewed, released", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", long)
			requireHolder(t, m, a, "instance-a")
			var held *storage.LeaseHeldError
			if _, err := tryMem(t, m, "instance-b", long); !errors.As(err, &held) || held.Holder != "instance-a" {
				t.Errorf("second holder: %v, want held by instance-a", err)
			}
			before := a.Expires()
			if err := a.Renew(t.Context()); err != nil {
				t.Fatalf("Renew: %v", err)
			}
			if !a.Expires().After(before) {
				t.Errorf("Expires %s after Renew, want later than %s", a.Expires(), before)
			}
			requireHolder(t, m, a, "instance-a")
			if err := a.Release(t.Context()); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if _, ok := m.get("build/x"); ok {
				t.Error("a record is stored after Release")
			}
			if !a.Expires().IsZero() {
				t.Errorf("Expires = %s after Release, want zero", a.Expires())
			}
			mustTryMem(t, m, "instance-b", long)
		}},
		{"the response to the create is lost", func(t *testing.T, m *memLeases) {
			m.lose["create"] = 1
			a := mustTryMem(t, m, "instance-a", long)
			requireHolder(t, m, a, "instance-a")
			if err := a.Renew(t.Context()); err != nil {
				t.Errorf("Renew of the adopted lease: %v", err)
			}
		}},
		{"the response to the takeover is lost", func(t *testing.T, m *memLeases) {
			m.put(expired("instance-b"))
			m.lose["replace"] = 1
			a := mustTryMem(t, m, "instance-a", long)
			requireHolder(t, m, a, "instance-a")
			if err := a.Renew(t.Context()); err != nil {
				t.Errorf("Renew of the adopted lease: %v", err)
			}
		}},
		{"the responses to renewals are lost", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", long)
			for i := range 3 {
				m.lose["replace"] = 1
				if err := a.Renew(t.Context()); err != nil {
					t.Fatalf("Renew %d: %v", i, err)
				}
				requireHolder(t, m, a, "instance-a")
			}
		}},
		{"renewal after a takeover: lost", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", time.Nanosecond)
			b := mustTryMem(t, m, "instance-b", long) // a's has expired
			if err := a.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
				t.Errorf("Renew of the lease taken over: %v, want ErrLeaseLost", err)
			}
			if err := a.Release(t.Context()); err != nil {
				t.Errorf("Release of a lost lease: %v, want nil", err)
			}
			requireHolder(t, m, b, "instance-b")
		}},
		{"renewal after the record was removed: lost", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", long)
			m.mu.Lock()
			delete(m.records, "build/x")
			m.mu.Unlock()
			if err := a.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
				t.Errorf("Renew: %v, want ErrLeaseLost", err)
			}
		}},
		{"same holder retakes; its earlier lease is lost", func(t *testing.T, m *memLeases) {
			first := mustTryMem(t, m, "instance-a", long)
			second := mustTryMem(t, m, "instance-a", long)
			if err := first.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
				t.Errorf("Renew of the replaced lease: %v, want ErrLeaseLost", err)
			}
			if err := second.Renew(t.Context()); err != nil {
				t.Errorf("Renew: %v", err)
			}
		}},
		{"a damaged record counts as expired", func(t *testing.T, m *memLeases) {
			m.put(storage.LeaseRecord{Name: "build/x", Holder: "instance-b"}) // no expiry
			log, hook := logtest.NewNullLogger()
			a, err := storage.TryVersionedLease(t.Context(), m, log, "build/x", "instance-a", long)
			if err != nil {
				t.Fatalf("TryVersionedLease over a damaged record: %v", err)
			}
			requireHolder(t, m, a, "instance-a")
			var warned bool
			for _, e := range hook.AllEntries() {
				warned = warned || (e.Level == logrus.WarnLevel && strings.Contains(e.Message, "without a valid expiry"))
			}
			if !warned {
				t.Error("no warning about the damaged record")
			}
		}},
		{"a gone holder's lease is taken over", func(t *testing.T, m *memLeases) {
			mustTryMem(t, m, "instance-dead", long)
			gone := storage.TakeOverGone(func(h string) bool { return h == "instance-dead" })
			a, err := tryMem(t, m, "instance-a", long, gone)
			if err != nil {
				t.Fatalf("TryVersionedLease with the holder gone: %v", err)
			}
			requireHolder(t, m, a, "instance-a")
		}},
		{"released between the create and the read", func(t *testing.T, m *memLeases) {
			mustTryMem(t, m, "instance-b", long)
			m.before = func(op string) {
				if op == "read" {
					m.before = nil
					m.mu.Lock()
					delete(m.records, "build/x")
					m.mu.Unlock()
				}
			}
			a := mustTryMem(t, m, "instance-a", long)
			requireHolder(t, m, a, "instance-a")
		}},
		{"another taker replaces the expired record first", func(t *testing.T, m *memLeases) {
			m.put(expired("instance-old"))
			m.before = func(op string) {
				if op == "replace" {
					m.before = nil
					m.put(storage.LeaseRecord{Name: "build/x", Holder: "instance-b", Expires: time.Now().Add(long), Token: "b"})
				}
			}
			var held *storage.LeaseHeldError
			if _, err := tryMem(t, m, "instance-a", long); !errors.As(err, &held) || held.Holder != "instance-b" {
				t.Errorf("TryVersionedLease: %v, want held by instance-b, who replaced it first", err)
			}
		}},
		{"a record that changes at every round", func(t *testing.T, m *memLeases) {
			m.put(expired("instance-0"))
			n := 0
			m.before = func(op string) {
				if op == "replace" {
					n++
					m.put(expired("instance-" + strconv.Itoa(n)))
				}
			}
			if _, err := tryMem(t, m, "instance-a", long); err == nil || !strings.Contains(err.Error(), "changed under us 5 times") {
				t.Errorf("TryVersionedLease: %v, want it to give up after 5 rounds", err)
			}
		}},
		{"a release whose delete loses the race", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", long)
			m.before = func(op string) {
				if op == "delete" {
					m.before = nil
					m.put(storage.LeaseRecord{Name: "build/x", Holder: "instance-b", Expires: time.Now().Add(long), Token: "b"})
				}
			}
			if err := a.Release(t.Context()); err != nil {
				t.Errorf("Release: %v, want nil", err)
			}
			requireHolder(t, m, nil, "instance-b")
		}},
		{"the response to the release is lost", func(t *testing.T, m *memLeases) {
			a := mustTryMem(t, m, "instance-a", long)
			m.lose["delete"] = 1
			if err := a.Release(t.Context()); err != nil {
				t.Errorf("Release: %v, want nil", err)
			}
			if _, ok := m.get("build/x"); ok {
				t.Error("a record is stored after Release")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newMemLeases()) })
	}
}

// A failure of the service (not a condition) ends TryVersionedLease,
// Renew and Release with it, saying what was being done.
func TestVersionedLeaseServiceErrors(t *testing.T) {
	errDown := errors.New("service unavailable")
	try := func(ctx context.Context, m *memLeases, _ storage.Lease) error {
		_, err := storage.TryVersionedLease(ctx, m, quietLog(), "build/x", "instance-a", time.Hour)
		return err
	}
	heldBy := func(holder string, ttl time.Duration) func(t *testing.T, m *memLeases) storage.Lease {
		return func(t *testing.T, m *memLeases) storage.Lease { return mustTryMem(t, m, holder, ttl) }
	}
	tests := []struct {
		name    string
		failOp  string
		setup   func(t *testing.T, m *memLeases) storage.Lease
		do      func(ctx context.Context, m *memLeases, l storage.Lease) error
		wantMsg string
	}{
		{"create", "create", nil, try, "taking lease build/x: "},
		{"read after a failed create", "read", heldBy("instance-b", time.Hour), try, "taking lease build/x: "},
		{"takeover", "replace", heldBy("instance-b", time.Nanosecond), try, "taking over lease build/x: "},
		{"renew", "replace", heldBy("instance-a", time.Hour), func(ctx context.Context, _ *memLeases, l storage.Lease) error {
			return l.Renew(ctx)
		}, "renewing lease build/x: "},
		{"release", "delete", heldBy("instance-a", time.Hour), func(ctx context.Context, _ *memLeases, l storage.Lease) error {
			return l.Release(ctx)
		}, "releasing lease build/x: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemLeases()
			var l storage.Lease
			if tt.setup != nil {
				l = tt.setup(t, m)
			}
			m.fail[tt.failOp] = errDown
			err := tt.do(t.Context(), m, l)
			if !errors.Is(err, errDown) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("error %v, want %q... wrapping %v", err, tt.wantMsg, errDown)
			}
		})
	}
}
