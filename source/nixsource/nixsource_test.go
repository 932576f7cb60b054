package nixsource

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/builder"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
	"github.com/nixport/nixport/testkit"
)

func newNixSource(t *testing.T, dir string) (*Source, storage.Backend) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("Nix is not installed (scripts/setup.sh installs it)")
	}
	store, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := nix.New(nix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { driver.Close() })
	src, err := New(Options{Driver: driver, Storage: store, Names: DefaultNameOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return src, store
}

func readManifest(t *testing.T, store storage.Backend, info storage.BlobInfo) v1.Manifest {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal(testkit.ReadBlob(t, store, info), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNixSourceBuildsAndReuses(t *testing.T) {
	src, store := newNixSource(t, t.TempDir())
	ctx := context.Background()

	first, err := source.BuildOnce(ctx, src, "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	oci, docker := first[manifest.OCI], first[manifest.Docker]
	if oci.MediaType != v1.MediaTypeImageManifest || docker.MediaType != manifest.DockerManifest {
		t.Fatalf("manifests: %+v", first)
	}
	m := readManifest(t, store, oci)
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		info, err := store.StatBlob(ctx, d.Digest)
		if err != nil || info.Size != d.Size {
			t.Errorf("blob %s: %+v %v", d.Digest, info, err)
		}
	}
	archived := src.Stats().LayersArchived.Load()

	// The same closure again: the manifest cache answers, nothing is
	// archived.
	again, err := source.BuildOnce(ctx, src, "hello", "latest")
	if err != nil || again[manifest.OCI].Digest != oci.Digest {
		t.Fatalf("rebuild: %v %v", again, err)
	}
	if src.Stats().LayersArchived.Load() != archived || src.Stats().ManifestsReused.Load() != 1 {
		t.Errorf("rebuild archived layers or missed the manifest cache")
	}

	// One more package: only its new paths (and the customisation layer)
	// are compressed.
	before := src.Stats().LayersArchived.Load()
	bytesBefore := src.Stats().BytesArchived.Load()
	more, err := source.BuildOnce(ctx, src, "hello/deep", "latest")
	if err != nil {
		t.Fatal(err)
	}
	m2 := readManifest(t, store, more[manifest.OCI])
	newLayers := src.Stats().LayersArchived.Load() - before
	reused := 0
	for _, a := range m2.Layers {
		for _, b := range m.Layers {
			if a.Digest == b.Digest {
				reused++
			}
		}
	}
	if reused == 0 || int(newLayers)+reused != len(m2.Layers) {
		t.Errorf("adding a package: %d new layers, %d reused of %d", newLayers, reused, len(m2.Layers))
	}
	t.Logf("adding deep to hello: %d layers archived (%d bytes), %d reused", newLayers, src.Stats().BytesArchived.Load()-bytesBefore, reused)
}

func TestNixSourceIsReproducible(t *testing.T) {
	ctx := context.Background()
	a, _ := newNixSource(t, t.TempDir())
	b, _ := newNixSource(t, t.TempDir())
	ma, err := source.BuildOnce(ctx, a, "shell/hello/deep", "latest")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := source.BuildOnce(ctx, b, "shell/deep/hello/hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if ma[manifest.OCI].Digest != mb[manifest.OCI].Digest || ma[manifest.Docker].Digest != mb[manifest.Docker].Digest {
		t.Errorf("same image into two empty stores: %v vs %v", ma, mb)
	}
}

// TestNixSourceTags: the builtin package set has one version, "latest".
// Any other tag is MANIFEST_UNKNOWN naming it, before any cache or build,
// also once "latest" is cached; tags/list lists what works.
func TestNixSourceTags(t *testing.T) {
	src, store := newNixSource(t, t.TempDir())
	b, err := builder.New(builder.Options{Storage: store, Source: src, MovingTagTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	// A record an older nixport (which ignored the tag) may have left.
	if _, _, err := b.ManifestByTag(ctx, "hello", "latest", manifest.OCI); err != nil {
		t.Fatal(err)
	}
	m, _ := b.Image(ctx, "hello", "latest")
	if err := builder.StoreTag(ctx, store, "hello", "v1", m); err != nil {
		t.Fatal(err)
	}
	archived := src.Stats().LayersArchived.Load()
	tests := []struct {
		tag  string
		code errcode.Code // "" for success
	}{
		{"latest", ""},
		{"v1", errcode.ManifestUnknown},
		{"missing-abcdefghij234567", errcode.ManifestUnknown},
		{"0123456789abcdef0123456789abcdef01234567", errcode.ManifestUnknown},
		{"main", errcode.ManifestUnknown},
		{"a..b", errcode.ManifestUnknown},
		{"-x", errcode.TagInvalid},
	}
	for _, tc := range tests {
		_, _, err := b.ManifestByTag(ctx, "hello", tc.tag, manifest.OCI)
		if tc.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.tag, err)
			}
			continue
		}
		e, ok := errcode.As(err)
		if !ok || e.Code != tc.code {
			t.Errorf("%s: %v, want %s", tc.tag, err, tc.code)
			continue
		}
		if tc.code == errcode.ManifestUnknown && !strings.Contains(e.Message, `"latest"`) {
			t.Errorf("%s: message %q does not name the tag that works", tc.tag, e.Message)
		}
	}
	if n := src.Stats().LayersArchived.Load(); n != archived {
		t.Errorf("unknown tags archived %d layers", n-archived)
	}
	tags, err := b.Tags(ctx, "hello")
	if err != nil || strings.Join(tags, ",") != "latest" {
		t.Errorf("tags = %v (%v), want [latest]", tags, err)
	}
}

// TestFailedNixBuildIsRemembered: the offline set's broken package, asked
// for twice within NIXPORT_FAILED_BUILD_TTL, runs Nix once; once the TTL
// has passed, Nix runs again.
func TestFailedNixBuildIsRemembered(t *testing.T) {
	src, store := newNixSource(t, t.TempDir())
	var clock atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	b, err := builder.New(builder.Options{Storage: store, Source: src, Log: testkit.QuietLog(), FailedBuildTTL: time.Minute, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	driver := src.opts.Driver
	ask := func() *errcode.Error {
		t.Helper()
		_, _, err := b.ManifestByTag(context.Background(), "broken", "latest", manifest.OCI)
		return testkit.WantCode(t, err, errcode.BuildFailed, "package broken (", "this build fails on purpose")
	}

	first := ask()
	ran := driver.ProcessCount()
	if ran == 0 {
		t.Fatal("no Nix process ran")
	}
	clock.Store(int64(30 * time.Second))
	if again := ask(); again != first {
		t.Errorf("within the TTL: %v, want the first answer %v", again, first)
	}
	if n := driver.ProcessCount(); n != ran {
		t.Errorf("a retry within the TTL ran %d Nix processes", n-ran)
	}
	clock.Store(int64(61 * time.Second))
	ask()
	if n := driver.ProcessCount(); n != 2*ran {
		t.Errorf("after the TTL: %d Nix processes, want %d (the build again)", n-ran, ran)
	}
}

// TestReusedLayersAreRefreshed: a layer taken from the layer cache is
// refreshed, so that a blob collection under way (which keeps what was
// written or refreshed since it began) does not delete it before the new
// image's records name it.
func TestReusedLayersAreRefreshed(t *testing.T) {
	dir := t.TempDir()
	src, store := newNixSource(t, dir)
	ctx := context.Background()
	first, err := source.BuildOnce(ctx, src, "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	dayAgo := time.Now().Add(-24 * time.Hour)
	for _, l := range readManifest(t, store, first[manifest.OCI]).Layers {
		old[l.Digest.String()] = true
		if err := os.Chtimes(filepath.Join(dir, "blobs", "sha256", l.Digest.Encoded()), dayAgo, dayAgo); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	more, err := source.BuildOnce(ctx, src, "hello/deep", "latest")
	if err != nil {
		t.Fatal(err)
	}
	modified := map[string]time.Time{}
	for st, err := range store.ListBlobs(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		modified[st.Digest.String()] = st.Modified
	}
	reused := 0
	for _, l := range readManifest(t, store, more[manifest.OCI]).Layers {
		if !old[l.Digest.String()] {
			continue
		}
		reused++
		if m := modified[l.Digest.String()]; m.Before(start) {
			t.Errorf("layer %s, reused from the layer cache, was last refreshed at %s, before the build began", l.Digest, m)
		}
	}
	if reused == 0 {
		t.Fatal("the second image reuses no layer of the first: the test proves nothing")
	}
}
