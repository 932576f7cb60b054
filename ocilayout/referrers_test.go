package ocilayout

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// addReferrer adds to the layout in dir an SBOM artifact whose subject is
// the manifest subject (digest and size) and lists it in index.json, as
// tools that write layouts with referrers do; it returns the artifact's
// descriptor.
func addReferrer(t *testing.T, dir string, subject v1.Descriptor, content string) v1.Descriptor {
	t.Helper()
	write := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		testkit.WriteFile(t, filepath.Join(dir, "blobs", "sha256", d.Encoded()), data)
		return d
	}
	write(manifest.EmptyConfig.Bytes)
	sbom := []byte(content)
	layer := v1.Descriptor{MediaType: "application/spdx+json", Digest: write(sbom), Size: int64(len(sbom))}
	art, desc, err := manifest.Artifact("application/spdx+json", layer, subject)
	if err != nil {
		t.Fatal(err)
	}
	write(art.Bytes)
	desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": "sbom"}
	editIndex(func(idx map[string]any) {
		var d map[string]any
		data, _ := json.Marshal(desc)
		json.Unmarshal(data, &d)
		idx["manifests"] = append(idx["manifests"].([]any), d)
	})(t, dir)
	desc.Annotations = nil
	return desc
}

// indexManifests lists the descriptors of index.json.
func indexManifests(t *testing.T, dir string) []v1.Descriptor {
	t.Helper()
	var idx v1.Index
	data, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Manifests
}

// TestIngestKeepsReferrers: referrers a layout carries (manifests in
// index.json with a subject) are stored and listed under their subject,
// and are not taken for platforms of the image.
func TestIngestKeepsReferrers(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		args      []string
		mediaType string
	}{
		{"one image", nil, v1.MediaTypeImageManifest},
		{"two platforms", []string{"-platforms=amd64,arm64"}, v1.MediaTypeImageIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _ := testkit.NewFSStore(t)
			dir := testkit.GenLayout(t, bin, tc.args...)
			images := indexManifests(t, dir)
			var arts []v1.Descriptor
			for i, img := range images {
				subject := v1.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: img.Size}
				arts = append(arts, addReferrer(t, dir, subject, `{"spdxVersion":"SPDX-2.3","n":`+string(rune('0'+i))+`}`))
			}
			m, err := ingestAll(ctx, store, dir, testkit.QuietLog())
			if err != nil {
				t.Fatal(err)
			}
			info := m[manifest.OCI]
			if len(m) != 1 || info.MediaType != tc.mediaType {
				t.Fatalf("manifests %+v, want one %s", m, tc.mediaType)
			}
			if len(images) == 1 && info.Digest != images[0].Digest {
				t.Errorf("served %s, want the image %s", info.Digest, images[0].Digest)
			}
			if len(images) > 1 {
				var idx v1.Index
				json.Unmarshal(testkit.ReadBlob(t, store, info), &idx)
				if len(idx.Manifests) != len(images) {
					t.Errorf("the image index lists %d manifests, want the %d platforms only", len(idx.Manifests), len(images))
				}
			}
			for i, img := range images {
				list, err := referrers.List(ctx, store, img.Digest, "")
				if err != nil {
					t.Fatal(err)
				}
				if len(list) != 1 || list[0].Digest != arts[i].Digest || list[0].ArtifactType != "application/spdx+json" || list[0].Size != arts[i].Size {
					t.Errorf("referrers of %s: %+v, want %+v", img.Digest, list, arts[i])
				}
				var art v1.Manifest
				json.Unmarshal(testkit.ReadBlob(t, store, storage.BlobInfo{Digest: arts[i].Digest}), &art)
				if art.Subject == nil || art.Subject.Digest != img.Digest || len(art.Layers) != 1 {
					t.Fatalf("stored artifact %+v", art)
				}
				testkit.ReadBlob(t, store, storage.BlobInfo{Digest: art.Layers[0].Digest})
			}
		})
	}
}

// TestIngestRejectsForeignReferrers: a layout cannot attach a referrer to
// an image it does not hold, nor be referrers alone; nothing is stored.
func TestIngestRejectsForeignReferrers(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"subject elsewhere", func(t *testing.T, dir string) {
			other := digest.FromString("another registry's image")
			addReferrer(t, dir, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: other, Size: 100}, "{}")
		}, "which is no manifest of the layout"},
		{"subject of another size", func(t *testing.T, dir string) {
			img := indexManifests(t, dir)[0]
			addReferrer(t, dir, v1.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: img.Size + 1}, "{}")
		}, "but it is"},
		{"a layer as subject", func(t *testing.T, dir string) {
			_, m := layoutManifest(t, dir)
			addReferrer(t, dir, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: m.Layers[0].Digest, Size: m.Layers[0].Size}, "{}")
		}, "which is no manifest of the layout"},
		{"referrers without their image", func(t *testing.T, dir string) {
			img := indexManifests(t, dir)[0]
			addReferrer(t, dir, v1.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: img.Size}, "{}")
			editIndex(func(idx map[string]any) {
				ms := idx["manifests"].([]any)
				idx["manifests"] = ms[1:]
			})(t, dir)
		}, "no manifest of the layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, storeDir := testkit.NewFSStore(t)
			before := testkit.ListTree(t, storeDir)
			dir := testkit.GenLayout(t, bin)
			tc.edit(t, dir)
			_, err := ingestAll(ctx, store, dir, testkit.QuietLog())
			e := testkit.WantCode(t, err, errcode.BuildFailed, tc.want)
			if !strings.HasPrefix(e.Message, "invalid OCI image layout: ") {
				t.Errorf("message %q", e.Message)
			}
			if after := testkit.ListTree(t, storeDir); !slices.Equal(before, after) {
				t.Errorf("a rejected layout changed storage:\n%v\n%v", before, after)
			}
		})
	}
}
