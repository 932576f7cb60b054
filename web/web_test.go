package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

// testImages implements Images from a map of "name:tag" to the manifest
// digests of each format, over real storage.
type testImages struct {
	store storage.Backend

	mu    sync.Mutex
	tags  map[string]map[manifest.Format]digest.Digest
	fail  error         // if set, every call returns it
	panic bool          // if set, every call panics
	fresh time.Duration // how long answers are fresh; 0: not at all
	calls atomic.Int64  // ManifestByTag calls
}

func (ti *testImages) set(name, tag string, m map[manifest.Format]digest.Digest) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.tags == nil {
		ti.tags = map[string]map[manifest.Format]digest.Digest{}
	}
	ti.tags[name+":"+tag] = m
}

func (ti *testImages) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	ti.calls.Add(1)
	ti.mu.Lock()
	m, ok := ti.tags[name+":"+tag]
	fail, panicking, fresh := ti.fail, ti.panic, ti.fresh
	ti.mu.Unlock()
	if panicking {
		panic("test images: panic on purpose")
	}
	if fail != nil {
		return storage.BlobInfo{}, time.Time{}, fail
	}
	if !ok {
		return storage.BlobInfo{}, time.Time{}, errcode.New(errcode.ManifestUnknown, "unknown manifest %s:%s", name, tag)
	}
	info, err := ti.store.StatBlob(ctx, m[f])
	var until time.Time
	if fresh > 0 {
		until = time.Now().Add(fresh)
	}
	return info, until, err
}

func (ti *testImages) Tags(ctx context.Context, name string) ([]string, error) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.panic {
		panic("test images: panic on purpose")
	}
	if ti.fail != nil {
		return nil, ti.fail
	}
	var tags []string
	for k := range ti.tags {
		if n, tag, _ := strings.Cut(k, ":"); n == name {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// countingStorage counts the reads that reach storage.
type countingStorage struct {
	storage.Backend
	stats, opens atomic.Int64
}

func (c *countingStorage) StatBlob(ctx context.Context, d digest.Digest) (storage.BlobInfo, error) {
	c.stats.Add(1)
	return c.Backend.StatBlob(ctx, d)
}

func (c *countingStorage) OpenBlob(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	c.opens.Add(1)
	return c.Backend.OpenBlob(ctx, d)
}

// fixture is a handler over real filesystem storage holding one image
// (config, one layer, OCI and Docker manifests) under several names.
type fixture struct {
	t       *testing.T
	store   *countingStorage
	images  *testImages
	builds  *fakeBuilds
	handler http.Handler
	logs    *syncBuffer

	built       *manifest.Built
	layer       []byte
	layerDigest digest.Digest
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// jsonLogger is the logger cmd/nixport sets up: JSON lines with
// nanosecond times, here to out.
func jsonLogger(out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.Out = out
	log.Formatter = &logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano}
	return log
}

// openDevNull opens /dev/null for writing, a file like stderr that costs
// nothing to write, and closes it when tb ends.
func openDevNull(tb testing.TB) *os.File {
	tb.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// testNames are the repositories the fixture's image is tagged under.
var testNames = []string{
	"hello",
	"shell/git/htop",
	"a/manifests/b",
	"blobs/tags/list/manifests",
	"x0/x1/x2/x3/x4/x5/x6/x7/x8/x9/x10/x11/x12/x13/x14/x15/x16/x17/x18/x19",
	"xorg.xev/foo_bar/foo__bar/foo--bar",
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fs, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	store := &countingStorage{Backend: fs}

	// A layer of incompressible bytes, large enough for Range requests to
	// be interesting.
	raw := make([]byte, 200<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	layer := gz.Bytes()
	layerInfo := put(t, store, manifest.DockerLayerGzip, layer)

	built, err := manifest.Build(manifest.Image{
		Architecture: "amd64",
		OS:           "linux",
		Layers: []manifest.Layer{{
			Digest:  layerInfo.Digest,
			Size:    layerInfo.Size,
			DiffID:  digest.FromBytes(raw),
			Comment: "test layer",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []manifest.Blob{built.Config, built.OCI, built.Docker} {
		put(t, store, b.MediaType, b.Bytes)
	}
	images := &testImages{store: fs}
	both := map[manifest.Format]digest.Digest{manifest.OCI: built.OCI.Digest, manifest.Docker: built.Docker.Digest}
	for _, name := range testNames {
		images.set(name, "latest", both)
	}
	for _, tag := range []string{"e", "b", "a", "d", "c"} {
		images.set("paged", tag, both)
	}

	logs := &syncBuffer{}
	log := logrus.New()
	log.Out = logs
	log.Formatter = &logrus.JSONFormatter{}
	builds := newFakeBuilds()
	h, err := New(Options{Storage: store, Images: images, Builds: builds, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		store:       store,
		images:      images,
		builds:      builds,
		handler:     h,
		logs:        logs,
		built:       built,
		layer:       layer,
		layerDigest: layerInfo.Digest,
	}
}

func put(t testing.TB, b storage.Backend, mediaType string, data []byte) storage.BlobInfo {
	t.Helper()
	info, err := storage.PutBlob(context.Background(), b, mediaType, "", -1, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// do sends one request through the fixture's handler.
func (f *fixture) do(method, target string, header http.Header) *httptest.ResponseRecorder {
	return httpDo(f.handler, method, target, header)
}

// httpDo sends one request through h.
func httpDo(h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// ociError decodes an OCI error body, failing the test if the response is
// not one.
func decodeError(t *testing.T, w *httptest.ResponseRecorder) ociError {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	var body ociErrors
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	if len(body.Errors) != 1 {
		t.Fatalf("error body %q: want one error", w.Body.String())
	}
	e := body.Errors[0]
	if e.Code == "" || e.Message == "" {
		t.Fatalf("error body %q: empty code or message", w.Body.String())
	}
	return e
}
