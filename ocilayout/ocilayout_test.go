package ocilayout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// Helpers shared by the tests of the external sources (ingest, command,
// layout, routes, Bazel).

// ingestDir reads the layout's index and ingests it, as the sources do.
func ingestDir(ctx context.Context, store storage.Backend, dir string, log logrus.FieldLogger) (source.Manifests, ingestStats, error) {
	index, err := ReadIndex(dir)
	if err != nil {
		return nil, ingestStats{}, err
	}
	return ingestLayout(ctx, store, dir, index, log)
}

// ingestAll is ingestDir without the counts.
func ingestAll(ctx context.Context, store storage.Backend, dir string, log logrus.FieldLogger) (source.Manifests, error) {
	m, _, err := ingestDir(ctx, store, dir, log)
	return m, err
}

// checkDir checks the layout in dir without storage.
func checkDir(t *testing.T, dir string) (*checkedLayout, error) {
	t.Helper()
	index, err := ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	return checkLayout(context.Background(), dir, index, nil)
}

func TestIngestLayout(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	tests := []struct {
		name      string
		args      []string
		mediaType string
		platforms []string
		blobs     int
	}{
		{"one image", nil, v1.MediaTypeImageManifest, []string{"amd64"}, 5},
		{"two platforms become an index", []string{"-platforms=amd64,arm64"}, v1.MediaTypeImageIndex, []string{"amd64", "arm64"}, 8},
		{"a nested index is served as it is", []string{"-platforms=amd64,arm64", "-index"}, v1.MediaTypeImageIndex, []string{"amd64", "arm64"}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, storeDir := testkit.NewFSStore(t)
			dir := testkit.GenLayout(t, bin, tt.args...)
			ctx := context.Background()
			m, stats, err := ingestDir(ctx, store, dir, testkit.QuietLog())
			if err != nil {
				t.Fatal(err)
			}
			info, ok := m[manifest.OCI]
			if !ok || len(m) != 1 || info.MediaType != tt.mediaType {
				t.Fatalf("manifests %+v, want one of type %s", m, tt.mediaType)
			}
			if got := testkit.CheckStored(t, store, info); !slices.Equal(got, tt.platforms) {
				t.Errorf("platforms %v, want %v", got, tt.platforms)
			}
			if stats.blobs != tt.blobs || stats.copied != tt.blobs || stats.hashed == 0 {
				t.Errorf("stats %+v, want %d blobs all copied, layers hashed", stats, tt.blobs)
			}
			// Again: the same manifests, nothing copied, storage as it was.
			before := testkit.ListTree(t, storeDir)
			m2, stats, err := ingestDir(ctx, store, dir, testkit.QuietLog())
			if err != nil {
				t.Fatal(err)
			}
			if m2[manifest.OCI] != info || stats.copied != 0 || stats.hashed != 0 {
				t.Errorf("second ingest: %+v, %+v; want nothing copied or hashed", m2, stats)
			}
			if after := testkit.ListTree(t, storeDir); !slices.Equal(before, after) {
				t.Errorf("second ingest changed storage:\n%v\n%v", before, after)
			}
		})
	}
}

// layoutEdit damages a good layout in dir.
type layoutEdit func(t *testing.T, dir string)

func editIndex(f func(idx map[string]any)) layoutEdit {
	return func(t *testing.T, dir string) {
		var idx map[string]any
		data, _ := os.ReadFile(filepath.Join(dir, "index.json"))
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatal(err)
		}
		f(idx)
		data, _ = json.Marshal(idx)
		testkit.WriteFile(t, filepath.Join(dir, "index.json"), data)
	}
}

func firstManifest(idx map[string]any) map[string]any {
	return idx["manifests"].([]any)[0].(map[string]any)
}

// layoutManifest reads the manifest of a one-image layout.
func layoutManifest(t *testing.T, dir string) (string, v1.Manifest) {
	t.Helper()
	var idx v1.Index
	data, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	d := idx.Manifests[0].Digest
	var m v1.Manifest
	data, _ = os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()))
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return d.String(), m
}

func TestIngestRejectsCorruptLayouts(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	good := testkit.GenLayout(t, bin)
	manifestDigest, m := layoutManifest(t, good)
	lastLayer := m.Layers[len(m.Layers)-1].Digest.String()
	other := testkit.GenLayout(t, bin, "-platforms=arm64")

	tests := []struct {
		name    string
		args    []string   // layoutgen flags
		edit    layoutEdit // or a change to a good layout
		message []string
	}{
		{name: "bad digest", args: []string{"-corrupt=bad-digest"}, message: []string{"layer 3 of manifest sha256:", "does not match its digest", "content hashes to sha256:"}},
		{name: "missing blob", args: []string{"-corrupt=missing"}, message: []string{"layer 3 of manifest", "is missing"}},
		{name: "truncated blob", args: []string{"-corrupt=truncated"}, message: []string{"layer 3 of manifest", "is truncated"}},
		{name: "manifest bad digest", args: []string{"-corrupt=manifest-digest"}, message: []string{"manifest 1 of index.json", manifestDigest, "does not match its digest"}},
		{name: "bad index.json", args: []string{"-corrupt=bad-index"}, message: []string{"index.json is not an image index", `field "manifests"`}},
		{name: "digest escaping the layout", args: []string{"-corrupt=traversal"}, message: []string{`"sha256:../../../../etc/passwd" is not sha256: and 64 lower-case hex digits`}},
		{name: "index.json not JSON", edit: func(t *testing.T, dir string) { testkit.WriteFile(t, filepath.Join(dir, "index.json"), []byte("{")) }, message: []string{"index.json is not an image index: malformed JSON"}},
		{name: "index.json lists nothing", edit: func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[]}`))
		}, message: []string{"index.json lists no manifest"}},
		{name: "index.json too large", edit: func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, "index.json"), bytes.Repeat([]byte(" "), maxLayoutJSONBytes+1))
		}, message: []string{"index.json is 4194305 bytes, more than 4194304"}},
		{name: "wrong schema version", edit: editIndex(func(idx map[string]any) { idx["schemaVersion"] = 1 }), message: []string{"index.json has schemaVersion 1"}},
		{name: "wrong index media type", edit: editIndex(func(idx map[string]any) { idx["mediaType"] = "text/plain" }), message: []string{`index.json has media type "text/plain"`}},
		{name: "layer named as a manifest", edit: editIndex(func(idx map[string]any) {
			d := firstManifest(idx)
			d["digest"], d["mediaType"] = lastLayer, v1.MediaTypeImageLayerGzip
		}), message: []string{"manifest 1 of index.json", "not an image manifest or index"}},
		{name: "invalid media type", edit: editIndex(func(idx map[string]any) { firstManifest(idx)["mediaType"] = "manifest" }), message: []string{`invalid media type "manifest"`}},
		{name: "descriptor size wrong", edit: editIndex(func(idx map[string]any) { firstManifest(idx)["size"] = 10 }), message: []string{manifestDigest, "is 713 bytes, its descriptor says 10"}},
		{name: "negative size", edit: editIndex(func(idx map[string]any) { firstManifest(idx)["size"] = -1 }), message: []string{"impossible size -1"}},
		{name: "upper-case digest", edit: editIndex(func(idx map[string]any) {
			firstManifest(idx)["digest"] = strings.ToUpper(manifestDigest)
		}), message: []string{"is not sha256: and 64 lower-case hex digits"}},
		{name: "sha512 digest", edit: editIndex(func(idx map[string]any) {
			firstManifest(idx)["digest"] = "sha512:" + strings.Repeat("ab", 64)
		}), message: []string{"is not sha256:"}},
		{name: "two manifests without platforms", edit: editIndex(func(idx map[string]any) {
			idx["manifests"] = append(idx["manifests"].([]any), firstManifest(idx))
		}), message: []string{"index.json lists 2 manifests and manifest 1", "names no platform"}},
		{name: "oci-layout missing", edit: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "oci-layout")) }, message: []string{"oci-layout is missing"}},
		{name: "oci-layout version 2", edit: func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"2.0.0"}`))
		}, message: []string{`imageLayoutVersion "2.0.0"`}},
		{name: "blob is a symlink out of the layout", edit: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(lastLayer, "sha256:"))
			os.Remove(p)
			if err := os.Symlink("/bin/busybox", p); err != nil {
				t.Fatal(err)
			}
		}, message: []string{lastLayer, "cannot be read"}},
		{name: "blob is a FIFO", edit: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(lastLayer, "sha256:"))
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, message: []string{lastLayer, "cannot be read"}},
		{name: "no such directory", edit: func(t *testing.T, dir string) { os.RemoveAll(dir) }, message: []string{"the layout directory cannot be opened"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dir string
			if tt.edit != nil {
				dir = t.TempDir()
				if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
					t.Fatal(err)
				}
				tt.edit(t, dir)
			} else {
				dir = testkit.GenLayout(t, bin, tt.args...)
			}
			// Storage already holds an image that shares blobs with the
			// layout but not the damaged one: a rejected layout must
			// leave storage exactly as it was.
			store, storeDir := testkit.NewFSStore(t)
			if _, err := ingestAll(context.Background(), store, other, testkit.QuietLog()); err != nil {
				t.Fatal(err)
			}
			before := testkit.ListTree(t, storeDir)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := ingestAll(ctx, store, dir, testkit.QuietLog())
			if err == nil {
				t.Fatal("corrupt layout accepted")
			}
			e := testkit.WantCode(t, err, errcode.BuildFailed, append([]string{"invalid OCI image layout: "}, tt.message...)...)
			t.Logf("client sees: %s", e.Message)
			if strings.Contains(e.Message, dir) {
				t.Errorf("message %q shows a host path", e.Message)
			}
			if after := testkit.ListTree(t, storeDir); !slices.Equal(before, after) {
				t.Errorf("storage changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// FuzzIngestIndex feeds index.json and a manifest to the layout checker.
// In the index, @DIGEST@ and @SIZE@ stand for the manifest's digest and
// size, so that the fuzzer reaches the manifest's parser too. Whatever
// the input, checking must not panic, must reject with BUILD_FAILED, and
// must accept only layouts whose every blob is where and what its
// descriptor says.
func FuzzIngestIndex(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzIngestIndex.
	dir := f.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		f.Fatal(err)
	}
	// Two blobs a manifest may name: a config and a layer.
	for _, b := range []string{`{"architecture":"amd64","os":"linux"}`, "layer"} {
		sum := sha256.Sum256([]byte(b))
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", hex.EncodeToString(sum[:])), []byte(b), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, index, manifestData []byte) {
		sum := sha256.Sum256(manifestData)
		mHex := hex.EncodeToString(sum[:])
		mPath := filepath.Join(dir, "blobs", "sha256", mHex)
		index = bytes.ReplaceAll(index, []byte("@DIGEST@"), []byte("sha256:"+mHex))
		index = bytes.ReplaceAll(index, []byte("@SIZE@"), []byte(fmt.Sprint(len(manifestData))))
		if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mPath, manifestData, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(mPath)
		l, err := checkDir(t, dir)
		if err != nil {
			if e, ok := errcode.As(err); !ok || e.Code != errcode.BuildFailed || !strings.HasPrefix(e.Message, "invalid OCI image layout: ") {
				t.Fatalf("error %v is not a BUILD_FAILED layout error", err)
			}
			return
		}
		defer l.close()
		if len(l.top) == 0 || len(l.order) != len(l.blobs) {
			t.Fatalf("accepted layout: %d top, %d ordered, %d blobs", len(l.top), len(l.order), len(l.blobs))
		}
		for _, b := range l.order {
			if !validSHA256(string(b.digest)) {
				t.Fatalf("accepted digest %q", b.digest)
			}
			data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", b.digest.Encoded()))
			if err != nil || int64(len(data)) != b.size || sha256hex(data) != b.digest.Encoded() {
				t.Fatalf("accepted blob %s (size %d) that is not in the layout: %v", b.digest, b.size, err)
			}
		}
		if len(l.top) > 1 {
			if _, err := platformIndex(l.top); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func sha256hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestIngestTrustsStoredBlobs: a blob storage already holds is not hashed
// again, since storage's copy is what is served; its file must still be in
// the layout with the descriptor's size, and the descriptor must agree
// with storage on the size.
func TestIngestTrustsStoredBlobs(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	good := testkit.GenLayout(t, bin)
	_, m := layoutManifest(t, good)
	layer := m.Layers[0]
	layerPath := func(dir string) string {
		return filepath.Join(dir, "blobs", "sha256", layer.Digest.Encoded())
	}
	// withManifest points a layout at a new manifest made by change.
	withManifest := func(change func(*v1.Manifest)) layoutEdit {
		return func(t *testing.T, dir string) {
			_, m := layoutManifest(t, dir)
			change(&m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			testkit.WriteFile(t, filepath.Join(dir, "blobs", "sha256", hex.EncodeToString(sum[:])), data)
			editIndex(func(idx map[string]any) {
				d := firstManifest(idx)
				d["digest"], d["size"] = "sha256:"+hex.EncodeToString(sum[:]), len(data)
			})(t, dir)
		}
	}
	tests := []struct {
		name    string
		edit    layoutEdit
		message string // empty: accepted
	}{
		{"held layer rewritten with the same size: storage's copy serves", func(t *testing.T, dir string) {
			testkit.WriteFile(t, layerPath(dir), bytes.Repeat([]byte{'x'}, int(layer.Size)))
		}, ""},
		{"held layer missing", func(t *testing.T, dir string) { os.Remove(layerPath(dir)) }, "is missing"},
		{"held layer truncated", func(t *testing.T, dir string) { testkit.WriteFile(t, layerPath(dir), []byte("x")) }, "is truncated"},
		{"descriptor disagrees with storage on the size", withManifest(func(m *v1.Manifest) {
			m.Layers[0].Size++
		}), "but the blob of that digest is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, storeDir := testkit.NewFSStore(t)
			ctx := context.Background()
			if _, err := ingestAll(ctx, store, good, testkit.QuietLog()); err != nil {
				t.Fatal(err)
			}
			// The layer, held a day: reused, it must be refreshed, so
			// that a blob collection under way keeps it.
			dayAgo := time.Now().Add(-24 * time.Hour)
			if err := os.Chtimes(filepath.Join(storeDir, "blobs", "sha256", layer.Digest.Encoded()), dayAgo, dayAgo); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			tt.edit(t, dir)
			_, stats, err := ingestDir(ctx, store, dir, testkit.QuietLog())
			if tt.message != "" {
				testkit.WantCode(t, err, errcode.BuildFailed, tt.message)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if stats.hashed != 0 {
				t.Errorf("%d blobs hashed, want 0", stats.hashed)
			}
			info, err := store.StatBlob(ctx, layer.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(testkit.ReadBlob(t, store, info)); got != layer.Digest {
				t.Errorf("stored layer hashes to %s", got)
			}
			for st, err := range store.ListBlobs(ctx) {
				if err == nil && st.Digest == layer.Digest && st.Modified.Before(start) {
					t.Errorf("the held layer was last refreshed at %s, before the ingest began", st.Modified)
				}
			}
		})
	}
}
