package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/storage"
)

// ctxImages records the request id Images sees.
type ctxImages struct {
	*testImages
	seen chan string
}

func (c ctxImages) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	c.seen <- requestid.FromContext(ctx)
	return c.testImages.ManifestByTag(ctx, name, tag, f)
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	seen := make(chan string, 1)
	f.handler.(*handler).images = ctxImages{testImages: f.images, seen: seen}
	tests := []struct {
		name   string
		sent   []string
		keeps  bool // the client's id is the answer's
		images bool // the request reaches Images
	}{
		{"made", nil, false, true},
		{"kept", []string{"0f8fad5b-d9cb-469f-a165-70867728950e"}, true, true},
		{"hostile replaced", []string{"x\" level=error"}, false, true},
		{"two replaced", []string{"a", "b"}, false, true},
		{"too long replaced", []string{strings.Repeat("a", requestid.MaxLength+1)}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.logs.lines(t))
			w := f.do("GET", "/v2/hello/manifests/latest", http.Header{requestIDHeader: tt.sent})
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			got := w.Header().Get(requestIDHeader)
			if !requestid.Valid(got) {
				t.Fatalf("answer's id %q is not valid", got)
			}
			if tt.keeps != (len(tt.sent) == 1 && got == tt.sent[0]) {
				t.Errorf("answer's id %q, sent %q", got, tt.sent)
			}
			if in := <-seen; in != got {
				t.Errorf("Images saw id %q, answer says %q", in, got)
			}
			lines := f.logs.lines(t)[before:]
			if len(lines) != 1 || lines[0][requestid.Field] != got {
				t.Errorf("log lines %v, want one with %s=%s", lines, requestid.Field, got)
			}
		})
	}
}

func TestTagMap(t *testing.T) {
	tests := []struct {
		name      string
		fresh     time.Duration
		wantCalls int64 // Images calls for three GETs of one tag
	}{
		{"fresh answers are reused", time.Hour, 1},
		{"unfresh answers are not", 0, 3},
		{"an answer stale on arrival is not", -time.Second, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.images.fresh = tt.fresh
			var body string
			for i := range 3 {
				w := f.do("GET", "/v2/hello/manifests/latest", http.Header{"Accept": {v1.MediaTypeImageManifest}})
				if w.Code != 200 {
					t.Fatalf("GET %d: status %d", i, w.Code)
				}
				if i > 0 && w.Body.String() != body {
					t.Fatalf("GET %d: another body", i)
				}
				body = w.Body.String()
			}
			if n := f.images.calls.Load(); n != tt.wantCalls {
				t.Errorf("Images asked %d times, want %d", n, tt.wantCalls)
			}
			// Another format is another answer.
			w := f.do("GET", "/v2/hello/manifests/latest", http.Header{"Accept": {manifest.DockerManifest}})
			if w.Code != 200 || w.Body.String() == body {
				t.Errorf("Docker format: status %d, same body %v", w.Code, w.Body.String() == body)
			}
		})
	}
}
