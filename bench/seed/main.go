// Command seed places a large random blob into nixport filesystem storage
// and writes the same bytes as a static file for nginx, so bench/serve.sh
// can compare the registry's blob serving with a static file server on
// equal terms. It is a benchmark fixture, not part of the registry.
package main

import (
	"bytes"
	"context"
	_ "crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

func main() {
	storagePath := flag.String("storage", "", "nixport storage root")
	staticDir := flag.String("static", "", "nginx document root")
	name := flag.String("name", "bench", "repository name in the static path")
	blobMB := flag.Int("blob-mb", 256, "size of the blob in MB")
	flag.Parse()
	if err := seed(*storagePath, *staticDir, *name, *blobMB); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func seed(storagePath, staticDir, name string, blobMB int) error {
	store, err := filesystem.New(storagePath, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	// Incompressible bytes, as a gzipped layer is.
	blob := make([]byte, blobMB<<20)
	rand.NewChaCha8([32]byte{1}).Read(blob)
	d := digest.FromBytes(blob)
	if _, err := storage.PutBlob(context.Background(), store, v1.MediaTypeImageLayerGzip, d, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		return err
	}
	p := filepath.Join(staticDir, "v2", filepath.FromSlash(name), "blobs", d.String())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, blob, 0o644); err != nil {
		return err
	}
	fmt.Printf("blob=%s\n", d)
	return nil
}
