package builder

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// current is the flight the group holds for key, if any.
func (g *flightGroup) current(key string) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flights[key]
}

// TestCancelledFlightIsNotJoined: once its last waiter leaves, a flight is
// cancelled and leaves the group at once, while it is still unwinding; a
// new caller gets a flight of its own, which the old one's end does not
// remove.
func TestCancelledFlightIsNotJoined(t *testing.T) {
	var g flightGroup
	base := context.Background()
	const key = "k"

	started := make(chan struct{})
	unwind := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(unwind) }) }
	t.Cleanup(release)

	aCtx, aCancel := context.WithCancel(base)
	defer aCancel()
	aErr := make(chan error, 1)
	go func() {
		_, err := g.do(aCtx, base, key, func(ctx context.Context) (source.Manifests, error) {
			close(started)
			<-ctx.Done()
			<-unwind // stopping takes a while: a process's kill grace
			return nil, ctx.Err()
		})
		aErr <- err
	}()
	<-started
	old := g.current(key)
	if old == nil {
		t.Fatal("no flight for a running build")
	}
	aCancel()
	if e, ok := errcode.As(<-aErr); !ok || e.Code != errcode.Unavailable {
		t.Fatalf("the leaving caller got %v, want UNAVAILABLE", e)
	}
	if f := g.current(key); f == old {
		t.Fatal("a cancelled flight is still in the group while it unwinds: a new caller would join it")
	}

	// A new caller starts a build of its own.
	bStarted := make(chan struct{})
	finishB := make(chan struct{})
	bDone := make(chan error, 1)
	go func() {
		_, err := g.do(context.Background(), base, key, func(ctx context.Context) (source.Manifests, error) {
			close(bStarted)
			<-finishB
			return source.Manifests{}, nil
		})
		bDone <- err
	}()
	<-bStarted
	fresh := g.current(key)
	if fresh == nil || fresh == old {
		t.Fatalf("the new build's flight is %p (old %p)", fresh, old)
	}

	// The old build ends: it must not take the new flight with it.
	release()
	<-old.done
	if f := g.current(key); f != fresh {
		t.Fatalf("after the cancelled build ended the group holds %p, want the new flight %p", f, fresh)
	}
	close(finishB)
	if err := <-bDone; err != nil {
		t.Fatalf("the new caller: %v", err)
	}
	if f := g.current(key); f != nil {
		t.Errorf("a finished flight is still in the group")
	}
}

// unwindingSource's first build of a name runs until it is cancelled and
// then takes until the test lets it finish, as a killed build does (SIGTERM,
// then the process's grace); every later build succeeds at once.
type unwindingSource struct {
	store  storage.Backend
	mu     sync.Mutex
	first  map[string]*unwinding
	builds atomic.Int32
}

type unwinding struct {
	started chan struct{} // closed when the first build starts
	unwind  chan struct{} // the cancelled first build ends once this closes
}

func (s *unwindingSource) expect(name string) *unwinding {
	u := &unwinding{started: make(chan struct{}), unwind: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = map[string]*unwinding{}
	}
	s.first[name] = u
	return u
}

func (s *unwindingSource) Identify(name, tag string) (source.Request, error) {
	return source.Request{Name: name, Tag: tag, Key: name + ":" + tag}, nil
}

func (s *unwindingSource) Plan(_ context.Context, req source.Request) (source.Plan, error) {
	return source.Plan{Request: req, Key: req.Key}, nil
}

func (s *unwindingSource) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	name := plan.Request.Name
	s.builds.Add(1)
	s.mu.Lock()
	u, first := s.first[name]
	delete(s.first, name)
	s.mu.Unlock()
	if first {
		close(u.started)
		<-ctx.Done()
		<-u.unwind
		return nil, fmt.Errorf("build of %s stopped: %w", name, ctx.Err())
	}
	body := fmt.Sprintf(`{"schemaVersion":2,"name":%q}`, name)
	info, err := storage.PutBlob(ctx, s.store, "application/vnd.oci.image.manifest.v1+json", "", -1, bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, err
	}
	return source.Manifests{manifest.OCI: info}, nil
}

// TestNewClientNeverJoinsCancelledBuild runs the race between a build
// being cancelled (its only client left) and a new client asking for the
// same image, many times and in both orders: the new client must always
// get a live build, never the cancelled one's "context canceled".
func TestNewClientNeverJoinsCancelledBuild(t *testing.T) {
	store, _ := testkit.NewFSStore(t)
	src := &unwindingSource{store: store}
	b, err := New(Options{Storage: store, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const rounds = 20
	for i := range rounds {
		name := fmt.Sprintf("img%d", i)
		u := src.expect(name)
		ctx, cancel := context.WithCancel(context.Background())
		left := make(chan error, 1)
		go func() {
			_, _, err := b.ManifestByTag(ctx, name, "latest", manifest.OCI)
			left <- err
		}()
		<-u.started
		cancel()
		if err := <-left; err == nil {
			t.Fatalf("round %d: the client that left got no error", i)
		}

		// The new client and the end of the cancelled build race, in
		// one order or the other.
		got := make(chan error, 1)
		ask := func() {
			_, _, err := b.ManifestByTag(context.Background(), name, "latest", manifest.OCI)
			got <- err
		}
		if i%2 == 0 {
			go ask()
			close(u.unwind)
		} else {
			close(u.unwind)
			go ask()
		}
		if err := <-got; err != nil {
			t.Fatalf("round %d: a new client got %v: it joined the cancelled build", i, err)
		}
	}
	if n := src.builds.Load(); n != 2*rounds {
		t.Errorf("%d builds for %d rounds, want %d", n, rounds, 2*rounds)
	}
}
