package push

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/blobgc"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// TestCollectedWithTheRepositories: the blob collector keeps everything a
// push repository links, and takes an image's blobs once its manifest and
// links are deleted, on the next run, while the other image stays whole.
func TestCollectedWithTheRepositories(t *testing.T) {
	f := newFixture(t, Options{})
	push := func(repo, seed string) (digest.Digest, []digest.Digest) {
		body := f.pushImage(t, repo, seed, nil)
		res, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, body, "", []string{"latest"})
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		mustUnmarshal(t, body, &m)
		return res.Digest, []digest.Digest{res.Digest, m.Config.Digest, m.Layers[0].Digest}
	}
	_, kept := push("local/a", "a")
	gone, dropped := push("local/b", "b")
	opts := blobgc.Options{Storage: f.store, Grace: time.Nanosecond, Log: testkit.QuietLog(),
		Roots: map[string]blobgc.Roots{Prefix: Roots{Store: f.store}}}

	res, err := blobgc.Run(ctx, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 {
		t.Fatalf("a collection with every image linked deleted %d blobs", res.Deleted)
	}

	// local/b's image goes: its manifest (and so its tag) and its links.
	if err := f.reg.DeleteManifest(ctx, "local/b", gone); err != nil {
		t.Fatal(err)
	}
	for _, d := range dropped[1:] {
		if err := f.reg.DeleteBlob(ctx, "local/b", d); err != nil {
			t.Fatal(err)
		}
	}
	res, err = blobgc.Run(ctx, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != int64(len(dropped)) {
		t.Errorf("deleted %d blobs, want local/b's %d", res.Deleted, len(dropped))
	}
	for _, d := range dropped {
		if _, err := f.store.StatBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("local/b's blob %s is still stored (%v)", d, err)
		}
	}
	for _, d := range kept {
		if _, err := f.store.StatBlob(ctx, d); err != nil {
			t.Errorf("local/a's blob %s: %v", d, err)
		}
	}
	if _, err := f.reg.Tag(ctx, "local/a", "latest"); err != nil {
		t.Errorf("local/a:latest after the collection: %v", err)
	}
}

// TestMountRefreshesTheBlob: mounting an old blob refreshes it, so a
// collection running meanwhile keeps it though nothing linked it yet.
func TestMountRefreshesTheBlob(t *testing.T) {
	store, dir := testkit.NewFSStore(t)
	reg, err := New(Options{Storage: store, Namespaces: []string{"local"}, Log: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	data := []byte("a layer nobody links yet")
	info, err := storage.PutBlob(ctx, store, "application/octet-stream", digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// Written a day ago (the filesystem backend keeps a blob's last write
	// or refresh as its file's time).
	dayAgo := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "blobs", "sha256", info.Digest.Encoded()), dayAgo, dayAgo); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := reg.Mount(ctx, "local/app", "", info.Digest); err != nil || !ok {
		t.Fatalf("Mount = %v, %v", ok, err)
	}
	// A collection that began an hour ago, before the mount, may not take
	// it: the collector's own check as it deletes.
	if err := store.DeleteBlob(ctx, info.Digest, time.Now().Add(-time.Hour)); !errors.Is(err, storage.ErrBlobRecent) {
		t.Errorf("DeleteBlob of a just-mounted blob: %v, want ErrBlobRecent", err)
	}
}

// TestPushesDuringCollections: images pushed while collections run, with
// no grace at all, lose nothing: a write is recorded before it begins, a
// blob is refreshed when it is mounted or linked, and the collector
// judges a blob's time again as it deletes.
func TestPushesDuringCollections(t *testing.T) {
	f := newFixture(t, Options{})
	opts := blobgc.Options{Storage: f.store, Grace: time.Nanosecond, Log: testkit.QuietLog(),
		Roots: map[string]blobgc.Roots{Prefix: Roots{Store: f.store}}}
	done := make(chan struct{})
	collections := make(chan int, 1)
	go func() {
		n := 0
		defer func() { collections <- n }()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := blobgc.Run(ctx, opts, false); err != nil && !errors.Is(err, blobgc.ErrRunning) {
				t.Error(err)
				return
			}
			n++
		}
	}()
	type pushed struct {
		repo  string
		blobs []digest.Digest
	}
	var all []pushed
	for i := range 12 {
		repo := fmt.Sprintf("local/app%d", i%3)
		seed := fmt.Sprintf("s%d", i%4) // repeated seeds: mounts and re-links of blobs that exist
		body := f.pushImage(t, repo, seed, nil)
		res, err := f.reg.PutManifest(ctx, repo, v1.MediaTypeImageManifest, body, "", []string{fmt.Sprintf("v%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		mustUnmarshal(t, body, &m)
		all = append(all, pushed{repo, []digest.Digest{res.Digest, m.Config.Digest, m.Layers[0].Digest}})
	}
	close(done)
	if n := <-collections; n == 0 {
		t.Fatal("no collection ran during the pushes")
	}
	// One more collection after every push: what is linked stays.
	if _, err := blobgc.Run(ctx, opts, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		for _, d := range p.blobs {
			if _, err := f.store.StatBlob(ctx, d); err != nil {
				t.Errorf("%s's blob %s was lost: %v", p.repo, d, err)
			}
		}
	}
}
