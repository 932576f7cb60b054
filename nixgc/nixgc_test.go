package nixgc

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/nix"
)

// fakeStore is a store of a given size whose collections free what they
// are asked to (at most down to live), and which reports every call.
type fakeStore struct {
	mu      sync.Mutex
	size    int64
	live    int64 // what a collection cannot free
	sizeErr error
	work    time.Duration // each call takes this long
	block   bool          // collections wait for their context to end
	calls   chan call
}

type call struct {
	op       string // "size" or "gc"
	maxFreed int64
	at       time.Time
}

func newFakeStore(size, live int64) *fakeStore {
	return &fakeStore{size: size, live: live, calls: make(chan call, 100)}
}

func (f *fakeStore) StoreSize(ctx context.Context) (nix.StoreUsage, error) {
	f.calls <- call{op: "size", at: time.Now()}
	time.Sleep(f.work) // the measurement's cost
	f.mu.Lock()
	defer f.mu.Unlock()
	return nix.StoreUsage{Bytes: f.size, Paths: int(f.size / 10)}, f.sizeErr
}

func (f *fakeStore) CollectGarbage(ctx context.Context, maxFreed int64) (nix.Collected, error) {
	f.calls <- call{op: "gc", maxFreed: maxFreed, at: time.Now()}
	if f.block {
		<-ctx.Done()
		return nix.Collected{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	freed := min(maxFreed, f.size-f.live)
	f.size -= freed
	return nix.Collected{Paths: int(freed / 10), Bytes: freed}, nil
}

func (f *fakeStore) grow(n int64) {
	f.mu.Lock()
	f.size += n
	f.mu.Unlock()
}

// next waits for the store's next call.
func (f *fakeStore) next(t *testing.T) call {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the collector did not call the store within 30 s")
		return call{}
	}
}

// none checks that the store gets no call while the collector handles
// a round trip of the test (a poke has been handled by the time the
// store answers the round it started).
func (f *fakeStore) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Fatalf("unexpected call %+v", c)
	default:
	}
}

type observed struct {
	mu     sync.Mutex
	sizes  []int64
	freed  []int64
	errors []error
}

func (o *observed) StoreBytes(b int64) { o.mu.Lock(); o.sizes = append(o.sizes, b); o.mu.Unlock() }
func (o *observed) Collected(freed int64, d time.Duration, err error) {
	o.mu.Lock()
	o.freed = append(o.freed, freed)
	o.errors = append(o.errors, err)
	o.mu.Unlock()
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func start(t *testing.T, opts Options) *Collector {
	t.Helper()
	if opts.Log == nil {
		opts.Log = quiet()
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartChecksOptions(t *testing.T) {
	s := newFakeStore(0, 0)
	for _, o := range []Options{
		{Max: 10, Low: 5},
		{Store: s, Max: 0},
		{Store: s, Max: 10, Low: 10},
		{Store: s, Max: 10, Low: -1},
	} {
		if c, err := Start(o); err == nil {
			c.Close()
			t.Errorf("Start(%+v) accepted", o)
		}
	}
}

// TestCollectsDownToLow: measured over the maximum at start-up, the store
// is collected by what takes it down to the low mark; measured again, it
// is reported; under the maximum nothing is collected.
func TestCollectsDownToLow(t *testing.T) {
	s := newFakeStore(1500, 100)
	ob := &observed{}
	c := start(t, Options{Store: s, Max: 1000, Low: 800, Interval: time.Hour, Cost: 1, Observer: ob})
	if got := s.next(t); got.op != "size" {
		t.Fatalf("first call %+v, want a measurement", got)
	}
	if got := s.next(t); got.op != "gc" || got.maxFreed != 700 {
		t.Fatalf("call %+v, want a collection of 700 bytes", got)
	}
	if got := s.next(t); got.op != "size" {
		t.Fatalf("call %+v, want a measurement after the collection", got)
	}
	// Under the maximum: a poke measures, and nothing is collected.
	s.grow(150) // 950
	c.Poke()
	if got := s.next(t); got.op != "size" {
		t.Fatalf("call %+v after a poke, want a measurement", got)
	}
	// Over it again.
	s.grow(100) // 1050
	c.Poke()
	if got := s.next(t); got.op != "size" {
		t.Fatalf("call %+v after a poke, want a measurement", got)
	}
	if got := s.next(t); got.op != "gc" || got.maxFreed != 250 {
		t.Fatalf("call %+v, want a collection of 250 bytes", got)
	}
	s.next(t)
	c.Close()
	s.none(t)

	st := c.Stats()
	if st.Collections != 2 || st.FreedBytes != 950 || st.FreedPaths != 95 || st.StoreBytes != 800 || st.Measurements != 5 || st.Failures != 0 {
		t.Errorf("stats %+v", st)
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if len(ob.sizes) != 5 || ob.sizes[0] != 1500 || ob.sizes[1] != 800 || ob.sizes[4] != 800 {
		t.Errorf("observed sizes %v", ob.sizes)
	}
	if len(ob.freed) != 2 || ob.freed[0] != 700 || ob.freed[1] != 250 || ob.errors[0] != nil || ob.errors[1] != nil {
		t.Errorf("observed collections %v %v", ob.freed, ob.errors)
	}
}

// TestLiveStoreOverMax: when the rest is live, the collection frees what
// it can and the collector goes on (no loop: the next round waits).
func TestLiveStoreOverMax(t *testing.T) {
	s := newFakeStore(2000, 1200)
	c := start(t, Options{Store: s, Max: 1000, Low: 500, Interval: time.Hour, Cost: 1})
	for _, want := range []string{"size", "gc", "size"} {
		if got := s.next(t); got.op != want {
			t.Fatalf("call %+v, want %s", got, want)
		}
	}
	c.Close()
	s.none(t)
	if st := c.Stats(); st.FreedBytes != 800 || st.StoreBytes != 1200 {
		t.Errorf("stats %+v", st)
	}
}

func TestFailuresAreCounted(t *testing.T) {
	s := newFakeStore(0, 0)
	s.sizeErr = errors.New("nix is broken")
	c := start(t, Options{Store: s, Max: 1000, Low: 500, Interval: time.Hour, Cost: 1})
	s.next(t)
	c.Poke()
	s.next(t)
	c.Close()
	if st := c.Stats(); st.Failures != 2 || st.Measurements != 0 || st.Collections != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCloseStopsACollection: Close ends a collection in progress through
// its context and waits for the goroutine.
func TestCloseStopsACollection(t *testing.T) {
	s := newFakeStore(2000, 0)
	s.block = true
	ob := &observed{}
	c := start(t, Options{Store: s, Max: 1000, Low: 500, Observer: ob})
	s.next(t)
	if got := s.next(t); got.op != "gc" {
		t.Fatalf("call %+v, want a collection", got)
	}
	c.Close()
	c.Close()
	s.none(t)
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if len(ob.errors) != 1 || !errors.Is(ob.errors[0], context.Canceled) {
		t.Errorf("observed %v, want the collection's cancellation", ob.errors)
	}
	if st := c.Stats(); st.Failures != 0 {
		t.Errorf("a collection stopped by Close counted as a failure: %+v", st)
	}
}

// TestCostBound: after a round of work, the next waits at least Cost
// times as long, however often builds poke.
func TestCostBound(t *testing.T) {
	s := newFakeStore(10, 0)
	s.work = 50 * time.Millisecond
	c := start(t, Options{Store: s, Max: 1000, Low: 500, Interval: time.Hour, Cost: 4})
	first := s.next(t)
	for i := 0; i < 10; i++ {
		c.Poke()
	}
	second := s.next(t)
	if gap := second.at.Sub(first.at); gap < 5*s.work {
		t.Errorf("the next measurement started %s after the first (which took %s), want at least %s", gap, s.work, 5*s.work)
	}
	c.Close()
	// The ten pokes were one.
	s.none(t)
}
