package builder

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
)

func TestClientLimitsRate(t *testing.T) {
	l := clientLimits{rate: 3}
	alice := caller.Caller{User: "alice", Addr: "192.0.2.1", MayBuild: true}
	bob := caller.Caller{Addr: "192.0.2.1", MayBuild: true} // same address, anonymous
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if limit, err := l.admit(alice, t0, true); err != nil {
			t.Fatalf("build %d: %s %v", i, limit, err)
		}
		l.done(alice)
	}
	limit, err := l.admit(alice, t0.Add(time.Minute), true)
	e, ok := errcode.As(err)
	if limit != limitBuildRate || !ok || e.Code != errcode.TooManyRequests {
		t.Fatalf("fourth build in an hour: %s %v", limit, err)
	}
	// A token every 20 minutes: 19 minutes to go.
	if e.RetryAfter < 18*time.Minute || e.RetryAfter > 20*time.Minute {
		t.Errorf("Retry-After %s, want about 19 minutes", e.RetryAfter)
	}
	if _, err := l.admit(bob, t0.Add(time.Minute), true); err != nil {
		t.Errorf("another client on the same address was refused: %v", err)
	}
	l.done(bob)
	if _, err := l.admit(alice, t0.Add(20*time.Minute), true); err != nil {
		t.Errorf("refilled token refused: %v", err)
	}
	l.done(alice)
	if _, err := l.admit(alice, t0.Add(21*time.Minute), true); err == nil {
		t.Error("a refill of one token gave two builds")
	}
}

func TestClientLimitsActive(t *testing.T) {
	l := clientLimits{maxActive: 2}
	c := caller.Caller{Addr: "198.51.100.7", MayBuild: true}
	now := time.Now()
	for range 2 {
		if _, err := l.admit(c, now, true); err != nil {
			t.Fatal(err)
		}
	}
	limit, err := l.admit(c, now, true)
	if e, ok := errcode.As(err); limit != limitClientBuilds || !ok || e.Code != errcode.TooManyRequests || e.RetryAfter <= 0 {
		t.Fatalf("third build at once: %s %v", limit, err)
	}
	l.done(c)
	if _, err := l.admit(c, now, true); err != nil {
		t.Errorf("a build after one ended was refused: %v", err)
	}
	if _, err := (&clientLimits{}).admit(c, now, true); err != nil {
		t.Errorf("no limits refused: %v", err)
	}
}

// awaitQueued waits until client has n waiters for a slot.
func awaitQueued(t *testing.T, s *fairSlots, client string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.waiting[client])
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d waiters, want %d", client, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFairSlotsTakeTurns(t *testing.T) {
	s := newFairSlots(1)
	if err := s.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 4)
	var wg sync.WaitGroup
	start := func(client, name string, queued int) {
		wg.Go(func() {
			if err := s.acquire(context.Background(), client); err != nil {
				t.Error(err)
				return
			}
			order <- name
		})
		awaitQueued(t, s, client, queued)
	}
	start("a", "a2", 1)
	start("a", "a3", 2)
	start("a", "a4", 3)
	start("b", "b1", 1)
	var got []string
	for range 4 {
		s.release()
		got = append(got, <-order)
	}
	wg.Wait()
	if fmt.Sprint(got) != "[a2 b1 a3 a4]" {
		t.Errorf("slots went to %v, want [a2 b1 a3 a4]", got)
	}
	s.release()
	if s.free != 1 || len(s.turns) != 0 || len(s.waiting) != 0 {
		t.Errorf("after all: free %d, turns %v, waiting %v", s.free, s.turns, s.waiting)
	}
}

func TestFairSlotsWaiterLeaves(t *testing.T) {
	s := newFairSlots(1)
	s.acquire(context.Background(), "a")
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() { left <- s.acquire(ctx, "b") }()
	awaitQueued(t, s, "b", 1)
	cancel()
	if err := <-left; err == nil {
		t.Fatal("a waiter whose context ended got a slot")
	}
	s.release()
	if s.free != 1 || len(s.turns) != 0 {
		t.Errorf("the slot was lost: free %d, turns %v", s.free, s.turns)
	}
}

// TestAnonymousBuildsRefused: a caller that may not build gets 401 for an
// image not built yet, and the image once someone else built it, even
// when that means refreshing it (no MovingTagTTL here: every pull asks
// the source again).
func TestAnonymousBuildsRefused(t *testing.T) {
	b := newTestBuilder(t, &countingSource{}, Options{})
	anon := caller.NewContext(context.Background(), caller.Caller{Addr: "192.0.2.9"})
	_, _, err := b.ManifestByTag(anon, "img", "latest", manifest.OCI)
	if e, ok := errcode.As(err); !ok || e.Code != errcode.Unauthorized {
		t.Fatalf("anonymous cold pull: %v", err)
	}
	user := caller.NewContext(context.Background(), caller.Caller{User: "alice", MayBuild: true})
	if _, _, err := b.ManifestByTag(user, "img", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ManifestByTag(anon, "img", "latest", manifest.OCI); err != nil {
		t.Errorf("anonymous pull of a built image: %v", err)
	}
}

// TestBuildRatePerClient: a client over its rate gets 429 while another
// still builds; images built stay pullable by it.
func TestBuildRatePerClient(t *testing.T) {
	src := &countingSource{}
	b := newTestBuilder(t, src, Options{BuildRate: 1, MovingTagTTL: time.Hour})
	a := caller.NewContext(context.Background(), caller.Caller{Addr: "192.0.2.1", MayBuild: true})
	other := caller.NewContext(context.Background(), caller.Caller{Addr: "192.0.2.2", MayBuild: true})
	if _, _, err := b.ManifestByTag(a, "one", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.ManifestByTag(a, "two", "latest", manifest.OCI)
	if e, ok := errcode.As(err); !ok || e.Code != errcode.TooManyRequests || e.RetryAfter <= 0 {
		t.Fatalf("a second build within the hour: %v", err)
	}
	if _, _, err := b.ManifestByTag(other, "two", "latest", manifest.OCI); err != nil {
		t.Errorf("another client: %v", err)
	}
	for _, img := range []string{"one", "two"} {
		if _, _, err := b.ManifestByTag(a, img, "latest", manifest.OCI); err != nil {
			t.Errorf("pull of built %s by the limited client: %v", img, err)
		}
	}
	if n := src.builds.Load(); n != 2 {
		t.Errorf("%d builds, want 2", n)
	}
}

// TestQueuedClientCannotStarveOthers: with one build slot, a client that
// queued four builds does not make another client's build wait for all
// of them.
func TestQueuedClientCannotStarveOthers(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), started: make(chan string, 5)}
	b := newTestBuilder(t, src, Options{MaxBuilds: 1})
	a := caller.NewContext(context.Background(), caller.Caller{Addr: "192.0.2.1", MayBuild: true})
	other := caller.NewContext(context.Background(), caller.Caller{Addr: "192.0.2.2", MayBuild: true})
	var wg sync.WaitGroup
	pull := func(ctx context.Context, name string) {
		wg.Go(func() {
			if _, _, err := b.ManifestByTag(ctx, name, "latest", manifest.OCI); err != nil {
				t.Error(err)
			}
		})
	}
	pull(a, "a1")
	if got := <-src.started; got != "a1" {
		t.Fatalf("first build %s", got)
	}
	for i, name := range []string{"a2", "a3", "a4"} {
		pull(a, name)
		awaitQueued(t, b.slots, "addr:192.0.2.1", i+1)
	}
	pull(other, "b1")
	awaitQueued(t, b.slots, "addr:192.0.2.2", 1)
	got := []string{"a1"}
	for range 4 {
		src.release <- struct{}{}
		got = append(got, <-src.started)
	}
	src.release <- struct{}{}
	wg.Wait()
	if fmt.Sprint(got) != "[a1 a2 b1 a3 a4]" {
		t.Errorf("builds started in order %v, want [a1 a2 b1 a3 a4]", got)
	}
}
