package builder

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
)

// current is the flight the group holds for key, if any.
func (g *flightGroup) current(key string) *flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flights[key]
}

// TestFlightOutlivesItsCallers: a caller that leaves does not stop the
// build, even the last one; a later caller joins the same flight, and a
// flight that ends removes only itself.
func TestFlightOutlivesItsCallers(t *testing.T) {
	var g flightGroup
	base := context.Background()
	const key = "k"
	started, finish := make(chan struct{}), make(chan struct{})
	stopped := make(chan error, 1)
	rec := func() (*build, error) { return newBuild("img", "latest", "nix", "", time.Now()), nil }
	f, isNew, err := g.join(base, base, key, rec, func(ctx context.Context, _ *build) (source.Manifests, error) {
		close(started)
		select {
		case <-finish:
			return source.Manifests{}, nil
		case <-ctx.Done():
			stopped <- ctx.Err()
			return nil, ctx.Err()
		}
	})
	if err != nil || !isNew {
		t.Fatalf("join: %v %v", isNew, err)
	}
	<-started

	// The only caller leaves.
	ctx, cancel := context.WithCancel(base)
	cancel()
	if _, err, _ := g.wait(ctx, f, nil); err == nil {
		t.Fatal("a caller that left got no error")
	} else if e, ok := errcode.As(err); !ok || e.Code != errcode.Unavailable {
		t.Fatalf("the caller that left got %v, want UNAVAILABLE", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("the build stopped when its caller left: %v", err)
	default:
	}

	// A new caller joins the same build, and waits with a timeout that
	// fires: the build goes on.
	again, isNew, err := g.join(base, base, key, rec, nil)
	if err != nil || isNew || again != f {
		t.Fatalf("a later caller got a flight of its own (%v, %v)", isNew, err)
	}
	fired := make(chan struct{})
	close(fired)
	if _, _, timedOut := g.wait(base, f, fired); !timedOut {
		t.Fatal("the wait's timeout did not end it")
	}
	close(finish)
	if _, err, _ := g.wait(base, f, nil); err != nil {
		t.Fatalf("the build: %v", err)
	}
	<-f.done
	if g.current(key) != nil {
		t.Error("a finished flight is still in the group")
	}
}

// TestFlightsEndOnlyThemselves: a flight that ends after a newer flight of
// its key took its place does not remove the newer one.
func TestFlightsEndOnlyThemselves(t *testing.T) {
	var g flightGroup
	old := &flight{done: make(chan struct{})}
	fresh := &flight{done: make(chan struct{})}
	g.flights = map[string]*flight{"k": fresh}
	g.forget("k", old)
	if g.current("k") != fresh {
		t.Fatal("an old flight removed the newer one")
	}
	g.forget("k", fresh)
	if g.current("k") != nil {
		t.Fatal("a flight did not remove itself")
	}
}

// TestBuildOutlivesItsClients: clients that give up while their image
// builds leave the build running; a later pull gets the image, built once.
// Run many times, the race between the clients leaving and the build
// ending is tried in both orders.
func TestBuildOutlivesItsClients(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), started: make(chan string, 1)}
	b := newTestBuilder(t, src, Options{MovingTagTTL: time.Hour})
	const clients = 3
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if _, _, err := b.ManifestByTag(ctx, "hello", "latest", manifest.OCI); err == nil {
				t.Error("a client that gave up got an image")
			}
		})
	}
	<-src.started
	awaitWaiters(t, b, "hello:latest", clients)
	cancel()
	wg.Wait()
	if src.running.Load() != 1 {
		t.Fatal("the build stopped when its clients left")
	}
	close(src.release)
	if _, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	if n := src.builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
}

// TestPullWaitIsBounded: a pull waits PullWait for its build, then gets
// BUILD_IN_PROGRESS naming the build; the build goes on and the next pull
// gets the image.
func TestPullWaitIsBounded(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), started: make(chan string, 1)}
	b := newTestBuilder(t, src, Options{MovingTagTTL: time.Hour, PullWait: 50 * time.Millisecond})
	_, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI)
	e, ok := errcode.As(err)
	if !ok || e.Code != errcode.BuildInProgress || e.Code.Status() != 409 {
		t.Fatalf("err = %v, want BUILD_IN_PROGRESS (409)", err)
	}
	id := e.Detail.(map[string]string)["build"]
	st, ok := b.Build(id)
	if !ok || st.State.Finished() || st.Image != "hello" {
		t.Fatalf("build %q: %+v %v", id, st, ok)
	}
	close(src.release)
	b.opts.PullWait = 0
	if _, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	if n := src.builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if st, _ := b.Build(id); st.State != Done || st.ManifestDigest == "" || st.FinishedAt == nil {
		t.Errorf("finished build: %+v", st)
	}
}

// TestStartAndList: Start starts a build without waiting, joins one
// running, and answers an image already built as done; the list shows
// builds newest first.
func TestStartAndList(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), started: make(chan string, 4)}
	b := newTestBuilder(t, src, Options{MovingTagTTL: time.Hour, MaxBuilds: 1})
	ctx := context.Background()
	first, built, err := b.Start(ctx, "one", "latest")
	if err != nil || built || first.ID == "" || first.State.Finished() {
		t.Fatalf("Start: %+v %v %v", first, built, err)
	}
	joined, _, err := b.Start(ctx, "one", "latest")
	if err != nil || joined.ID != first.ID {
		t.Fatalf("a second Start got build %q, want %q (%v)", joined.ID, first.ID, err)
	}
	second, _, err := b.Start(ctx, "two", "latest")
	if err != nil {
		t.Fatal(err)
	}
	// One build has the only slot; the other waits for it.
	<-src.started
	a, _ := b.Build(first.ID)
	c, _ := b.Build(second.ID)
	if (a.State == Queued) == (c.State == Queued) {
		t.Errorf("with one build slot the builds are %s and %s, want one queued", a.State, c.State)
	}
	list := b.Builds()
	if len(list) != 2 || list[0].ID != second.ID || list[1].ID != first.ID {
		t.Fatalf("list %+v, want two, newest first", list)
	}
	close(src.release)
	for _, name := range []string{"one", "two"} {
		if _, _, err := b.ManifestByTag(ctx, name, "latest", manifest.OCI); err != nil {
			t.Fatal(err)
		}
	}
	done, built, err := b.Start(ctx, "one", "latest")
	if err != nil || !built || done.State != Done || done.ManifestDigest == "" {
		t.Errorf("Start of a built image: %+v %v %v", done, built, err)
	}
	if _, _, err := b.Start(ctx, "bad", "latest"); err == nil {
		t.Error("Start accepted a bad name")
	}
}
