package storagetest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

// runReadTests checks OpenBlob's reader, which the registry serves every
// blob from (whole, by ranges through seeking), and SignedBlobURL where a
// backend offers one.
func runReadTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("Seek", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(5, 10_000)
		want := putBlob(t, b, layerType, content)
		size := int64(len(content))
		r, info, err := b.OpenBlob(t.Context(), want.Digest)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if info != want {
			t.Errorf("OpenBlob info %+v, want %+v", info, want)
		}
		steps := []struct {
			name   string
			offset int64
			whence int
			pos    int64 // where the seek lands
			read   int   // bytes then read
		}{
			{"from the start", 0, io.SeekStart, 0, 100},
			{"forward", 10, io.SeekStart, 10, 10},
			{"relative", 100, io.SeekCurrent, 120, 50},
			{"back", 3, io.SeekStart, 3, 7},
			{"from the end", -7, io.SeekEnd, size - 7, 7},
			{"to the end", 0, io.SeekEnd, size, 0},
			{"again at the start", 0, io.SeekStart, 0, int(size)},
		}
		for _, s := range steps {
			pos, err := r.Seek(s.offset, s.whence)
			if err != nil || pos != s.pos {
				t.Fatalf("%s: Seek = %d, %v; want %d", s.name, pos, err, s.pos)
			}
			got := make([]byte, s.read)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatalf("%s: reading %d bytes at %d: %v", s.name, s.read, pos, err)
			}
			if string(got) != string(content[pos:pos+int64(s.read)]) {
				t.Fatalf("%s: bytes at %d differ", s.name, pos)
			}
		}
		if n, err := r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("read past the end: %d, %v; want 0, EOF", n, err)
		}
		if _, err := r.Seek(-1, io.SeekStart); err == nil {
			t.Error("seeking before the start succeeded")
		}
	})

	t.Run("UntypedBlob", func(t *testing.T) {
		b := newBackend(t)
		info := putBlob(t, b, "", []byte("no media type"))
		r, got, err := b.OpenBlob(t.Context(), info.Digest)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		if got.MediaType != "" {
			t.Errorf("media type %q, want none", got.MediaType)
		}
	})

	t.Run("OpenMissing", func(t *testing.T) {
		b := newBackend(t)
		for _, d := range []digest.Digest{digest.FromString("never stored"), "sha256:short", "sha512:" + digest.Digest(fmt.Sprint(digest.SHA512.FromString("x").Encoded()))} {
			r, _, err := b.OpenBlob(t.Context(), d)
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("OpenBlob(%s) = %v, want one wrapping ErrNotFound", d, err)
			}
			if r != nil {
				t.Errorf("OpenBlob(%s) returned a reader with its error", d)
			}
		}
	})

	t.Run("SignedURL", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(6, 5_000)
		info := putBlob(t, b, layerType, content)
		u, ok, err := b.SignedBlobURL(t.Context(), info.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Skipf("%s offers no signed URLs", b.Name())
		}
		for _, tt := range []struct {
			rng    string
			status int
			body   []byte
		}{
			{"", 200, content},
			{"bytes=10-19", 206, content[10:20]},
		} {
			req, err := http.NewRequestWithContext(t.Context(), "GET", u, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tt.status || string(body) != string(tt.body) {
				t.Errorf("GET signed URL (Range %q): %d, %d bytes, %v; want %d, %d bytes", tt.rng, resp.StatusCode, len(body), err, tt.status, len(tt.body))
			}
		}
	})
}
