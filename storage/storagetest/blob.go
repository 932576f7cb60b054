package storagetest

import (
	"bytes"
	"context"
	_ "crypto/sha256" // go-digest panics unless sha256 is linked in
	"crypto/sha512"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

const (
	layerType  = "application/vnd.oci.image.layer.v1.tar+gzip"
	configType = "application/vnd.oci.image.config.v1+json"
)

func runBlobTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("PutBlobStatOpen", func(t *testing.T) {
		tests := []struct {
			name      string
			content   []byte
			mediaType string
		}{
			{"text", []byte("hello, nixport\n"), configType},
			{"binary", randomBytes(1, 100_000), layerType},
			{"empty", nil, layerType},
			{"untyped", []byte("no media type"), ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := newBackend(t)
				want := storage.BlobInfo{Digest: digest.FromBytes(tt.content), Size: int64(len(tt.content)), MediaType: tt.mediaType}
				got, err := storage.PutBlob(t.Context(), b, tt.mediaType, want.Digest, want.Size, bytes.NewReader(tt.content))
				if err != nil {
					t.Fatalf("PutBlob: %v", err)
				}
				if got != want {
					t.Errorf("PutBlob = %+v, want %+v", got, want)
				}
				requireBlob(t, b, want, tt.content)
			})
		}
	})

	t.Run("WriterInChunks", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(2, 300_000)
		w, err := b.NewBlobWriter(t.Context(), layerType)
		if err != nil {
			t.Fatalf("NewBlobWriter: %v", err)
		}
		for chunk := range slices.Chunk(content, 70_001) {
			if _, err := w.Write(chunk); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		// No expectations: the writer reports what it computed.
		got, err := w.Commit(t.Context(), "", -1)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		want := storage.BlobInfo{Digest: digest.FromBytes(content), Size: int64(len(content)), MediaType: layerType}
		if got != want {
			t.Errorf("Commit = %+v, want %+v", got, want)
		}
		requireBlob(t, b, want, content)
	})

	t.Run("CommitRejects", func(t *testing.T) {
		content := []byte("the real content")
		right := digest.FromBytes(content)
		size := int64(len(content))
		sha512Digest := digest.NewDigestFromBytes(digest.SHA512, sha512Sum(content))
		tests := []struct {
			name         string
			expected     digest.Digest
			expectedSize int64
			mismatch     bool // the error must wrap storage.ErrDigestMismatch
		}{
			{"wrong digest", digest.FromString("other content"), size, true},
			{"wrong digest, size unchecked", digest.FromString("other content"), -1, true},
			{"wrong size", right, size + 1, true},
			{"wrong size, digest unchecked", "", size - 1, true},
			{"both wrong", digest.FromString("x"), 1, true},
			{"unsupported algorithm", sha512Digest, size, false},
			{"malformed digest", "sha256:not-hex", size, false},
			{"digest without algorithm", digest.Digest(right.Encoded()), size, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := newBackend(t)
				w, err := b.NewBlobWriter(t.Context(), layerType)
				if err != nil {
					t.Fatalf("NewBlobWriter: %v", err)
				}
				if _, err := w.Write(content); err != nil {
					t.Fatalf("Write: %v", err)
				}
				_, err = w.Commit(t.Context(), tt.expected, tt.expectedSize)
				if err == nil {
					t.Fatalf("Commit(%q, %d) succeeded, want an error", tt.expected, tt.expectedSize)
				}
				if tt.mismatch && !errors.Is(err, storage.ErrDigestMismatch) {
					t.Errorf("Commit error = %v, want one wrapping ErrDigestMismatch", err)
				}
				if err := w.Cancel(); err != nil {
					t.Errorf("Cancel after a failed Commit: %v", err)
				}
				requireNoBlob(t, b, right)
				// The failure left nothing in the way of a correct write.
				putBlob(t, b, layerType, content)
			})
		}
	})

	t.Run("CommitWithCancelledContext", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("never stored")
		w, err := b.NewBlobWriter(t.Context(), layerType)
		if err != nil {
			t.Fatalf("NewBlobWriter: %v", err)
		}
		if _, err := w.Write(content); err != nil {
			t.Fatalf("Write: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := w.Commit(ctx, "", -1); err == nil {
			t.Fatal("Commit with a cancelled context succeeded")
		}
		w.Cancel()
		requireNoBlob(t, b, digest.FromBytes(content))
	})

	t.Run("Cancel", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("cancelled")
		w, err := b.NewBlobWriter(t.Context(), layerType)
		if err != nil {
			t.Fatalf("NewBlobWriter: %v", err)
		}
		if _, err := w.Write(content); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := w.Cancel(); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		requireNoBlob(t, b, digest.FromBytes(content))
		if err := w.Cancel(); err != nil {
			t.Errorf("second Cancel: %v", err)
		}
		if _, err := w.Commit(t.Context(), "", -1); err == nil {
			t.Error("Commit after Cancel succeeded")
		}
		requireNoBlob(t, b, digest.FromBytes(content))
	})

	t.Run("CancelAfterCommit", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("committed, then cancelled")
		w, err := b.NewBlobWriter(t.Context(), configType)
		if err != nil {
			t.Fatalf("NewBlobWriter: %v", err)
		}
		if _, err := w.Write(content); err != nil {
			t.Fatalf("Write: %v", err)
		}
		info, err := w.Commit(t.Context(), digest.FromBytes(content), int64(len(content)))
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if err := w.Cancel(); err != nil {
			t.Errorf("Cancel after Commit: %v", err)
		}
		requireBlob(t, b, info, content)
	})

	t.Run("CommitExisting", func(t *testing.T) {
		b := newBackend(t)
		content := []byte("stored twice")
		first := putBlob(t, b, layerType, content)
		// Same bytes, another media type: the stored blob stays as it was.
		second, err := storage.PutBlob(t.Context(), b, configType, first.Digest, first.Size, bytes.NewReader(content))
		if err != nil {
			t.Fatalf("second PutBlob: %v", err)
		}
		if second.Digest != first.Digest || second.Size != first.Size {
			t.Errorf("second PutBlob = %+v, want digest %s and size %d", second, first.Digest, first.Size)
		}
		requireBlob(t, b, first, content)
	})

	t.Run("ConcurrentWritersOfOneBlob", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(3, 1<<20)
		want := storage.BlobInfo{Digest: digest.FromBytes(content), Size: int64(len(content)), MediaType: layerType}
		const writers = 8
		errs := make([]error, writers)
		infos := make([]storage.BlobInfo, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				<-start
				infos[i], errs[i] = storage.PutBlob(t.Context(), b, layerType, want.Digest, want.Size, onlyReader{bytes.NewReader(content)})
			})
		}
		close(start)
		wg.Wait()
		for i := range writers {
			if errs[i] != nil {
				t.Errorf("writer %d: %v", i, errs[i])
			} else if infos[i].Digest != want.Digest || infos[i].Size != want.Size {
				t.Errorf("writer %d got %+v, want %+v", i, infos[i], want)
			}
		}
		requireBlob(t, b, want, content)
	})

	t.Run("LargeBlobStreamed", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(4, 20<<20)
		want := storage.BlobInfo{Digest: digest.FromBytes(content), Size: int64(len(content)), MediaType: layerType}
		w, err := b.NewBlobWriter(t.Context(), layerType)
		if err != nil {
			t.Fatalf("NewBlobWriter: %v", err)
		}
		// Hide bytes.Reader's WriteTo so the writer sees many small writes,
		// as it does when the builder streams a layer.
		if _, err := io.CopyBuffer(w, onlyReader{bytes.NewReader(content)}, make([]byte, 64<<10)); err != nil {
			w.Cancel()
			t.Fatalf("streaming: %v", err)
		}
		got, err := w.Commit(t.Context(), want.Digest, want.Size)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if got != want {
			t.Errorf("Commit = %+v, want %+v", got, want)
		}
		requireBlob(t, b, want, content)

		r, _, err := b.OpenBlob(t.Context(), want.Digest)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		tail := make([]byte, 1000)
		if _, err := r.Seek(-1000, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, tail); err != nil || !bytes.Equal(tail, content[len(content)-1000:]) {
			t.Errorf("the last 1000 bytes: %v, or they differ", err)
		}
	})

	t.Run("MissingBlob", func(t *testing.T) {
		b := newBackend(t)
		requireNoBlob(t, b, digest.FromString("never stored"))
	})

	t.Run("InvalidDigest", func(t *testing.T) {
		b := newBackend(t)
		for _, dgst := range []digest.Digest{
			"",
			"sha256",
			"sha256:",
			"sha256:../../etc/passwd",
			"sha256:ABCDEF",
			digest.Digest("sha256:" + digest.FromString("x").Encoded() + "/.."),
			digest.Digest(digest.FromString("x").Encoded()),
		} {
			if _, err := b.StatBlob(t.Context(), dgst); err == nil {
				t.Errorf("StatBlob(%q) succeeded", dgst)
			}
			if rc, _, err := b.OpenBlob(t.Context(), dgst); err == nil {
				rc.Close()
				t.Errorf("OpenBlob(%q) succeeded", dgst)
			}
		}
	})
}

// putBlob stores content, checking the result, and returns its info.
func putBlob(t *testing.T, b storage.Backend, mediaType string, content []byte) storage.BlobInfo {
	t.Helper()
	info, err := storage.PutBlob(t.Context(), b, mediaType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
	if err != nil {
		t.Fatalf("PutBlob: %v", err)
	}
	return info
}

// requireBlob checks that StatBlob and OpenBlob agree with want and that the
// blob holds content.
func requireBlob(t *testing.T, b storage.Backend, want storage.BlobInfo, content []byte) {
	t.Helper()
	info, err := b.StatBlob(t.Context(), want.Digest)
	if err != nil {
		t.Fatalf("StatBlob: %v", err)
	}
	if info != want {
		t.Errorf("StatBlob = %+v, want %+v", info, want)
	}
	rc, info, err := b.OpenBlob(t.Context(), want.Digest)
	if err != nil {
		t.Fatalf("OpenBlob: %v", err)
	}
	defer rc.Close()
	if info != want {
		t.Errorf("OpenBlob info = %+v, want %+v", info, want)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading blob: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("blob holds %d bytes (digest %s), want %d bytes (digest %s)",
			len(got), digest.FromBytes(got), len(content), digest.FromBytes(content))
	}
}

// requireNoBlob checks that the blob is not found by any means.
func requireNoBlob(t *testing.T, b storage.Backend, dgst digest.Digest) {
	t.Helper()
	if info, err := b.StatBlob(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("StatBlob(%s) = %+v, %v; want an error wrapping ErrNotFound", dgst, info, err)
	}
	rc, _, err := b.OpenBlob(t.Context(), dgst)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("OpenBlob(%s) error = %v, want one wrapping ErrNotFound", dgst, err)
	}
}

// randomBytes returns n bytes that depend only on seed, so a failure
// reproduces.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	buf := make([]byte, n)
	rand.NewChaCha8(key).Read(buf)
	return buf
}

func sha512Sum(p []byte) []byte {
	sum := sha512.Sum512(p)
	return sum[:]
}

// onlyReader hides every method but Read, so io.Copy streams through a
// buffer instead of handing the writer everything at once.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
