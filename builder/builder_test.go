package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "crypto/sha256"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
	"github.com/nixport/nixport/testkit"
)

// countingSource stores a tiny manifest per build and counts builds. It
// stands in for the Nix pipeline in tests of the Builder's own logic
// (caching, coalescing, bounds); the Nix pipeline has its own tests.
type countingSource struct {
	store    storage.Backend
	builds   atomic.Int32
	running  atomic.Int32
	peak     atomic.Int32
	release  chan struct{} // if set, builds wait for it
	started  chan string   // if set, gets the name of every build that starts
	finished chan error    // if set, gets the error of every build that ends
	pinned   bool
	fail     error
}

func (s *countingSource) Identify(name, tag string) (source.Request, error) {
	if strings.Contains(name, "bad") {
		return source.Request{}, errcode.New(errcode.NameInvalid, "bad name %s", name)
	}
	switch {
	case strings.HasPrefix(tag, "gone"):
		return source.Request{}, errcode.New(errcode.ManifestUnknown, "no version %s", tag)
	case strings.HasPrefix(tag, "fault"):
		return source.Request{}, errors.New("the source is broken")
	}
	return source.Request{Name: name, Tag: tag, Key: name + ":" + tag, Pinned: s.pinned}, nil
}

// source.Plan plans nothing: every build is a new one.
func (s *countingSource) Plan(_ context.Context, req source.Request) (source.Plan, error) {
	return source.Plan{Request: req, Key: req.Key}, nil
}

func (s *countingSource) Build(ctx context.Context, plan source.Plan) (m source.Manifests, err error) {
	if s.finished != nil {
		defer func() { s.finished <- err }()
	}
	name, tag := plan.Request.Name, plan.Request.Tag
	n := s.builds.Add(1)
	r := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		p := s.peak.Load()
		if r <= p || s.peak.CompareAndSwap(p, r) {
			break
		}
	}
	if s.started != nil {
		s.started <- name
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.fail != nil {
		return nil, s.fail
	}
	body := fmt.Sprintf(`{"schemaVersion":2,"name":%q,"tag":%q,"build":%d}`, name, tag, n)
	info, err := storage.PutBlob(ctx, s.store, "application/vnd.oci.image.manifest.v1+json", "", -1, bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, err
	}
	return source.Manifests{manifest.OCI: info}, nil
}

func newTestBuilder(t *testing.T, src *countingSource, opts Options) *Builder {
	t.Helper()
	store, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if src != nil {
		src.store = store
		opts.Source = src
	}
	opts.Storage = store
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestCoalescesConcurrentRequests(t *testing.T) {
	src := &countingSource{release: make(chan struct{})}
	b := newTestBuilder(t, src, Options{MaxBuilds: 4})
	const clients = 24
	var wg sync.WaitGroup
	digests := make([]string, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI)
			digests[i], errs[i] = string(info.Digest), err
		}()
	}
	// Every client joins the one build before it is let finish.
	awaitWaiters(t, b, "hello:latest", clients)
	close(src.release)
	wg.Wait()
	for i := range clients {
		if errs[i] != nil || digests[i] != digests[0] {
			t.Fatalf("client %d: %v %s vs %s", i, errs[i], digests[i], digests[0])
		}
	}
	if n := src.builds.Load(); n != 1 {
		t.Errorf("%d builds for one image, want 1", n)
	}
	tags, err := b.Tags(context.Background(), "hello")
	if err != nil || len(tags) != 1 || tags[0] != "latest" {
		t.Errorf("tags = %v, %v", tags, err)
	}
}

// awaitWaiters waits until n callers wait on the build of key.
func awaitWaiters(t *testing.T, b *Builder, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b.flights.mu.Lock()
		f := b.flights.flights[key]
		got := 0
		if f != nil {
			got = f.waiters
		}
		b.flights.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait on %s, want %d", got, key, n)
		}
		runtime.Gosched()
	}
}

func TestDisconnectingClientDoesNotCancelSharedBuild(t *testing.T) {
	src := &countingSource{release: make(chan struct{})}
	b := newTestBuilder(t, src, Options{})
	leaving, cancel := context.WithCancel(context.Background())
	leftErr := make(chan error, 1)
	go func() {
		_, _, err := b.ManifestByTag(leaving, "hello", "latest", manifest.OCI)
		leftErr <- err
	}()
	stayed := make(chan error, 1)
	go func() {
		_, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI)
		stayed <- err
	}()
	awaitWaiters(t, b, "hello:latest", 2)
	cancel()
	if err := <-leftErr; err == nil {
		t.Error("cancelled client got no error")
	}
	close(src.release)
	if err := <-stayed; err != nil {
		t.Fatalf("waiting client: %v", err)
	}
	if n := src.builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
}

func TestBoundsConcurrentBuilds(t *testing.T) {
	src := &countingSource{release: make(chan struct{}), started: make(chan string, 6)}
	b := newTestBuilder(t, src, Options{MaxBuilds: 2})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := b.ManifestByTag(context.Background(), fmt.Sprintf("img%d", i), "latest", manifest.OCI); err != nil {
				t.Error(err)
			}
		}()
	}
	// Two builds run, blocked on release, before any is let finish.
	<-src.started
	<-src.started
	close(src.release)
	wg.Wait()
	if p := src.peak.Load(); p != 2 {
		t.Errorf("peak concurrent builds %d, want 2", p)
	}
	if n := src.builds.Load(); n != 6 {
		t.Errorf("%d builds, want 6", n)
	}
}

func TestCaching(t *testing.T) {
	tests := []struct {
		name       string
		pinned     bool
		ttl        time.Duration
		wantBuilds int32
	}{
		{"pinned is cached", true, 0, 1},
		{"moving within ttl is cached", false, time.Hour, 1},
		{"moving without ttl is asked again", false, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingSource{pinned: tt.pinned}
			b := newTestBuilder(t, src, Options{MovingTagTTL: tt.ttl})
			for range 3 {
				if _, _, err := b.ManifestByTag(context.Background(), "hello", "v1", manifest.Docker); err != nil {
					t.Fatal(err)
				}
			}
			if n := src.builds.Load(); n != tt.wantBuilds {
				t.Errorf("%d builds, want %d", n, tt.wantBuilds)
			}
		})
	}
}

func TestPinnedImageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	store, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := &countingSource{pinned: true, store: store}
	b1, _ := New(Options{Storage: store, Source: first})
	want, _, err := b1.ManifestByTag(context.Background(), "hello", "0123", manifest.OCI)
	if err != nil {
		t.Fatal(err)
	}
	b1.Close()

	second := &countingSource{pinned: true, store: store, fail: errors.New("must not build")}
	b2, _ := New(Options{Storage: store, Source: second})
	defer b2.Close()
	got, _, err := b2.ManifestByTag(context.Background(), "hello", "0123", manifest.OCI)
	if err != nil || got.Digest != want.Digest {
		t.Fatalf("after restart: %v %v, want %v", got, err, want)
	}
	if n := second.builds.Load(); n != 0 {
		t.Errorf("restarted builder built %d times", n)
	}
}

func TestErrorsReachTheClient(t *testing.T) {
	src := &countingSource{fail: errcode.New(errcode.BuildFailed, "package broken failed to build")}
	b := newTestBuilder(t, src, Options{})
	_, _, err := b.ManifestByTag(context.Background(), "broken", "latest", manifest.OCI)
	if e, ok := errcode.As(err); !ok || e.Code != errcode.BuildFailed {
		t.Errorf("build failure: %v", err)
	}
	_, _, err = b.ManifestByTag(context.Background(), "bad", "latest", manifest.OCI)
	if e, ok := errcode.As(err); !ok || e.Code != errcode.NameInvalid {
		t.Errorf("bad name: %v", err)
	}
	tags, err := b.Tags(context.Background(), "broken")
	if err != nil || len(tags) != 0 {
		t.Errorf("a failed build left tags %v (%v)", tags, err)
	}
}

// TestTagsListsWhatTheSourceAccepts: tags/list leaves out recorded tags
// the source now refuses (a client error), and keeps those it could not
// check (a fault of its own).
func TestTagsListsWhatTheSourceAccepts(t *testing.T) {
	b := newTestBuilder(t, &countingSource{}, Options{})
	ctx := context.Background()
	info, err := storage.PutBlob(ctx, b.opts.Storage, "application/vnd.oci.image.manifest.v1+json", "", -1, strings.NewReader(`{"schemaVersion":2}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		recorded []string
		want     string
	}{
		{"hello", []string{"latest", "v1"}, "latest,v1"},
		{"old", []string{"gone-1", "latest", "gone-2"}, "latest"},
		{"broken", []string{"fault-1", "gone-1"}, "fault-1"},
		{"none", nil, ""},
	}
	for _, tc := range tests {
		for _, tag := range tc.recorded {
			if err := StoreTag(ctx, b.opts.Storage, tc.name, tag, source.Manifests{manifest.OCI: info}); err != nil {
				t.Fatal(err)
			}
		}
		tags, err := b.Tags(ctx, tc.name)
		if err != nil || strings.Join(tags, ",") != tc.want {
			t.Errorf("tags of %s = %v (%v), want %q", tc.name, tags, err, tc.want)
		}
	}
}

func TestStoredImagesWithoutSource(t *testing.T) {
	b := newTestBuilder(t, nil, Options{})
	ctx := context.Background()
	info, err := storage.PutBlob(ctx, b.opts.Storage, "application/vnd.oci.image.manifest.v1+json", "", -1, strings.NewReader(`{"schemaVersion":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := StoreTag(ctx, b.opts.Storage, "a/b", "v1", source.Manifests{manifest.OCI: info}); err != nil {
		t.Fatal(err)
	}
	if err := StoreTag(ctx, b.opts.Storage, "a/b/c", "v2", source.Manifests{manifest.OCI: info}); err != nil {
		t.Fatal(err)
	}
	got, _, err := b.ManifestByTag(ctx, "a/b", "v1", manifest.Docker)
	if err != nil || got.Digest != info.Digest {
		t.Fatalf("stored tag: %v %v", got, err)
	}
	_, _, err = b.ManifestByTag(ctx, "a/b", "v2", manifest.OCI)
	if e, ok := errcode.As(err); !ok || e.Code != errcode.ManifestUnknown {
		t.Errorf("unknown tag: %v", err)
	}
	for name, want := range map[string]string{"a/b": "v1", "a/b/c": "v2", "a": ""} {
		tags, err := b.Tags(ctx, name)
		if err != nil || strings.Join(tags, ",") != want {
			t.Errorf("tags of %s = %v (%v), want %q", name, tags, err, want)
		}
	}
}

func TestMovingTagSharedThroughStorage(t *testing.T) {
	store, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := &countingSource{store: store}
	b1, _ := New(Options{Storage: store, Source: first, MovingTagTTL: time.Minute})
	defer b1.Close()
	want, _, err := b1.ManifestByTag(ctx, "hello", "latest", manifest.OCI)
	if err != nil {
		t.Fatal(err)
	}

	// A second instance on the same storage serves the recent build.
	second := &countingSource{store: store}
	b2, _ := New(Options{Storage: store, Source: second, MovingTagTTL: time.Minute})
	defer b2.Close()
	got, _, err := b2.ManifestByTag(ctx, "hello", "latest", manifest.OCI)
	if err != nil || got.Digest != want.Digest || second.builds.Load() != 0 {
		t.Fatalf("second instance: %v %v, %d builds", got, err, second.builds.Load())
	}

	// Once the record is older than the TTL, the tag is built again.
	b2.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	b2.cache.Purge()
	b2.ids.Purge()
	if _, _, err := b2.ManifestByTag(ctx, "hello", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	if n := second.builds.Load(); n != 1 {
		t.Errorf("stale record: %d builds, want 1", n)
	}
}

// TestManifestByTagFreshness checks the lifetime ManifestByTag gives its
// answer: the registry serves the tag from its own map until then, so it
// must never outlive what the builder itself would answer from memory.
func TestManifestByTagFreshness(t *testing.T) {
	tests := []struct {
		name   string
		pinned bool
		ttl    time.Duration
		want   time.Duration // after the first request; 0: not reusable
	}{
		{"moving", false, time.Hour, time.Hour},
		{"pinned", true, time.Hour, time.Hour},
		{"no ttl: always asked", false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingSource{pinned: tt.pinned}
			b := newTestBuilder(t, src, Options{MovingTagTTL: tt.ttl})
			start := time.Now()
			now := start
			b.now = func() time.Time { return now }
			for _, f := range []manifest.Format{manifest.OCI, manifest.Docker} {
				_, fresh, err := b.ManifestByTag(context.Background(), "hello", "v1", f)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want == 0 {
					if !fresh.IsZero() {
						t.Errorf("%s: fresh until %v, want zero", f, fresh)
					}
					continue
				}
				if want := start.Add(tt.want); !fresh.Equal(want) {
					t.Errorf("%s: fresh until %v, want %v", f, fresh.Sub(start), tt.want)
				}
			}
			// Later, the answer comes from memory and keeps its first
			// deadline; past it the source is asked again.
			now = start.Add(tt.ttl / 2)
			builds := src.builds.Load()
			if _, fresh, err := b.ManifestByTag(context.Background(), "hello", "v1", manifest.OCI); err != nil || (tt.want > 0 && !fresh.Equal(start.Add(tt.want))) {
				t.Errorf("from memory: fresh until %v, %v", fresh.Sub(start), err)
			}
			if tt.ttl > 0 && src.builds.Load() != builds {
				t.Error("a fresh answer built again")
			}
		})
	}
}

// TestLongestNameFitsStorage holds reference's bound on names to what
// storage holds: the longest name, with the longest tag, names a valid
// record object, so a name the registry accepts always gets its record.
func TestLongestNameFitsStorage(t *testing.T) {
	longest := strings.Repeat("a", reference.MaxComponentLength)
	name := longest + "/" + longest
	name += "/" + strings.Repeat("b", reference.MaxNameLength-len(name)-3) + "/c"
	if len(name) != reference.MaxNameLength || reference.CheckName(name) != nil {
		t.Fatalf("test name of %d bytes: %v", len(name), reference.CheckName(name))
	}
	tag := strings.Repeat("t", reference.MaxTagLength)
	if err := storage.ValidObjectName(tagObject(name, tag)); err != nil {
		t.Errorf("tag record of the longest name: %v", err)
	}
	if err := reference.CheckName(name + "c"); err == nil {
		t.Error("a name one byte longer is accepted")
	}
}

// logEntries is a logrus hook that passes every entry on, for tests that
// wait for a line to be logged.
type logEntries chan *logrus.Entry

func (c logEntries) Levels() []logrus.Level { return logrus.AllLevels }

func (c logEntries) Fire(e *logrus.Entry) error {
	c <- e
	return nil
}

func hookedLog() (*logrus.Logger, logEntries) {
	l := logrus.New()
	l.Out = io.Discard
	l.Level = logrus.DebugLevel
	entries := make(logEntries, 100)
	l.AddHook(entries)
	return l, entries
}

// waitLogged returns the entries logged up to and including the first with
// message msg or at warning level or above, whichever comes first.
func waitLogged(entries logEntries, msg string) []*logrus.Entry {
	var seen []*logrus.Entry
	for e := range entries {
		seen = append(seen, e)
		if e.Message == msg || e.Level <= logrus.WarnLevel {
			break
		}
	}
	return seen
}

// drain returns the entries logged so far, without waiting. Everything a
// request logs is logged before it returns (a flight's lines before its
// waiters get its result).
func drain(entries logEntries) []*logrus.Entry {
	var seen []*logrus.Entry
	for {
		select {
		case e := <-entries:
			seen = append(seen, e)
		default:
			return seen
		}
	}
}

// TestStoppedBuildIsNotAFailure: a build stopped because the server is
// shutting down is logged at info, and a client still waiting is told to
// try again (503).

func TestStoppedBuildIsNotAFailure(t *testing.T) {
	tests := []struct {
		name       string
		stop       func(b *Builder, leave context.CancelFunc)
		wantCode   errcode.Code
		wantMsg    string
		wantReason string
	}{
		{"the server shuts down", func(b *Builder, _ context.CancelFunc) { b.Close() },
			errcode.Unavailable, "the registry is shutting down: try again", "the server is shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, entries := hookedLog()
			src := &countingSource{release: make(chan struct{}), started: make(chan string, 1)}
			b := newTestBuilder(t, src, Options{Log: log})
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			errc := make(chan error, 1)
			go func() {
				_, _, err := b.ManifestByTag(ctx, "hello", "latest", manifest.OCI)
				errc <- err
			}()
			<-src.started
			tt.stop(b, leave)
			e := testkit.WantCode(t, <-errc, tt.wantCode, tt.wantMsg)
			if e.Code.ClientCaused() {
				t.Errorf("%s is a 4xx", e.Code)
			}
			seen := waitLogged(entries, "build stopped")
			last := seen[len(seen)-1]
			if last.Message != "build stopped" || last.Level != logrus.InfoLevel || last.Data["reason"] != tt.wantReason {
				t.Errorf("logged %q at %s with reason %v, want \"build stopped\" at info with reason %q",
					last.Message, last.Level, last.Data["reason"], tt.wantReason)
			}
			// Close waits for builds to stop; after it nothing builds.
			b.Close()
			if n := src.running.Load(); n != 0 {
				t.Errorf("%d builds running after Close", n)
			}
			_, _, err := b.ManifestByTag(context.Background(), "other", "latest", manifest.OCI)
			testkit.WantCode(t, err, errcode.Unavailable, "the registry is shutting down: try again")
			if n := src.builds.Load(); n != 1 {
				t.Errorf("%d builds, want 1: none after Close", n)
			}
		})
	}
}

// TestBuildTimeoutNamesTheLimit: a build past BuildTimeout is the client's
// BUILD_FAILED, naming the limit and the setting it follows.
func TestBuildTimeoutNamesTheLimit(t *testing.T) {
	src := &countingSource{release: make(chan struct{})}
	b := newTestBuilder(t, src, Options{BuildTimeout: 20 * time.Millisecond})
	_, _, err := b.ManifestByTag(context.Background(), "hello", "latest", manifest.OCI)
	testkit.WantCode(t, err, errcode.BuildFailed, "building hello:latest took longer than 20ms, the registry's limit for one build, and was stopped", "NIX_TIMEOUT")
}

// TestFailedBuildIsRemembered: a build that failed because of what the
// client asked for is answered again from memory for FailedBuildTTL, so a
// client's retries do not run the same failing build; server faults and
// stopped builds are not remembered.
func TestFailedBuildIsRemembered(t *testing.T) {
	tests := []struct {
		name string
		fail error
		ttl  time.Duration
		// builds after two requests within the TTL, then after a third
		// once the TTL has passed
		wantBuilds, wantAfterTTL int32
	}{
		{"a failed build (422) is remembered", errcode.New(errcode.BuildFailed, "package broken failed to build"), time.Minute, 1, 2},
		{"a missing package (404) is remembered", errcode.New(errcode.ManifestUnknown, "package nope not found"), time.Minute, 1, 2},
		{"a TTL of 0 remembers nothing", errcode.New(errcode.BuildFailed, "package broken failed to build"), 0, 2, 3},
		{"a server fault is not remembered", errors.New("disk on fire"), time.Minute, 2, 3},
		{"a 503 is not remembered", errcode.New(errcode.Unavailable, "try again"), time.Minute, 2, 3},
		{"a stopped build is not remembered", fmt.Errorf("build stopped: %w", context.Canceled), time.Minute, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, entries := hookedLog()
			src := &countingSource{fail: tt.fail}
			b := newTestBuilder(t, src, Options{Log: log, FailedBuildTTL: tt.ttl})
			var clock atomic.Int64
			start := time.Now()
			b.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
			ask := func() error {
				_, _, err := b.ManifestByTag(context.Background(), "broken", "latest", manifest.OCI)
				if err == nil {
					t.Fatal("a failing build succeeded")
				}
				return err
			}

			first := ask()
			drain(entries)
			clock.Store(int64(tt.ttl / 2))
			second := ask()
			logged := drain(entries)
			if n := src.builds.Load(); n != tt.wantBuilds {
				t.Errorf("%d builds for two requests within the TTL, want %d", n, tt.wantBuilds)
			}
			if tt.wantBuilds == 1 {
				if second != first {
					t.Errorf("the second request got %v, want the first's error %v", second, first)
				}
				if len(logged) != 1 || logged[0].Message != "build failed recently: answering its error without building again" ||
					logged[0].Level != logrus.InfoLevel || logged[0].Data["image"] != "broken" {
					for _, e := range logged {
						t.Errorf("logged %q at %s (%v)", e.Message, e.Level, e.Data)
					}
					t.Error("want one line at info: the remembered failure")
				}
			}

			clock.Store(int64(tt.ttl + time.Second))
			ask()
			if n := src.builds.Load(); n != tt.wantAfterTTL {
				t.Errorf("%d builds after the TTL passed, want %d", n, tt.wantAfterTTL)
			}
		})
	}
}
