package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
	"github.com/nixport/nixport/storage/gcs"
	"github.com/nixport/nixport/storage/gcs/gcstest"
	s3store "github.com/nixport/nixport/storage/s3"
	"github.com/nixport/nixport/storage/s3/s3test"
)

// recordPrefixes are the prefixes of the records that keep built images
// (blobgc.KnownPrefixes with RoleRecords).
var recordPrefixes = []string{"tags/", "pinned/", "plans/", "manifests/"}

// forgetImage deletes every record in storage that names one of the
// manifests, as if the image's tags were deleted: a built image is kept by
// its tag record, and by its plan and manifest records too.
func forgetImage(t *testing.T, store storage.Backend, manifests []string) {
	t.Helper()
	forgotten := 0
	for _, prefix := range recordPrefixes {
		names, err := store.ListObjects(t.Context(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			r, err := source.GetRecord(t.Context(), store, name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := r.Manifests()
			if err != nil {
				t.Fatal(err)
			}
			for _, info := range m {
				if slices.Contains(manifests, info.Digest.String()) {
					if err := store.DeleteObject(t.Context(), name); err != nil {
						t.Fatal(err)
					}
					forgotten++
				}
			}
		}
	}
	if forgotten == 0 {
		t.Fatalf("no record names %v", manifests)
	}
}

// forgetImageIn is forgetImage on filesystem storage at dir.
func forgetImageIn(t *testing.T, dir string, manifests []string) {
	t.Helper()
	store, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	forgetImage(t, store, manifests)
}

// imageBlobs returns the digests of an image's blobs in storage (both
// manifests, the config and the layers, and its referrers: the SBOM
// artifacts and what they hold), and of its manifests.
func imageBlobs(t *testing.T, addr, name string) (blobs map[string]bool, manifests []string) {
	t.Helper()
	blobs = map[string]bool{}
	for _, accept := range []string{v1.MediaTypeImageManifest, manifest.DockerManifest} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+name+"/manifests/latest", nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		decodeJSON(t, resp, &m)
		d := resp.Header.Get("Docker-Content-Digest")
		blobs[d] = true
		manifests = append(manifests, d)
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			blobs[d.Digest.String()] = true
		}
		resp, err = http.Get("http://" + addr + "/v2/" + name + "/referrers/" + d)
		if err != nil {
			t.Fatal(err)
		}
		var index v1.Index
		decodeJSON(t, resp, &index)
		for _, r := range index.Manifests {
			blobs[r.Digest.String()] = true
			resp, err := http.Get("http://" + addr + "/v2/" + name + "/manifests/" + r.Digest.String())
			if err != nil {
				t.Fatal(err)
			}
			var artifact v1.Manifest
			decodeJSON(t, resp, &artifact)
			for _, d := range append([]v1.Descriptor{artifact.Config}, artifact.Layers...) {
				blobs[d.Digest.String()] = true
			}
		}
	}
	return blobs, manifests
}

// storedBlobs lists the blobs in filesystem storage at dir.
func storedBlobs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".type") {
			got["sha256:"+e.Name()] = true
		}
	}
	return got
}

// runGC runs nixport gc with args and env (which says where storage is),
// and returns its standard output.
func runGC(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"gc"}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"NIXPORT_LOG_LEVEL=warning"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nixport gc %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestGCDeletesAForgottenImage builds two images that share their base
// layers, forgets one, and collects: a dry run deletes nothing and lists
// exactly the forgotten image's own blobs; the collection deletes exactly
// those; the other image still pulls whole; and the forgotten one, pulled
// again from a server that never saw it, is built again (its layer records
// name blobs that are gone, which is a cache miss).
func TestGCDeletesAForgottenImage(t *testing.T) {
	requireTools(t, "nix-store")
	dir := t.TempDir()
	s := startServer(t, "STORAGE_PATH="+dir)
	for _, name := range []string{"hello", "deep"} {
		if _, err := pullAll(http.DefaultClient, "http://"+s.addr, name, "latest"); err != nil {
			t.Fatal(err)
		}
	}
	hello, _ := imageBlobs(t, s.addr, "hello")
	deep, deepManifests := imageBlobs(t, s.addr, "deep")
	unique := map[string]bool{}
	shared := 0
	for d := range deep {
		if hello[d] {
			shared++
		} else {
			unique[d] = true
		}
	}
	if shared == 0 || len(unique) < 4 {
		t.Fatalf("deep shares %d blobs with hello and has %d of its own: the test needs both", shared, len(unique))
	}
	forgetImageIn(t, dir, deepManifests)
	before := storedBlobs(t, dir)
	grace := []string{"STORAGE_PATH=" + dir, "NIXPORT_GC_GRACE=0"}

	// A dry run lists what would go, and deletes nothing.
	out := runGC(t, grace, "-dry-run", "-v")
	listed := map[string]bool{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines[:len(lines)-1] {
		d, _, _ := strings.Cut(line, " ")
		listed[d] = true
	}
	if !mapsEqual(listed, unique) {
		t.Errorf("the dry run lists %v, want deep's own blobs %v", listed, unique)
	}
	if summary := lines[len(lines)-1]; !strings.HasPrefix(summary, fmt.Sprintf("would delete %d blobs, ", len(unique))) {
		t.Errorf("dry run summary %q", summary)
	}
	if got := storedBlobs(t, dir); !mapsEqual(got, before) {
		t.Fatal("the dry run deleted blobs")
	}

	// The collection deletes exactly them.
	out = runGC(t, grace)
	if !strings.HasPrefix(out, fmt.Sprintf("deleted %d blobs, ", len(unique))) {
		t.Errorf("nixport gc printed %q", out)
	}
	after := storedBlobs(t, dir)
	for d := range before {
		if after[d] == unique[d] {
			t.Errorf("blob %s: stored %v after the collection, deep's own: %v", d, after[d], unique[d])
		}
	}
	checkBlobs(t, dir)
	if _, err := pullAll(http.DefaultClient, "http://"+s.addr, "hello", "latest"); err != nil {
		t.Errorf("hello after the collection: %v", err)
	}
	s.stop(t)

	// Nothing more to collect; and deep comes back when pulled again.
	if out := runGC(t, grace); !strings.HasPrefix(out, "deleted 0 blobs, ") {
		t.Errorf("a second collection: %q", out)
	}
	s = startServer(t, "STORAGE_PATH="+dir)
	if _, err := pullAll(http.DefaultClient, "http://"+s.addr, "deep", "latest"); err != nil {
		t.Errorf("deep, pulled again after its blobs were collected: %v", err)
	}
	s.stop(t)
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestGCWhileBuilding collects again and again, with the default grace,
// while an image is built whose base layer is garbage a day old (its only
// image was forgotten): the build reuses that layer through the layer
// cache, which refreshes it, or finds it gone and makes it again. Either
// way the image is whole afterwards, and the garbage nothing reused goes.
func TestGCWhileBuilding(t *testing.T) {
	requireTools(t, "nix-store")
	dir := t.TempDir()
	s := startServer(t, "STORAGE_PATH="+dir)
	if _, err := pullAll(http.DefaultClient, "http://"+s.addr, "hello", "latest"); err != nil {
		t.Fatal(err)
	}
	hello, helloManifests := imageBlobs(t, s.addr, "hello")
	s.stop(t)
	forgetImageIn(t, dir, helloManifests)
	dayAgo := time.Now().Add(-24 * time.Hour)
	for d := range storedBlobs(t, dir) {
		if err := os.Chtimes(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")), dayAgo, dayAgo); err != nil {
			t.Fatal(err)
		}
	}

	s = startServer(t, "STORAGE_PATH="+dir)
	built := make(chan error, 1)
	go func() {
		_, err := pullAll(&http.Client{Timeout: 2 * time.Minute}, "http://"+s.addr, "deep", "latest")
		built <- err
	}()
	runs := 0
	for done := false; !done; runs++ {
		runGC(t, []string{"STORAGE_PATH=" + dir})
		select {
		case err := <-built:
			if err != nil {
				t.Fatalf("deep, built during collections: %v", err)
			}
			done = true
		default:
		}
	}
	runGC(t, []string{"STORAGE_PATH=" + dir})
	deep, _ := imageBlobs(t, s.addr, "deep")
	stored := storedBlobs(t, dir)
	for d := range deep {
		if !stored[d] {
			t.Errorf("blob %s of deep, built during collections, is gone", d)
		}
	}
	gone := 0
	for d := range hello {
		if !deep[d] && !stored[d] {
			gone++
		}
	}
	if gone == 0 {
		t.Error("none of the forgotten image's own blobs was collected")
	}
	t.Logf("%d collections during the build; %d of hello's own blobs collected", runs, gone)
	s.stop(t)
	// A server that never saw deep serves it from storage, whole.
	s = startServer(t, "STORAGE_PATH="+dir)
	if _, err := pullAll(http.DefaultClient, "http://"+s.addr, "deep", "latest"); err != nil {
		t.Errorf("deep from a fresh server: %v", err)
	}
	s.stop(t)
}

// TestGCSchedule: a server with NIXPORT_GC_INTERVAL collects on its own,
// and counts what it did.
func TestGCSchedule(t *testing.T) {
	dir := t.TempDir()
	store, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	orphan := []byte("a layer of a build that failed")
	info, err := storage.PutBlob(t.Context(), store, v1.MediaTypeImageLayerGzip, digest.FromBytes(orphan), int64(len(orphan)), bytes.NewReader(orphan))
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	s := startServer(t, "STORAGE_PATH="+dir, "NIXPORT_GC_INTERVAL=1s", "NIXPORT_GC_GRACE=0")
	if line := s.awaitLog(t, "blob collection finished", "", nil); line["deleted"] != 1.0 {
		t.Errorf("the scheduled collection deleted %v blobs, want the 1 orphan", line["deleted"])
	}
	if storedBlobs(t, dir)["sha256:"+info.Digest.Encoded()] {
		t.Error("the orphan is still stored")
	}
	families := scrape(t, "http://"+s.addr+"/metrics")
	if v := sample(families, "nixport_gc_runs_total", "result", "ok"); v < 1 {
		t.Errorf("nixport_gc_runs_total{result=ok} = %v", v)
	}
	if v := sample(families, "nixport_gc_deleted_blobs_total"); v != 1 {
		t.Errorf("nixport_gc_deleted_blobs_total = %v, want 1", v)
	}
	if v := sample(families, "nixport_gc_deleted_bytes_total"); v != float64(len(orphan)) {
		t.Errorf("nixport_gc_deleted_bytes_total = %v, want %d", v, len(orphan))
	}
	s.stop(t)
	var last struct{ Started time.Time }
	data, err := os.ReadFile(filepath.Join(dir, "objects", "gc", "last-run"))
	if err != nil || json.Unmarshal(data, &last) != nil || last.Started.IsZero() {
		t.Errorf("the record of the last collection: %s, %v", data, err)
	}
}

// TestGCOnNetworkedBackends forgets an image and collects on GCS (its
// emulator) and S3 (versitygw): the image's own blobs go, the other
// image's stay and pull.
func TestGCOnNetworkedBackends(t *testing.T) {
	requireTools(t, "nix-store")
	for _, backend := range []struct {
		name string
		// open returns the environment of nixport on the backend, the
		// backend, and a function that makes its blobs old, if that is
		// needed for a collection with no grace to collect them.
		open func(t *testing.T) (env []string, store storage.Backend, age func())
	}{
		{"gcs", func(t *testing.T) ([]string, storage.Backend, func()) {
			emu := gcstest.Start(t)
			b := emu.NewBackend(t, gcs.Options{})
			return []string{"NIXERY_STORAGE_BACKEND=gcs", "GCS_BUCKET=" + b.Bucket(), "STORAGE_EMULATOR_HOST=" + emu.Host}, b, func() {}
		}},
		{"s3", func(t *testing.T) ([]string, storage.Backend, func()) {
			srv := s3test.Start(t)
			b := srv.NewBackend(t, s3store.Options{})
			// S3 keeps whole seconds, which the backend rounds up: the
			// blobs built a moment ago are made a day old (versitygw
			// reports its files' times).
			age := func() {
				dayAgo := time.Now().Add(-24 * time.Hour)
				files, _ := filepath.Glob(filepath.Join(srv.Dir, b.Bucket(), "blobs", "sha256", "*"))
				for _, f := range files {
					if err := os.Chtimes(f, dayAgo, dayAgo); err != nil {
						t.Fatal(err)
					}
				}
			}
			return srv.Env(b.Bucket()), b, age
		}},
	} {
		t.Run(backend.name, func(t *testing.T) {
			env, store, age := backend.open(t)
			s := startServer(t, env...)
			for _, name := range []string{"hello", "deep"} {
				if _, err := pullAll(http.DefaultClient, "http://"+s.addr, name, "latest"); err != nil {
					t.Fatal(err)
				}
			}
			hello, _ := imageBlobs(t, s.addr, "hello")
			deep, deepManifests := imageBlobs(t, s.addr, "deep")
			forgetImage(t, store, deepManifests)
			age()
			unique := 0
			for d := range deep {
				if !hello[d] {
					unique++
				}
			}
			out := runGC(t, append(env, "NIXPORT_GC_GRACE=0"))
			if !strings.HasPrefix(out, fmt.Sprintf("deleted %d blobs, ", unique)) {
				t.Errorf("nixport gc printed %q, want %d deleted", out, unique)
			}
			for d := range deep {
				_, err := store.StatBlob(t.Context(), digest.Digest(d))
				if gone := errors.Is(err, storage.ErrNotFound); gone == hello[d] {
					t.Errorf("blob %s: gone %v (%v), hello's: %v", d, gone, err, hello[d])
				}
			}
			if _, err := pullAll(http.DefaultClient, "http://"+s.addr, "hello", "latest"); err != nil {
				t.Errorf("hello after the collection: %v", err)
			}
			s.stop(t)
		})
	}
}
