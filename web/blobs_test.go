package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/nixport/nixport/errcode"
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
			if c.status == 200 || c.status == 206 {
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
