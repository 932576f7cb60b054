package storagetest

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

// clockSlack is how far a backend's clock (an emulator's, a server's in
// whole seconds) may be from the test's when the suite checks a blob's
// Modified.
const clockSlack = 2 * time.Second

// runCollectTests checks what the garbage collector uses: ListBlobs,
// RefreshBlob and DeleteBlob. Backends must refresh on every RefreshBlob
// (a GCS backend with a refresh slack of a nanosecond), since the suite
// cannot wait out a longer one.
func runCollectTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("ListBlobs", func(t *testing.T) {
		b := newBackend(t)
		if got := listBlobs(t, b); len(got) != 0 {
			t.Fatalf("ListBlobs of an empty backend = %v, want nothing", got)
		}
		start := time.Now()
		want := map[digest.Digest]int64{}
		for i, content := range [][]byte{[]byte("one"), randomBytes(7, 70_000), nil} {
			info := putBlob(t, b, []string{layerType, configType, ""}[i], content)
			want[info.Digest] = info.Size
		}
		// Objects are not blobs.
		if err := b.PutObject(t.Context(), "tags/x/_/latest", []byte("not a blob")); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		end := time.Now()
		got := listBlobs(t, b)
		sizes := map[digest.Digest]int64{}
		for d, st := range got {
			sizes[d] = st.Size
			if st.Modified.Before(start.Add(-clockSlack)) || st.Modified.After(end.Add(clockSlack)) {
				t.Errorf("blob %s: Modified %s, not between %s and %s", d, st.Modified, start, end)
			}
		}
		if !maps.Equal(sizes, want) {
			t.Errorf("ListBlobs sizes = %v, want %v", sizes, want)
		}
		// Stopping early is no error.
		for _, err := range b.ListBlobs(t.Context()) {
			if err != nil {
				t.Fatalf("ListBlobs: %v", err)
			}
			break
		}
	})

	t.Run("DeleteBlob", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("a blob to delete")
		gone := putBlob(t, b, layerType, content)
		kept := putBlob(t, b, configType, []byte("a blob to keep"))

		// Written after the cutoff: kept.
		err := b.DeleteBlob(t.Context(), gone.Digest, time.Now().Add(-time.Hour))
		if !errors.Is(err, storage.ErrBlobRecent) {
			t.Fatalf("DeleteBlob of a blob written after the cutoff = %v, want ErrBlobRecent", err)
		}
		requireBlob(t, b, gone, content)

		// Written before it: deleted.
		if err := b.DeleteBlob(t.Context(), gone.Digest, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("DeleteBlob: %v", err)
		}
		requireNoBlob(t, b, gone.Digest)
		if got := listBlobs(t, b); len(got) != 1 || got[kept.Digest].Size != kept.Size {
			t.Errorf("ListBlobs after DeleteBlob = %v, want only %s", got, kept.Digest)
		}
		requireBlob(t, b, kept, []byte("a blob to keep"))
		if err := b.DeleteBlob(t.Context(), gone.Digest, time.Now().Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("DeleteBlob of a deleted blob = %v, want ErrNotFound", err)
		}
		if info, err := b.RefreshBlob(t.Context(), gone.Digest); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RefreshBlob of a deleted blob = %+v, %v, want ErrNotFound", info, err)
		}
		if err := b.DeleteBlob(t.Context(), "sha256:nothex", time.Now()); err == nil {
			t.Error("DeleteBlob of an invalid digest succeeded")
		}

		// Stored again, whole, with its media type.
		again := putBlob(t, b, layerType, content)
		if again != gone {
			t.Errorf("PutBlob after DeleteBlob = %+v, want %+v", again, gone)
		}
		requireBlob(t, b, gone, content)
	})

	t.Run("RefreshBlob", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("a blob reused by a later build")
		want := putBlob(t, b, layerType, content)
		start := time.Now()
		got, err := b.RefreshBlob(t.Context(), want.Digest)
		if err != nil {
			t.Fatalf("RefreshBlob: %v", err)
		}
		if got != want {
			t.Errorf("RefreshBlob = %+v, want %+v", got, want)
		}
		if m := listBlobs(t, b)[want.Digest].Modified; m.Before(start.Add(-clockSlack / 2)) {
			t.Errorf("Modified after RefreshBlob = %s, before the refresh began (%s)", m, start)
		}
		// A collection that began before the refresh keeps the blob.
		if err := b.DeleteBlob(t.Context(), want.Digest, start); !errors.Is(err, storage.ErrBlobRecent) {
			t.Errorf("DeleteBlob of a blob refreshed after the cutoff = %v, want ErrBlobRecent", err)
		}
		requireBlob(t, b, want, content)
		if _, err := b.RefreshBlob(t.Context(), digest.FromString("never stored")); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("RefreshBlob of a blob never stored = %v, want ErrNotFound", err)
		}
	})

	t.Run("CommitRefreshes", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("a layer built again, to the same bytes")
		want := putBlob(t, b, layerType, content)
		start := time.Now()
		if got := putBlob(t, b, layerType, content); got != want {
			t.Errorf("PutBlob of a stored blob = %+v, want %+v", got, want)
		}
		if err := b.DeleteBlob(t.Context(), want.Digest, start); !errors.Is(err, storage.ErrBlobRecent) {
			t.Errorf("DeleteBlob of a blob committed again after the cutoff = %v, want ErrBlobRecent", err)
		}
		requireBlob(t, b, want, content)
	})
}

// listBlobs returns what ListBlobs yields, by digest, failing on an error
// or a digest yielded twice.
func listBlobs(t *testing.T, b storage.Backend) map[digest.Digest]storage.BlobStat {
	t.Helper()
	got := map[digest.Digest]storage.BlobStat{}
	for st, err := range b.ListBlobs(t.Context()) {
		if err != nil {
			t.Fatalf("ListBlobs: %v", err)
		}
		if _, dup := got[st.Digest]; dup {
			t.Errorf("ListBlobs yields %s twice", st.Digest)
		}
		got[st.Digest] = st
	}
	return got
}
