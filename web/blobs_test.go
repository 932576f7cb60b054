package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/storage"
)

// TestBlobOverHTTP serves a blob through a real HTTP server (so the file
// goes out through the server's ReadFrom, with sendfile) and checks whole,
// ranged, conditional and HEAD requests.
func TestBlobOverHTTP(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	url := srv.URL + "/v2/shell/git/htop/blobs/" + string(f.layerDigest)
	size := len(f.layer)
	etag := `"` + string(f.layerDigest) + `"`

	cases := []struct {
		name         string
		method       string
		header       map[string]string
		status       int
		body         []byte // nil: not checked
		contentRange string
		code         errcode.Code
	}{
		{"whole", "GET", nil, 200, f.layer, "", ""},
		{"HEAD", "HEAD", nil, 200, []byte{}, "", ""},
		{"first bytes", "GET", map[string]string{"Range": "bytes=0-99"}, 206, f.layer[:100], fmt.Sprintf("bytes 0-99/%d", size), ""},
		{"middle", "GET", map[string]string{"Range": "bytes=1000-1999"}, 206, f.layer[1000:2000], fmt.Sprintf("bytes 1000-1999/%d", size), ""},
		{"suffix", "GET", map[string]string{"Range": "bytes=-10"}, 206, f.layer[size-10:], fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size), ""},
		{"open end", "GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-", size-5)}, 206, f.layer[size-5:], fmt.Sprintf("bytes %d-%d/%d", size-5, size-1, size), ""},
		{"beyond the end", "GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-", size+10)}, 416, nil, fmt.Sprintf("bytes */%d", size), errcode.RangeInvalid},
		{"beyond the end HEAD", "HEAD", map[string]string{"Range": fmt.Sprintf("bytes=%d-", size+10)}, 416, []byte{}, fmt.Sprintf("bytes */%d", size), ""},
		{"malformed range", "GET", map[string]string{"Range": "bytes=x-y"}, 416, nil, "", errcode.RangeInvalid},
		{"if-none-match", "GET", map[string]string{"If-None-Match": etag}, 304, []byte{}, "", ""},
		{"if-none-match other", "GET", map[string]string{"If-None-Match": `"sha256:x"`}, 200, f.layer, "", ""},
		{"if-range matching", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": etag}, 206, f.layer[:10], fmt.Sprintf("bytes 0-9/%d", size), ""},
		{"if-range stale", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": `"sha256:x"`}, 200, f.layer, "", ""},
		{"if-none-match list", "GET", map[string]string{"If-None-Match": `"x", ` + etag}, 304, []byte{}, "", ""},
		{"if-none-match star", "GET", map[string]string{"If-None-Match": "*"}, 304, []byte{}, "", ""},
		{"overlapping ranges merge", "GET", map[string]string{"Range": "bytes=5-19,0-9"}, 206, f.layer[:20], fmt.Sprintf("bytes 0-19/%d", size), ""},
		{"adjacent ranges merge", "GET", map[string]string{"Range": "bytes=0-9,10-19"}, 206, f.layer[:20], fmt.Sprintf("bytes 0-19/%d", size), ""},
		{"tiny repeated ranges merge", "GET", map[string]string{"Range": "bytes=" + strings.Repeat("0-0,", maxRanges-1) + "0-0"}, 206, f.layer[:1], fmt.Sprintf("bytes 0-0/%d", size), ""},
		{"too many ranges", "GET", map[string]string{"Range": "bytes=" + strings.Repeat("0-0,", maxRanges) + "0-0"}, 416, nil, "", errcode.RangeInvalid},
		{"ranges past the end dropped", "GET", map[string]string{"Range": fmt.Sprintf("bytes=0-9,%d-", size+5)}, 206, f.layer[:10], fmt.Sprintf("bytes 0-9/%d", size), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, url, nil)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.200q", resp.StatusCode, c.status, body)
			}
			if resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
				t.Error("no Docker-Distribution-API-Version")
			}
			if c.body != nil && !bytes.Equal(body, c.body) {
				t.Errorf("body: %d bytes, want %d", len(body), len(c.body))
			}
			if cr := resp.Header.Get("Content-Range"); cr != c.contentRange {
				t.Errorf("Content-Range %q, want %q", cr, c.contentRange)
			}
			if lm := resp.Header.Get("Last-Modified"); lm != "" {
				t.Errorf("Last-Modified %q: it would differ between replicas", lm)
			}
			if c.status == 200 || c.status == 206 {
				if cc := resp.Header.Get("Cache-Control"); cc != "max-age=31536000, immutable" {
					t.Errorf("Cache-Control %q", cc)
				}
				if ar := resp.Header.Get("Accept-Ranges"); ar != "bytes" {
					t.Errorf("Accept-Ranges %q", ar)
				}
				if d := resp.Header.Get("Docker-Content-Digest"); d != string(f.layerDigest) {
					t.Errorf("Docker-Content-Digest %q", d)
				}
				if e := resp.Header.Get("Etag"); e != etag {
					t.Errorf("ETag %q", e)
				}
				if c.status == 200 && resp.Header.Get("Content-Length") != strconv.Itoa(size) {
					t.Errorf("Content-Length %q, want %d", resp.Header.Get("Content-Length"), size)
				}
			}
			if c.code != "" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
				var e ociErrors
				if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code {
					t.Errorf("error body %q, want code %s", body, c.code)
				}
				if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
					t.Errorf("error Content-Length %q, body %d bytes", cl, len(body))
				}
			}
		})
	}
}

// TestBlobMultipleRanges checks that distinct ranges still come back as a
// multipart answer, each range once.
func TestBlobMultipleRanges(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v2/hello/blobs/"+string(f.layerDigest), nil)
	req.Header.Set("Range", "bytes=100-199,0-9,5-14")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mediaType, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || err != nil || mediaType != "multipart/byteranges" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	want := []struct {
		rng  string
		body []byte
	}{
		{fmt.Sprintf("bytes 0-14/%d", len(f.layer)), f.layer[:15]},
		{fmt.Sprintf("bytes 100-199/%d", len(f.layer)), f.layer[100:200]},
	}
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			if i != len(want) {
				t.Errorf("%d parts, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(part)
		if i >= len(want) || part.Header.Get("Content-Range") != want[i].rng || !bytes.Equal(body, want[i].body) {
			t.Errorf("part %d: %s, %d bytes", i, part.Header.Get("Content-Range"), len(body))
		}
	}
}

// signingStorage offers a signed URL for every blob, as a GCS backend with
// a signing key does.
type signingStorage struct{ storage.Backend }

func (signingStorage) SignedBlobURL(_ context.Context, d digest.Digest) (string, bool, error) {
	return "https://storage.example/" + d.Encoded() + "?sig=x", true, nil
}

func TestBlobRedirect(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	h.storage = signingStorage{f.store}
	path := "/v2/hello/blobs/" + string(f.layerDigest)
	etag := `"` + string(f.layerDigest) + `"`
	tests := []struct {
		name     string
		method   string
		path     string
		header   http.Header
		status   int
		redirect bool
	}{
		{"GET is redirected", "GET", path, nil, 307, true},
		{"a Range GET too", "GET", path, http.Header{"Range": {"bytes=0-9"}}, 307, true},
		{"HEAD is answered here", "HEAD", path, nil, 200, false},
		{"a matching If-None-Match is answered here", "GET", path, http.Header{"If-None-Match": {etag}}, 304, false},
		{"a missing blob is not redirected", "GET", "/v2/hello/blobs/" + string(digest.FromString("missing")), nil, 404, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(tt.method, tt.path, tt.header)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			loc := w.Header().Get("Location")
			if tt.redirect != (loc != "") {
				t.Errorf("Location %q", loc)
			}
			if tt.redirect {
				if want := "https://storage.example/" + f.layerDigest.Encoded() + "?sig=x"; loc != want {
					t.Errorf("Location %q, want %q", loc, want)
				}
				if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q: a redirect to an expiring URL must not be cached", cc)
				}
				if d := w.Header().Get("Docker-Content-Digest"); d != string(f.layerDigest) {
					t.Errorf("Docker-Content-Digest %q", d)
				}
			}
		})
	}
}

func TestBlobWithoutMediaType(t *testing.T) {
	f := newFixture(t)
	info := put(t, f.store, "", []byte("no media type"))
	w := f.do("GET", "/v2/hello/blobs/"+string(info.Digest), nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/octet-stream" {
		t.Errorf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
	}
}
