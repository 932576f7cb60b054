package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
)

// TestManifestWarmPathSkipsStorage checks that once a manifest has been
// served, GETs and HEADs by digest never reach storage, and GETs by tag
// only reach Images.
func TestManifestWarmPathSkipsStorage(t *testing.T) {
	f := newFixture(t)
	byDigest := "/v2/hello/manifests/" + f.built.OCI.Digest.String()
	if w := f.do("GET", byDigest, nil); w.Code != 200 {
		t.Fatalf("cold GET: %d", w.Code)
	}
	if f.store.stats.Load() != 1 || f.store.opens.Load() != 1 {
		t.Fatalf("cold GET: %d stats, %d opens; want 1 and 1", f.store.stats.Load(), f.store.opens.Load())
	}
	f.store.stats.Store(0)
	f.store.opens.Store(0)
	for range 3 {
		for _, method := range []string{"GET", "HEAD"} {
			w := f.do(method, byDigest, nil)
			if w.Code != 200 {
				t.Fatalf("warm %s: %d", method, w.Code)
			}
			if method == "GET" && !bytes.Equal(w.Body.Bytes(), f.built.OCI.Bytes) {
				t.Fatal("warm GET: body differs")
			}
		}
		// By tag: Images answers (from its own view of storage, not
		// counted here), the bytes come from the cache.
		if w := f.do("GET", "/v2/hello/manifests/latest", nil); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), f.built.OCI.Bytes) {
			t.Fatalf("warm GET by tag: %d", w.Code)
		}
	}
	if n := f.store.opens.Load(); n != 0 {
		t.Errorf("warm requests opened %d blobs", n)
	}
	if n := f.store.stats.Load(); n != 0 {
		t.Errorf("warm requests stat'ed %d blobs", n)
	}
}

func TestManifestConditional(t *testing.T) {
	f := newFixture(t)
	d := f.built.OCI.Digest.String()
	cases := []struct {
		path, inm string
		status    int
	}{
		{"/v2/hello/manifests/" + d, `"` + d + `"`, 304},
		{"/v2/hello/manifests/latest", `"` + d + `"`, 304},
		{"/v2/hello/manifests/latest", `W/"` + d + `"`, 304},
		{"/v2/hello/manifests/latest", `"other", "` + d + `"`, 304},
		{"/v2/hello/manifests/latest", `*`, 304},
		{"/v2/hello/manifests/latest", `"sha256:other"`, 200},
		{"/v2/hello/manifests/latest", ``, 200},
	}
	for _, c := range cases {
		var h http.Header
		if c.inm != "" {
			h = http.Header{"If-None-Match": {c.inm}}
		}
		w := f.do("GET", c.path, h)
		if w.Code != c.status {
			t.Errorf("%s If-None-Match %s: %d, want %d", c.path, c.inm, w.Code, c.status)
		}
		if w.Code == 304 && (w.Body.Len() != 0 || w.Header().Get("Etag") == "") {
			t.Errorf("304 with body %q, ETag %q", w.Body.String(), w.Header().Get("Etag"))
		}
	}
	if w := f.do("GET", "/v2/hello/manifests/"+d, nil); w.Header().Get("Cache-Control") != "max-age=31536000, immutable" {
		t.Errorf("by digest: Cache-Control %q", w.Header().Get("Cache-Control"))
	}
	if w := f.do("GET", "/v2/hello/manifests/latest", nil); w.Header().Get("Cache-Control") != "" {
		t.Errorf("by tag: Cache-Control %q, want none (tags move)", w.Header().Get("Cache-Control"))
	}
}

// lyingStorage returns other bytes than those stored at a digest.
type lyingStorage struct{ storage.Backend }

func (l lyingStorage) OpenBlob(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	rc, info, err := l.Backend.OpenBlob(ctx, d)
	if err != nil {
		return nil, info, err
	}
	rc.Close()
	return nopCloser{bytes.NewReader([]byte(`{"mediaType":"tampered"}`))}, info, nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

// failingStorage fails every read with a server-side error.
type failingStorage struct{ storage.Backend }

var errDisk = fmt.Errorf("disk failure at /secret/path")

func (failingStorage) StatBlob(context.Context, digest.Digest) (storage.BlobInfo, error) {
	return storage.BlobInfo{}, errDisk
}

func (failingStorage) OpenBlob(context.Context, digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	return nil, storage.BlobInfo{}, errDisk
}

func TestStorageFaults(t *testing.T) {
	f := newFixture(t)
	byDigest := "/v2/hello/manifests/" + f.built.OCI.Digest.String()
	byTag := "/v2/hello/manifests/latest"
	blob := "/v2/hello/blobs/" + string(f.layerDigest)
	cases := []struct {
		name  string
		store storage.Backend
		path  string
	}{
		{"lying by digest", lyingStorage{f.store}, byDigest},
		{"lying by tag", lyingStorage{f.store}, byTag},
		{"failing by digest", failingStorage{f.store}, byDigest},
		{"failing by tag", failingStorage{f.store}, byTag},
		{"failing blob", failingStorage{f.store}, blob},
	}
	for _, c := range cases {
		h, err := New(Options{Storage: c.store, Images: f.images})
		if err != nil {
			t.Fatal(err)
		}
		w := httpDo(h, "GET", c.path, nil)
		if w.Code != 500 {
			t.Errorf("%s: %d, want 500", c.name, w.Code)
			continue
		}
		if e := decodeError(t, w); e.Code != errcode.Unknown || bytes.Contains(w.Body.Bytes(), []byte("secret")) {
			t.Errorf("%s: %s %q", c.name, e.Code, e.Message)
		}
	}
}

// TestManifestMediaTypeFallback checks the media type of a manifest stored
// without one: taken from what Images says, else from the document.
func TestManifestMediaTypeFallback(t *testing.T) {
	f := newFixture(t)
	body := []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageIndex + `","manifests":[]}`)
	info := put(t, f.store, "", body)
	f.images.set("untyped", "latest", map[manifest.Format]digest.Digest{manifest.OCI: info.Digest})
	w := f.do("GET", "/v2/untyped/manifests/latest", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != v1.MediaTypeImageIndex {
		t.Fatalf("untyped manifest by tag: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	// By digest, storage has no media type: not known as a manifest.
	other := put(t, f.store, "", []byte(`{"schemaVersion":2,"mediaType":"`+v1.MediaTypeImageManifest+`","layers":[]}`))
	w = f.do("GET", "/v2/untyped/manifests/"+other.Digest.String(), nil)
	if w.Code != 404 {
		t.Fatalf("untyped blob by digest: %d, want 404", w.Code)
	}
	// Not a manifest at all, by tag: a server fault, not served.
	layer := map[manifest.Format]digest.Digest{manifest.OCI: f.layerDigest}
	f.images.set("broken", "latest", layer)
	if w := f.do("GET", "/v2/broken/manifests/latest", nil); w.Code != 500 {
		t.Fatalf("layer as manifest by tag: %d, want 500", w.Code)
	}
}

func TestManifestConcurrent(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				p := "/v2/hello/manifests/latest"
				if (i+j)%2 == 0 {
					p = "/v2/hello/manifests/" + f.built.Docker.Digest.String()
				}
				if w := f.do("GET", p, nil); w.Code != 200 {
					t.Errorf("GET %s: %d", p, w.Code)
				}
			}
		})
	}
	wg.Wait()
}

func TestManifestCacheBound(t *testing.T) {
	const max = 64 << 10
	c := newManifestCache(max)
	var entries []*manifestEntry
	for i := range 100 {
		body := bytes.Repeat([]byte{byte(i)}, 1000+i)
		e := newManifestEntry(digest.FromBytes(body), v1.MediaTypeImageManifest, body)
		entries = append(entries, e)
		c.add(e)
		if c.size() > max {
			t.Fatalf("after %d adds the cache holds %d bytes, bound %d", i+1, c.size(), max)
		}
		c.get(entries[0].digest) // keep the first one recently used
	}
	if _, ok := c.get(entries[0].digest); !ok {
		t.Error("the recently used entry was evicted")
	}
	if _, ok := c.get(entries[1].digest); ok {
		t.Error("the least recently used entry was kept")
	}
	if _, ok := c.get(entries[99].digest); !ok {
		t.Error("the newest entry was evicted")
	}
	var sum int64
	for _, e := range entries {
		if _, ok := c.get(e.digest); ok {
			sum += e.cost()
		}
	}
	if sum != c.size() || c.len() < 40 {
		t.Errorf("accounting: entries cost %d, cache says %d, %d entries", sum, c.size(), c.len())
	}

	// Too large for the cache: not kept, nothing evicted.
	before := c.len()
	big := bytes.Repeat([]byte("x"), max/8)
	c.add(newManifestEntry(digest.FromBytes(big), v1.MediaTypeImageManifest, big))
	if c.len() != before {
		t.Errorf("an oversized entry changed the cache from %d to %d entries", before, c.len())
	}
	// Adding again is a no-op.
	c.add(entries[99])
	if sum2 := c.size(); sum2 != sum {
		t.Errorf("re-adding changed the size from %d to %d", sum, sum2)
	}
}
