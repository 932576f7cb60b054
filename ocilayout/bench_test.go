package ocilayout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/testkit"
)

// writeBenchLayout writes an OCI layout of one image with the given layers
// (contents) into dir, replacing what was there.
func writeBenchLayout(b *testing.B, dir string, layers [][]byte) {
	b.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		b.Fatal(err)
	}
	put := func(mediaType string, data []byte) v1.Descriptor {
		sum := sha256.Sum256(data)
		if err := os.WriteFile(filepath.Join(blobs, hex.EncodeToString(sum[:])), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return v1.Descriptor{MediaType: mediaType, Digest: digest.NewDigestFromBytes(digest.SHA256, sum[:]), Size: int64(len(data))}
	}
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest}
	m.SchemaVersion = 2
	m.Config = put(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	for _, l := range layers {
		m.Layers = append(m.Layers, put(v1.MediaTypeImageLayer, l))
	}
	data, _ := json.Marshal(m)
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{put(v1.MediaTypeImageManifest, data)}}
	idx.SchemaVersion = 2
	data, _ = json.Marshal(idx)
	for name, content := range map[string][]byte{"index.json": data, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestRebuiltLayout ingests a layout of 8 layers of 16 MiB that
// was ingested before with one layer changed, as a CI job rebuilding an
// image does: only the changed layer is hashed and copied.
//
//	go test ./builder -run '^$' -bench IngestRebuiltLayout
func BenchmarkIngestRebuiltLayout(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	layers := make([][]byte, 8)
	for i := range layers {
		layers[i] = make([]byte, 16<<20)
		for j := range layers[i] {
			layers[i][j] = byte(rng.Uint32())
		}
	}
	dir := b.TempDir()
	writeBenchLayout(b, dir, layers)
	store, _ := testkit.NewFSStore(b)
	ctx := context.Background()
	if _, _, err := ingestDir(ctx, store, dir, testkit.QuietLog()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(layers) * len(layers[0])))
	var hashed int
	for b.Loop() {
		b.StopTimer()
		layers[0][0]++ // a new first layer
		writeBenchLayout(b, dir, layers)
		b.StartTimer()
		_, stats, err := ingestDir(ctx, store, dir, testkit.QuietLog())
		if err != nil {
			b.Fatal(err)
		}
		hashed += stats.hashed
	}
	b.ReportMetric(float64(hashed)/float64(b.N), "blobs-hashed/op")
}
