package blobgc

import (
	"bytes"
	"context"
	_ "crypto/sha256" // go-digest needs sha256 registered
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

// world is storage holding images, records and referrers, and which of
// its blobs a collection must keep.
type world struct {
	t     *testing.T
	store *filesystem.Backend
	dir   string
	live  map[digest.Digest]string // what keeps each live blob
	dead  map[digest.Digest]string // why each dead blob is dead
}

func newWorld(t *testing.T) *world {
	dir := t.TempDir()
	store, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &world{t: t, store: store, dir: dir, live: map[digest.Digest]string{}, dead: map[digest.Digest]string{}}
}

// put stores a blob and files it as live or dead (why says why).
func (w *world) put(mediaType string, data []byte, live bool, why string) storage.BlobInfo {
	w.t.Helper()
	info, err := storage.PutBlob(w.t.Context(), w.store, mediaType, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
	if err != nil {
		w.t.Fatal(err)
	}
	if live {
		w.live[info.Digest] = why
		delete(w.dead, info.Digest)
	} else if _, ok := w.live[info.Digest]; !ok {
		w.dead[info.Digest] = why
	}
	return info
}

// layer stores a layer blob.
func (w *world) layer(name string, live bool) manifest.Layer {
	info := w.put(v1.MediaTypeImageLayerGzip, []byte("layer "+name), live, "layer "+name)
	return manifest.Layer{Digest: info.Digest, Size: info.Size, DiffID: digest.FromString("diff " + name)}
}

// image stores an image of layers in both formats, as the Nix source
// does, and returns its manifests.
func (w *world) image(name string, live bool, layers ...manifest.Layer) source.Manifests {
	w.t.Helper()
	built, err := manifest.Build(manifest.Image{Architecture: "amd64", OS: "linux", Env: []string{"IMAGE=" + name}, Layers: layers})
	if err != nil {
		w.t.Fatal(err)
	}
	w.put(built.Config.MediaType, built.Config.Bytes, live, "config of "+name)
	m := source.Manifests{}
	for f, b := range map[manifest.Format]manifest.Blob{manifest.OCI: built.OCI, manifest.Docker: built.Docker} {
		m[f] = w.put(b.MediaType, b.Bytes, live, fmt.Sprintf("%s manifest of %s", f, name))
	}
	return m
}

// manifestJSON stores a document as a manifest blob.
func (w *world) manifestJSON(mediaType string, doc any, live bool, why string) storage.BlobInfo {
	w.t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		w.t.Fatal(err)
	}
	return w.put(mediaType, data, live, why)
}

func (w *world) record(name string, m source.Manifests) {
	w.t.Helper()
	if err := source.PutRecord(w.t.Context(), w.store, name, source.NewRecord(m, false, time.Now())); err != nil {
		w.t.Fatal(err)
	}
}

func desc(info storage.BlobInfo) v1.Descriptor {
	return v1.Descriptor{MediaType: info.MediaType, Digest: info.Digest, Size: info.Size}
}

// build fills the world with every kind of root and of garbage.
func (w *world) build() (referrerPairs map[string]referrers.Pair, extra *fakeRoots) {
	ctx := w.t.Context()
	base := w.layer("base, shared by a live and a dead image", true)

	// A tag's last build, in both formats.
	a := w.image("a", true, base, w.layer("a", true))
	w.record("tags/a/_/latest", a)
	// A built plan and a pinned request.
	b := w.image("b", true, base, w.layer("b", true))
	w.record("plans/"+source.Hash("b"), b)
	// An index of two platform manifests, pinned.
	c1 := w.image("c-amd64", true, w.layer("c1", true))
	c2 := w.image("c-arm64", true, w.layer("c2", true))
	// Their Docker forms, which no index names, are garbage.
	for _, c := range []source.Manifests{c1, c2} {
		d := c[manifest.Docker].Digest
		w.dead[d] = "Docker manifest no index names: " + w.live[d]
		delete(w.live, d)
	}
	index := w.manifestJSON(v1.MediaTypeImageIndex, v1.Index{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{desc(c1[manifest.OCI]), desc(c2[manifest.OCI])},
	}, true, "index c")
	w.record("pinned/"+source.Hash("c"), source.Manifests{manifest.OCI: index})
	// The Nix source's image by input.
	d := w.image("d", true, w.layer("d", true))
	w.record("manifests/"+source.Hash("d"), d)
	// A record naming a manifest no longer stored.
	w.record("tags/gone/_/latest", source.Manifests{manifest.OCI: {Digest: digest.FromString("gone"), Size: 4, MediaType: v1.MediaTypeImageManifest}})

	// Referrers: an SBOM of a, a signature of that SBOM, and an SBOM of
	// an image no record names.
	sbomLayer := w.put("application/spdx+json", []byte("sbom of a"), true, "sbom of a")
	emptyConfig := w.put(v1.MediaTypeEmptyJSON, []byte("{}"), true, "empty config of the referrers")
	sbom := w.manifestJSON(v1.MediaTypeImageManifest, v1.Manifest{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageManifest, ArtifactType: "application/spdx+json",
		Config: desc(emptyConfig), Layers: []v1.Descriptor{desc(sbomLayer)}, Subject: ptr(desc(a[manifest.OCI])),
	}, true, "referrer of a")
	sigLayer := w.put("application/vnd.dev.cosign.simplesigning.v1+json", []byte("signature of the sbom"), true, "signature")
	sig := w.manifestJSON(v1.MediaTypeImageManifest, v1.Manifest{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageManifest,
		Config: desc(emptyConfig), Layers: []v1.Descriptor{desc(sigLayer)}, Subject: ptr(desc(sbom)),
	}, true, "referrer of a referrer")
	e := w.image("e", false, base, w.layer("e", false))
	eSBOMLayer := w.put("application/spdx+json", []byte("sbom of e"), false, "sbom of a dead image")
	eSBOM := w.manifestJSON(v1.MediaTypeImageManifest, v1.Manifest{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageManifest,
		Config: desc(emptyConfig), Layers: []v1.Descriptor{desc(eSBOMLayer)}, Subject: ptr(desc(e[manifest.OCI])),
	}, false, "referrer of a dead image")
	referrerPairs = map[string]referrers.Pair{
		"sbom of a":      {Subject: a[manifest.OCI].Digest, Referrer: sbom.Digest},
		"sig of sbom":    {Subject: sbom.Digest, Referrer: sig.Digest},
		"sbom of dead e": {Subject: e[manifest.OCI].Digest, Referrer: eSBOM.Digest},
	}
	for _, p := range referrerPairs {
		info, err := w.store.StatBlob(ctx, p.Referrer)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := referrers.Add(ctx, w.store, p.Subject, desc(info)); err != nil {
			w.t.Fatal(err)
		}
	}

	// The layer cache names a dead layer: not a root.
	dead := w.layer("only in the layer cache", false)
	if err := w.store.PutObject(ctx, "layers/"+source.Hash("dead"), []byte(`{"digest":"`+dead.Digest.String()+`"}`)); err != nil {
		w.t.Fatal(err)
	}
	// An orphan of a failed build.
	w.put(v1.MediaTypeImageLayerGzip, []byte("orphan"), false, "orphan layer")

	// Roots a caller adds: a blob, a manifest, and a blob named as a
	// manifest that is not one.
	pushedLayer := w.layer("pushed", true)
	pushedConfig := w.put(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`), true, "pushed config")
	pushed := w.manifestJSON(v1.MediaTypeImageManifest, v1.Manifest{
		Versioned: specsVersioned(), MediaType: v1.MediaTypeImageManifest,
		Config: desc(pushedConfig), Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: pushedLayer.Digest, Size: pushedLayer.Size}},
	}, true, "pushed manifest")
	linked := w.put("application/octet-stream", []byte("a blob pushed alone"), true, "pushed blob")
	notManifest := w.put(v1.MediaTypeImageLayerGzip, []byte("\x1f\x8b not a manifest"), true, "a layer named as a manifest")
	extra = &fakeRoots{blobs: []digest.Digest{linked.Digest, digest.SHA512.FromString("not storable")}, manifests: []digest.Digest{pushed.Digest, notManifest.Digest}}
	return referrerPairs, extra
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

func ptr[T any](v T) *T { return &v }

// fakeRoots is a Roots set holding fixed blobs and manifests, and more
// added while it runs (links).
type fakeRoots struct {
	mu        sync.Mutex
	blobs     []digest.Digest
	manifests []digest.Digest
	err       error
}

func (r *fakeRoots) MarkRoots(ctx context.Context, blob, manifest func(digest.Digest)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.blobs {
		blob(d)
	}
	for _, d := range r.manifests {
		manifest(d)
	}
	return r.err
}

func (r *fakeRoots) link(d digest.Digest) {
	r.mu.Lock()
	r.blobs = append(r.blobs, d)
	r.mu.Unlock()
}

// stored returns the digests of every blob in storage.
func (w *world) stored() map[digest.Digest]bool {
	w.t.Helper()
	got := map[digest.Digest]bool{}
	for st, err := range w.store.ListBlobs(w.t.Context()) {
		if err != nil {
			w.t.Fatal(err)
		}
		got[st.Digest] = true
	}
	return got
}

// later is a clock an hour ahead: every blob written in the test is
// older than a collection's cutoff.
func later() time.Time { return time.Now().Add(time.Hour) }

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func TestCollectKeepsWhatRootsReach(t *testing.T) {
	w := newWorld(t)
	pairs, extra := w.build()
	if len(w.live) == 0 || len(w.dead) == 0 {
		t.Fatal("the world has nothing to keep or nothing to delete")
	}
	// The roots set keeps its state under its prefix: known.
	if err := w.store.PutObject(t.Context(), "links/some/repository", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	opts := Options{Storage: w.store, Roots: map[string]Roots{"links/": extra}, Log: quietLog(), now: later}

	// A dry run says what would go, and deletes nothing.
	var wouldGo []digest.Digest
	var mu sync.Mutex
	opts.Each = func(st storage.BlobStat) { mu.Lock(); wouldGo = append(wouldGo, st.Digest); mu.Unlock() }
	before := w.stored()
	res, err := collect(t.Context(), opts, true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if got := w.stored(); !maps.Equal(got, before) {
		t.Errorf("a dry run deleted blobs: %d stored, %d before", len(got), len(before))
	}
	if !sameSet(wouldGo, slices.Collect(maps.Keys(w.dead))) {
		t.Errorf("dry run would delete %d blobs, want the %d dead ones", len(wouldGo), len(w.dead))
	}
	if res.Deleted != int64(len(w.dead)) || res.Missing != 1 || res.Records != 5 || !res.DryRun {
		t.Errorf("dry run result %+v: want %d deleted, 1 missing manifest, 5 records", res, len(w.dead))
	}

	// The collection deletes exactly the dead blobs.
	opts.Each = nil
	res, err = collect(t.Context(), opts, false)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got := w.stored()
	for d, why := range w.live {
		if !got[d] {
			t.Errorf("live blob deleted: %s (%s)", why, d)
		}
	}
	for d, why := range w.dead {
		if got[d] {
			t.Errorf("dead blob kept: %s (%s)", why, d)
		}
	}
	if res.Deleted != int64(len(w.dead)) || res.Blobs != int64(len(w.live)+len(w.dead)) || res.Failed != 0 {
		t.Errorf("result %+v: want %d deleted of %d blobs", res, len(w.dead), len(w.live)+len(w.dead))
	}
	// The dead referrer left the index; the live ones stay.
	all, err := referrers.All(t.Context(), w.store)
	if err != nil {
		t.Fatal(err)
	}
	want := []referrers.Pair{pairs["sbom of a"], pairs["sig of sbom"]}
	if !sameSet(all, want) || res.ReferrersRemoved != 1 {
		t.Errorf("referrers index after the collection = %v (%d removed), want %v", all, res.ReferrersRemoved, want)
	}

	// Nothing more to do.
	res, err = collect(t.Context(), opts, false)
	if err != nil || res.Deleted != 0 {
		t.Errorf("a second collection: %+v, %v; want nothing deleted", res, err)
	}
}

func sameSet[T comparable](a, b []T) bool {
	count := map[T]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestGraceKeepsRecentBlobs(t *testing.T) {
	w := newWorld(t)
	_, extra := w.build()
	before := w.stored()
	res, err := collect(t.Context(), Options{Storage: w.store, Roots: map[string]Roots{"links/": extra}, Grace: time.Hour, Log: quietLog()}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || res.Recent != int64(len(w.dead)) {
		t.Errorf("with an hour's grace: %+v; want the %d dead blobs kept as recent", res, len(w.dead))
	}
	if got := w.stored(); !maps.Equal(got, before) {
		t.Error("blobs within the grace were deleted")
	}
}

// TestUnreadableRootsDeleteNothing: a root that cannot be read stops the
// collection before anything is deleted.
func TestUnreadableRootsDeleteNothing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		breakIt func(w *world, extra *fakeRoots)
	}{
		{"a corrupt record", func(w *world, _ *fakeRoots) {
			if err := w.store.PutObject(w.t.Context(), "plans/corrupt", []byte("{not json")); err != nil {
				w.t.Fatal(err)
			}
		}},
		{"a record naming an invalid digest", func(w *world, _ *fakeRoots) {
			if err := w.store.PutObject(w.t.Context(), "tags/x/_/bad", []byte(`{"oci":{"digest":"sha256:zz"}}`)); err != nil {
				w.t.Fatal(err)
			}
		}},
		{"a roots set failing", func(_ *world, extra *fakeRoots) { extra.err = errors.New("links unreadable") }},
		{"objects under an unknown prefix", func(w *world, _ *fakeRoots) {
			if err := w.store.PutObject(w.t.Context(), "push/local/app/_tags/latest", []byte("sha256:...")); err != nil {
				w.t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			_, extra := w.build()
			tt.breakIt(w, extra)
			before := w.stored()
			if _, err := collect(t.Context(), Options{Storage: w.store, Roots: map[string]Roots{"links/": extra}, Log: quietLog(), now: later}, false); err == nil {
				t.Fatal("Collect succeeded")
			}
			if got := w.stored(); !maps.Equal(got, before) {
				t.Error("blobs were deleted")
			}
		})
	}
}

// TestWritesDuringCollectionSurvive pushes (and rebuilds) while a
// collection with no grace at all runs: new blobs, and dead ones
// committed again, linked to a root the collection has already read.
// Whatever the interleaving, every blob linked is stored afterwards:
// what protects it is that it was written or refreshed after the
// collection began, which DeleteBlob checks as it deletes.
func TestWritesDuringCollectionSurvive(t *testing.T) {
	w := newWorld(t)
	roots := &fakeRoots{}
	// Old garbage, some of which the pushes store again.
	var old []string
	hourAgo := time.Now().Add(-time.Hour)
	for i := range 200 {
		content := fmt.Sprintf("old blob %d", i)
		info := w.put("application/octet-stream", []byte(content), false, content)
		if err := os.Chtimes(filepath.Join(w.dir, "blobs", "sha256", info.Digest.Encoded()), hourAgo, hourAgo); err != nil {
			t.Fatal(err)
		}
		old = append(old, content)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var linkedMu sync.Mutex
	var linked []digest.Digest
	started := make(chan struct{})
	push := func(id int) {
		<-started
		for i := 0; ctx.Err() == nil; i++ {
			content := fmt.Sprintf("pushed by %d, number %d", id, i)
			if i%2 == 1 {
				content = old[(id*31+i)%len(old)]
			}
			info, err := storage.PutBlob(ctx, w.store, "application/octet-stream", digest.FromString(content), int64(len(content)), bytes.NewReader([]byte(content)))
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("push: %v", err)
				}
				return
			}
			roots.link(info.Digest)
			linkedMu.Lock()
			linked = append(linked, info.Digest)
			linkedMu.Unlock()
		}
	}
	for id := range 4 {
		wg.Go(func() { push(id) })
	}
	opts := Options{Storage: w.store, Roots: map[string]Roots{"links/": roots}, Log: quietLog(), Parallelism: 4,
		started: func() { close(started) }}
	res, err := collect(t.Context(), opts, false)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	got := w.stored()
	for _, d := range linked {
		if !got[d] {
			t.Fatalf("a blob pushed during the collection was deleted: %s", d)
		}
	}
	if res.Deleted == 0 {
		t.Errorf("the collection deleted nothing (%+v): the test proves nothing", res)
	}
	t.Logf("%d pushes; collection: %d deleted, %d kept as recent, %d refreshed while deleting", len(linked), res.Deleted, res.Recent, res.Refreshed)
}

func TestRunTakesTheLease(t *testing.T) {
	w := newWorld(t)
	w.build()
	opts := Options{Storage: w.store, Log: quietLog(), Holder: "me"}
	if last, err := LastRun(t.Context(), w.store); err != nil || !last.IsZero() {
		t.Fatalf("LastRun before any = %v, %v", last, err)
	}
	lease, err := w.store.TryLease(t.Context(), leaseName, "another instance", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), opts, false); !errors.Is(err, ErrRunning) || !errors.Is(err, storage.ErrLeaseHeld) {
		t.Errorf("Run while another holds the lease = %v, want ErrRunning", err)
	}
	// A dry run needs no lease.
	if _, err := Run(t.Context(), opts, true); err != nil {
		t.Errorf("dry run while another holds the lease: %v", err)
	}
	if last, _ := LastRun(t.Context(), w.store); !last.IsZero() {
		t.Error("a dry run was recorded as a collection")
	}
	lease.Release(t.Context())
	res, err := Run(t.Context(), opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if last, err := LastRun(t.Context(), w.store); err != nil || !last.Equal(res.Started) {
		t.Errorf("LastRun = %v, %v; want %v", last, err, res.Started)
	}
	// Released: another instance may collect at once.
	if l, err := w.store.TryLease(t.Context(), leaseName, "another instance", time.Minute); err != nil {
		t.Errorf("the lease is held after Run: %v", err)
	} else {
		l.Release(t.Context())
	}
}

// TestSchedule: a schedule collects once per interval, and records it.
func TestSchedule(t *testing.T) {
	w := newWorld(t)
	w.build()
	log := logrus.New()
	log.Out = io.Discard
	finished := make(chan struct{}, 10)
	log.AddHook(&messageHook{message: "blob collection finished", seen: finished})
	s := StartSchedule(Options{Storage: w.store, Log: log, now: later}, 200*time.Millisecond)
	defer s.Close()
	for range 2 {
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatal("no scheduled collection finished")
		}
	}
	if last, err := LastRun(t.Context(), w.store); err != nil || last.IsZero() {
		t.Errorf("LastRun after scheduled collections = %v, %v", last, err)
	}
	for d, why := range w.dead {
		if w.stored()[d] {
			t.Errorf("dead blob kept by the scheduled collections: %s", why)
		}
	}
	s.Close()
}

type messageHook struct {
	message string
	seen    chan struct{}
}

func (h *messageHook) Levels() []logrus.Level { return logrus.AllLevels }
func (h *messageHook) Fire(e *logrus.Entry) error {
	if e.Message == h.message {
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestRolePrefixNeedsItsRoots: a prefix KnownPrefixes lists as kept by a
// roots set is known only when that set is given.
func TestRolePrefixNeedsItsRoots(t *testing.T) {
	saved := KnownPrefixes
	KnownPrefixes = append(slices.Clone(saved), Prefix{"links/", "a test", RoleRoots, "links of a test"})
	t.Cleanup(func() { KnownPrefixes = saved })
	w := newWorld(t)
	_, extra := w.build()
	if err := w.store.PutObject(t.Context(), "links/r", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	before := w.stored()
	if _, err := collect(t.Context(), Options{Storage: w.store, Log: quietLog(), now: later}, false); err == nil || !strings.Contains(err.Error(), "links/") {
		t.Errorf("a collection without the roots of links/ = %v, want an error naming links/", err)
	}
	if !maps.Equal(w.stored(), before) {
		t.Fatal("blobs were deleted")
	}
	if _, err := collect(t.Context(), Options{Storage: w.store, Roots: map[string]Roots{"links/": extra}, Log: quietLog(), now: later}, false); err != nil {
		t.Errorf("with its roots: %v", err)
	}
}
