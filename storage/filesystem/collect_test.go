package filesystem_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

// TestDeleteBlobRacesWriters deletes an old blob while another goroutine
// refreshes it, or commits it again, many times over: whatever the order,
// a writer told the blob is stored finds it there afterwards, whole and
// with its media type, and nothing is left in tmp/.
func TestDeleteBlobRacesWriters(t *testing.T) {
	const mediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
	content := []byte("a layer a build reuses while a collection deletes it")
	dgst := digest.FromBytes(content)
	want := storage.BlobInfo{Digest: dgst, Size: int64(len(content)), MediaType: mediaType}
	for _, writer := range []struct {
		name  string
		write func(storage.Backend) error
	}{
		{"refresh", func(b storage.Backend) error {
			_, err := b.RefreshBlob(t.Context(), dgst)
			return err
		}},
		{"commit", func(b storage.Backend) error {
			_, err := storage.PutBlob(t.Context(), b, mediaType, dgst, int64(len(content)), bytes.NewReader(content))
			return err
		}},
	} {
		t.Run(writer.name, func(t *testing.T) {
			dir := t.TempDir()
			b := newBackend(t, dir)
			blobFile := filepath.Join(dir, "blobs", "sha256", dgst.Encoded())
			deleted, kept := 0, 0
			for range 300 {
				if _, err := storage.PutBlob(t.Context(), b, mediaType, dgst, int64(len(content)), bytes.NewReader(content)); err != nil {
					t.Fatal(err)
				}
				hourAgo := time.Now().Add(-time.Hour)
				if err := os.Chtimes(blobFile, hourAgo, hourAgo); err != nil {
					t.Fatal(err)
				}
				cutoff := time.Now().Add(-time.Minute)
				var wg sync.WaitGroup
				var deleteErr, writeErr error
				wg.Go(func() { deleteErr = b.DeleteBlob(t.Context(), dgst, cutoff) })
				wg.Go(func() { writeErr = writer.write(b) })
				wg.Wait()
				switch {
				case deleteErr == nil:
					deleted++
				case errors.Is(deleteErr, storage.ErrBlobRecent):
					kept++
				default:
					t.Fatalf("DeleteBlob: %v", deleteErr)
				}
				switch {
				case writeErr == nil:
					info, err := b.StatBlob(t.Context(), dgst)
					if err != nil || info != want {
						t.Fatalf("after the %s succeeded and DeleteBlob returned %v: StatBlob = %+v, %v; want %+v", writer.name, deleteErr, info, err, want)
					}
				case errors.Is(writeErr, storage.ErrNotFound) && writer.name == "refresh":
					// Deleted first: the writer would store it again.
				default:
					t.Fatalf("%s: %v", writer.name, writeErr)
				}
				if _, err := b.StatBlob(t.Context(), dgst); err == nil {
					if err := b.DeleteBlob(t.Context(), dgst, time.Now().Add(time.Hour)); err != nil {
						t.Fatalf("clearing the blob: %v", err)
					}
				}
			}
			t.Logf("%d rounds deleted the blob, %d kept it", deleted, kept)
			if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) > 0 {
				t.Errorf("left in tmp/: %v", left)
			}
		})
	}
}

// TestDeleteBlobRemovesTypeFile: a deleted blob leaves no type file, and
// a blob stored again without a media type does not inherit the old one.
func TestDeleteBlobRemovesTypeFile(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	content := []byte("typed")
	info, err := storage.PutBlob(t.Context(), b, "application/vnd.oci.image.config.v1+json", "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteBlob(t.Context(), info.Digest, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("blobs/sha256 after DeleteBlob: %v, %v; want it empty", entries, err)
	}
	again, err := storage.PutBlob(t.Context(), b, "", "", -1, bytes.NewReader(content))
	if err != nil || again.MediaType != "" {
		t.Errorf("stored again without a type: %+v, %v", again, err)
	}
}
