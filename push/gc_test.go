package push

import (
	"bytes"
	"errors"
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
	f := newFixture(t, Options{})
	data := []byte("a layer nobody links yet")
	info, err := storage.PutBlob(ctx, f.store, "application/octet-stream", digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, ok, err := f.reg.Mount(ctx, "local/app", "", info.Digest); err != nil || !ok {
		t.Fatalf("Mount = %v, %v", ok, err)
	}
	// A blob refreshed at or after before survives a delete with that
	// cutoff: the collector's own check.
	if err := f.store.DeleteBlob(ctx, info.Digest, before.Add(-time.Second)); !errors.Is(err, storage.ErrBlobRecent) {
		t.Errorf("DeleteBlob of a just-mounted blob: %v, want ErrBlobRecent", err)
	}
}
