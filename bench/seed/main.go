// Command seed places a synthetic image into nixport filesystem storage and
// writes the same bytes as static files for nginx, so bench/serve.sh can
// compare the registry's serving path with a static file server on equal
// terms. It is a benchmark fixture, not part of the registry.
package main

import (
	"bytes"
	"context"
	_ "crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/builder"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

func main() {
	storagePath := flag.String("storage", "", "nixport storage root")
	staticDir := flag.String("static", "", "nginx document root")
	name := flag.String("name", "bench", "repository name")
	blobMB := flag.Int("blob-mb", 256, "size of the large blob in MB")
	flag.Parse()
	if err := seed(*storagePath, *staticDir, *name, *blobMB); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func seed(storagePath, staticDir, name string, blobMB int) error {
	ctx := context.Background()
	store, err := filesystem.New(storagePath, nil)
	if err != nil {
		return err
	}
	// Incompressible bytes, as a gzipped layer is.
	blob := make([]byte, blobMB<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(blob)
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(blob).String() + `"]}}`)

	put := func(mediaType string, data []byte) (storage.BlobInfo, error) {
		info, err := storage.PutBlob(ctx, store, mediaType, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
		if err != nil {
			return info, err
		}
		return info, writeStatic(staticDir, "v2/"+name+"/blobs/"+info.Digest.String(), data)
	}
	layer, err := put(v1.MediaTypeImageLayerGzip, blob)
	if err != nil {
		return err
	}
	cfg, err := put(v1.MediaTypeImageConfig, config)
	if err != nil {
		return err
	}
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: cfg.MediaType, Digest: cfg.Digest, Size: cfg.Size},
		Layers:    []v1.Descriptor{{MediaType: layer.MediaType, Digest: layer.Digest, Size: layer.Size}},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	man, err := storage.PutBlob(ctx, store, v1.MediaTypeImageManifest, digest.FromBytes(mb), int64(len(mb)), bytes.NewReader(mb))
	if err != nil {
		return err
	}
	if err := writeStatic(staticDir, "v2/"+name+"/manifests/latest", mb); err != nil {
		return err
	}
	if err := builder.StoreTag(ctx, store, name, "latest", builder.Manifests{manifest.OCI: man}); err != nil {
		return err
	}
	fmt.Printf("manifest=%s blob=%s\n", man.Digest, layer.Digest)
	return nil
}

func writeStatic(root, rel string, data []byte) error {
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}
