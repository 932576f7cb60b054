package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/storage"
)

// discardWriter is the cheapest ResponseWriter: the benchmark measures the
// handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(status int)      { d.status = status }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// fixedImages answers one name from memory, fresh for an hour, and the
// rest from images.
type fixedImages struct {
	images Images
	name   string
	info   storage.BlobInfo
}

func (fi fixedImages) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	if name == fi.name {
		return fi.info, time.Now().Add(time.Hour), nil
	}
	return fi.images.ManifestByTag(ctx, name, tag, f)
}

func (fi fixedImages) Tags(ctx context.Context, name string) ([]string, error) {
	return fi.images.Tags(ctx, name)
}

// BenchmarkManifestGet measures a warm manifest GET through the whole
// handler (routing, cache, headers, the JSON request log line).
//
//	go test ./web -run '^$' -bench ManifestGet -benchmem
func BenchmarkManifestGet(b *testing.B) {
	f := newFixture(b)
	h := f.handler.(*handler)
	// Images answering from memory, to measure only this package's part of
	// a GET by tag; the test Images stats storage on every call.
	info, err := f.store.StatBlob(context.Background(), f.built.OCI.Digest)
	if err != nil {
		b.Fatal(err)
	}
	h.images = fixedImages{images: f.images, name: "fixed", info: info}
	devNull := openDevNull(b)
	byDigest := "/v2/shell/git/htop/manifests/" + f.built.OCI.Digest.String()
	for _, c := range []struct {
		name string
		path string
		out  io.Writer
		log  logrus.Level
		// metrics counts the request too (NIXPORT's default).
		metrics bool
	}{
		{"digest", byDigest, devNull, logrus.InfoLevel, false},
		{"tag-asking-images", "/v2/shell/git/htop/manifests/latest", devNull, logrus.InfoLevel, false},
		{"tag-map", "/v2/fixed/manifests/latest", devNull, logrus.InfoLevel, false},
		{"tag-map-nolog", "/v2/fixed/manifests/latest", devNull, logrus.WarnLevel, false},
		{"tag-map-discard", "/v2/fixed/manifests/latest", io.Discard, logrus.InfoLevel, false},
		{"tag-map-metrics", "/v2/fixed/manifests/latest", devNull, logrus.InfoLevel, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			h.metrics = nil
			if c.metrics {
				h.metrics = metrics.New()
			}
			h.serve = h.chain(h.route)
			log := jsonLogger(c.out)
			log.SetLevel(c.log)
			h.setLog(log)
			r := httptest.NewRequest("GET", c.path, nil)
			r.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, r) // warm the cache
			if w.status != 200 {
				b.Fatalf("status %d", w.status)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}
