package web

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/reference"
)

// TestRegistry runs every route, method and error of the /v2/ API through
// the handler over real filesystem storage.
func TestRegistry(t *testing.T) {
	f := newFixture(t)
	oci, docker := f.built.OCI, f.built.Docker
	layer := string(f.layerDigest)
	missing := "sha256:" + strings.Repeat("0", 64)
	missing512 := "sha512:" + strings.Repeat("a", 128)
	acceptDocker := http.Header{"Accept": {manifest.DockerManifest}}

	type want struct {
		status      int
		code        errcode.Code // for errors
		contentType string       // for successes
		body        []byte       // exact body, for successes with a body
		digest      string       // Docker-Content-Digest
	}
	cases := []struct {
		name   string
		method string
		path   string
		header http.Header
		want   want
	}{
		// Base.
		{"base", "GET", "/v2/", nil, want{status: 200, contentType: "application/json", body: []byte("{}")}},
		{"base HEAD", "HEAD", "/v2/", nil, want{status: 200, contentType: "application/json"}},
		{"base without slash", "GET", "/v2", nil, want{status: 200, contentType: "application/json", body: []byte("{}")}},

		// Manifests by tag, with negotiation.
		{"tag OCI by default", "GET", "/v2/hello/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"tag HEAD", "HEAD", "/v2/hello/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, digest: oci.Digest.String()}},
		{"tag Docker only", "GET", "/v2/hello/manifests/latest", acceptDocker,
			want{status: 200, contentType: manifest.DockerManifest, body: docker.Bytes, digest: docker.Digest.String()}},
		{"tag Docker HEAD", "HEAD", "/v2/hello/manifests/latest", acceptDocker,
			want{status: 200, contentType: manifest.DockerManifest, digest: docker.Digest.String()}},
		{"tag both accepted", "GET", "/v2/hello/manifests/latest",
			http.Header{"Accept": {manifest.DockerManifest + ", " + v1.MediaTypeImageManifest}},
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"tag both in two headers", "GET", "/v2/hello/manifests/latest",
			http.Header{"Accept": {manifest.DockerManifest, v1.MediaTypeImageManifest + ";q=0.5"}},
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"tag Docker with wildcard", "GET", "/v2/hello/manifests/latest",
			http.Header{"Accept": {manifest.DockerManifest + ", */*"}},
			want{status: 200, contentType: manifest.DockerManifest, body: docker.Bytes, digest: docker.Digest.String()}},
		{"tag wildcard", "GET", "/v2/hello/manifests/latest", http.Header{"Accept": {"*/*"}},
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"tag unknown", "GET", "/v2/hello/manifests/nope", nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"tag unknown HEAD", "HEAD", "/v2/hello/manifests/nope", nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"tag invalid start", "GET", "/v2/hello/manifests/-latest", nil, want{status: 400, code: errcode.TagInvalid}},
		{"tag invalid char", "GET", "/v2/hello/manifests/lat+est", nil, want{status: 400, code: errcode.TagInvalid}},
		{"tag too long", "GET", "/v2/hello/manifests/" + strings.Repeat("a", 129), nil, want{status: 400, code: errcode.TagInvalid}},
		{"tag longest", "GET", "/v2/hello/manifests/" + strings.Repeat("a", 128), nil, want{status: 404, code: errcode.ManifestUnknown}},

		// Manifests by digest.
		{"digest OCI", "GET", "/v2/hello/manifests/" + oci.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"digest Docker", "GET", "/v2/hello/manifests/" + docker.Digest.String(), nil,
			want{status: 200, contentType: manifest.DockerManifest, body: docker.Bytes, digest: docker.Digest.String()}},
		{"digest HEAD", "HEAD", "/v2/hello/manifests/" + oci.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, digest: oci.Digest.String()}},
		{"digest under another name", "GET", "/v2/anything/else/manifests/" + oci.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"digest of a layer", "GET", "/v2/hello/manifests/" + layer, nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"digest of a config", "GET", "/v2/hello/manifests/" + f.built.Config.Digest.String(), nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"digest missing", "GET", "/v2/hello/manifests/" + missing, nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"digest missing HEAD", "HEAD", "/v2/hello/manifests/" + missing, nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"digest sha512 missing", "GET", "/v2/hello/manifests/" + missing512, nil, want{status: 404, code: errcode.ManifestUnknown}},
		{"digest short", "GET", "/v2/hello/manifests/sha256:abc", nil, want{status: 400, code: errcode.DigestInvalid}},
		{"digest upper case", "GET", "/v2/hello/manifests/sha256:" + strings.Repeat("A", 64), nil, want{status: 400, code: errcode.DigestInvalid}},
		{"digest bad algorithm", "GET", "/v2/hello/manifests/md5:" + strings.Repeat("0", 32), nil, want{status: 400, code: errcode.DigestInvalid}},
		{"digest sha384", "GET", "/v2/hello/manifests/sha384:" + strings.Repeat("0", 96), nil, want{status: 400, code: errcode.DigestInvalid}},
		{"digest empty hex", "GET", "/v2/hello/manifests/sha256:", nil, want{status: 400, code: errcode.DigestInvalid}},

		// Names.
		{"name with three components", "GET", "/v2/shell/git/htop/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"name with twenty components", "GET", "/v2/" + testNames[4] + "/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"name holding manifests", "GET", "/v2/a/manifests/b/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"name holding every keyword", "GET", "/v2/blobs/tags/list/manifests/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"name with separators", "GET", "/v2/xorg.xev/foo_bar/foo__bar/foo--bar/manifests/latest", nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"name upper case", "GET", "/v2/Hello/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name empty component", "GET", "/v2/a//b/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name trailing separator", "GET", "/v2/hello-/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name triple underscore", "GET", "/v2/a___b/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name dot dot", "GET", "/v2/../manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name missing", "GET", "/v2/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name empty", "GET", "/v2//manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name too long", "GET", "/v2/" + strings.Repeat("a/", reference.MaxNameLength/2) + "a/manifests/latest", nil, want{status: 400, code: errcode.NameInvalid}},
		{"name invalid wins over tag", "GET", "/v2/A/manifests/-x", nil, want{status: 400, code: errcode.NameInvalid}},

		// Blobs.
		{"blob", "GET", "/v2/hello/blobs/" + layer, nil,
			want{status: 200, contentType: manifest.DockerLayerGzip, body: f.layer, digest: layer}},
		{"blob HEAD", "HEAD", "/v2/hello/blobs/" + layer, nil,
			want{status: 200, contentType: manifest.DockerLayerGzip, digest: layer}},
		{"blob config", "GET", "/v2/shell/git/htop/blobs/" + f.built.Config.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageConfig, body: f.built.Config.Bytes, digest: f.built.Config.Digest.String()}},
		{"blob manifest", "GET", "/v2/hello/blobs/" + oci.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageManifest, body: oci.Bytes, digest: oci.Digest.String()}},
		{"blob missing", "GET", "/v2/hello/blobs/" + missing, nil, want{status: 404, code: errcode.BlobUnknown}},
		{"blob missing HEAD", "HEAD", "/v2/hello/blobs/" + missing, nil, want{status: 404, code: errcode.BlobUnknown}},
		{"blob sha512 missing", "GET", "/v2/hello/blobs/" + missing512, nil, want{status: 404, code: errcode.BlobUnknown}},
		{"blob tag instead of digest", "GET", "/v2/hello/blobs/latest", nil, want{status: 400, code: errcode.DigestInvalid}},
		{"blob bad digest", "GET", "/v2/hello/blobs/sha256:xyz", nil, want{status: 400, code: errcode.DigestInvalid}},
		{"blob bad name", "GET", "/v2/HELLO/blobs/" + layer, nil, want{status: 400, code: errcode.NameInvalid}},

		// Tags.
		{"tags", "GET", "/v2/paged/tags/list", nil,
			want{status: 200, contentType: "application/json", body: []byte(`{"name":"paged","tags":["a","b","c","d","e"]}`)}},
		{"tags HEAD", "HEAD", "/v2/paged/tags/list", nil, want{status: 200, contentType: "application/json"}},
		{"tags many components", "GET", "/v2/shell/git/htop/tags/list", nil,
			want{status: 200, contentType: "application/json", body: []byte(`{"name":"shell/git/htop","tags":["latest"]}`)}},
		{"tags unknown name", "GET", "/v2/nothing/here/tags/list", nil,
			want{status: 200, contentType: "application/json", body: []byte(`{"name":"nothing/here","tags":[]}`)}},
		{"tags bad name", "GET", "/v2/a_-b/tags/list", nil, want{status: 400, code: errcode.NameInvalid}},
		{"tags no name", "GET", "/v2/tags/list", nil, want{status: 404, code: errcode.NameUnknown}},
		{"tags bad n", "GET", "/v2/paged/tags/list?n=x", nil, want{status: 400, code: paginationNumberInvalid}},
		{"tags negative n", "GET", "/v2/paged/tags/list?n=-1", nil, want{status: 400, code: paginationNumberInvalid}},

		// Referrers: always an empty index.
		{"referrers", "GET", "/v2/hello/referrers/" + oci.Digest.String(), nil,
			want{status: 200, contentType: v1.MediaTypeImageIndex, body: []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageIndex + `","manifests":[]}`)}},
		{"referrers HEAD", "HEAD", "/v2/shell/git/htop/referrers/" + missing, nil, want{status: 200, contentType: v1.MediaTypeImageIndex}},
		{"referrers missing subject", "GET", "/v2/hello/referrers/" + missing512, nil,
			want{status: 200, contentType: v1.MediaTypeImageIndex, body: []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageIndex + `","manifests":[]}`)}},
		{"referrers tag", "GET", "/v2/hello/referrers/latest", nil, want{status: 400, code: errcode.DigestInvalid}},
		{"referrers bad name", "GET", "/v2/-/referrers/" + missing, nil, want{status: 400, code: errcode.NameInvalid}},
		{"referrers DELETE", "DELETE", "/v2/hello/referrers/" + missing, nil, want{status: 405, code: errcode.Unsupported}},

		// Unknown endpoints.
		{"unknown endpoint", "GET", "/v2/hello/foo", nil, want{status: 404, code: errcode.NameUnknown}},
		{"bare name", "GET", "/v2/hello", nil, want{status: 404, code: errcode.NameUnknown}},
		{"empty reference", "GET", "/v2/hello/manifests/", nil, want{status: 404, code: errcode.NameUnknown}},
		{"tags list trailing slash", "GET", "/v2/hello/tags/list/", nil, want{status: 404, code: errcode.NameUnknown}},
		{"upload endpoint GET", "GET", "/v2/hello/blobs/uploads/", nil, want{status: 405, code: errcode.Unsupported}},
		{"catalog", "GET", "/v2/_catalog", nil, want{status: 404, code: errcode.NameUnknown}},

		// Write methods, and every other method.
		{"POST upload", "POST", "/v2/hello/blobs/uploads/", nil, want{status: 405, code: errcode.Unsupported}},
		{"PUT manifest", "PUT", "/v2/hello/manifests/latest", nil, want{status: 405, code: errcode.Unsupported}},
		{"PATCH upload", "PATCH", "/v2/hello/blobs/uploads/1234", nil, want{status: 405, code: errcode.Unsupported}},
		{"DELETE manifest", "DELETE", "/v2/hello/manifests/" + oci.Digest.String(), nil, want{status: 405, code: errcode.Unsupported}},
		{"DELETE blob", "DELETE", "/v2/hello/blobs/" + layer, nil, want{status: 405, code: errcode.Unsupported}},
		{"DELETE bad name", "DELETE", "/v2/BAD/manifests/x", nil, want{status: 405, code: errcode.Unsupported}},
		{"OPTIONS base", "OPTIONS", "/v2/", nil, want{status: 405, code: errcode.Unsupported}},
		{"odd method", "BREW", "/v2/hello/manifests/latest", nil, want{status: 405, code: errcode.Unsupported}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := f.do(c.method, c.path, c.header)
			if w.Code != c.want.status {
				t.Fatalf("%s %s: status %d, want %d; body %q", c.method, c.path, w.Code, c.want.status, w.Body.String())
			}
			if v := w.Header().Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version = %q", v)
			}
			if c.want.code != "" {
				if c.method == "HEAD" {
					if w.Body.Len() != 0 {
						t.Errorf("HEAD error has a body: %q", w.Body.String())
					}
					return
				}
				e := decodeError(t, w)
				if e.Code != c.want.code {
					t.Errorf("code %s, want %s (message %q)", e.Code, c.want.code, e.Message)
				}
				if c.want.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("405 without Allow: GET, HEAD")
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != c.want.contentType {
				t.Errorf("Content-Type %q, want %q", ct, c.want.contentType)
			}
			if c.want.digest != "" {
				if d := w.Header().Get("Docker-Content-Digest"); d != c.want.digest {
					t.Errorf("Docker-Content-Digest %q, want %q", d, c.want.digest)
				}
				if e := w.Header().Get("Etag"); e != `"`+c.want.digest+`"` {
					t.Errorf("ETag %q", e)
				}
			}
			if c.method == "HEAD" {
				if w.Body.Len() != 0 {
					t.Errorf("HEAD has a body of %d bytes", w.Body.Len())
				}
				if cl := w.Header().Get("Content-Length"); cl == "" || cl == "0" {
					t.Errorf("HEAD Content-Length %q", cl)
				}
				return
			}
			if c.want.body != nil && !bytes.Equal(w.Body.Bytes(), c.want.body) {
				t.Errorf("body differs: got %d bytes %.200q, want %d bytes %.200q", w.Body.Len(), w.Body.Bytes(), len(c.want.body), c.want.body)
			}
			if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
				t.Errorf("Content-Length %q, body %d bytes", cl, w.Body.Len())
			}
		})
	}
}

// TestHeadMatchesGet checks that HEAD answers the headers GET does.
func TestHeadMatchesGet(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{
		"/v2/",
		"/v2/hello/manifests/latest",
		"/v2/hello/manifests/" + f.built.Docker.Digest.String(),
		"/v2/hello/blobs/" + string(f.layerDigest),
		"/v2/paged/tags/list",
		"/v2/hello/referrers/" + f.built.OCI.Digest.String(),
	} {
		get, head := f.do("GET", p, nil), f.do("HEAD", p, nil)
		for _, k := range []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag", "Docker-Distribution-Api-Version"} {
			if g, h := get.Header().Get(k), head.Header().Get(k); g != h {
				t.Errorf("%s: %s GET %q, HEAD %q", p, k, g, h)
			}
		}
		if get.Code != head.Code {
			t.Errorf("%s: GET %d, HEAD %d", p, get.Code, head.Code)
		}
	}
}

func TestReferrersFilter(t *testing.T) {
	f := newFixture(t)
	p := "/v2/hello/referrers/" + f.built.OCI.Digest.String()
	if w := f.do("GET", p+"?artifactType=application%2Fexample", nil); w.Code != 200 || w.Header().Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered: %d, OCI-Filters-Applied %q", w.Code, w.Header().Get("OCI-Filters-Applied"))
	}
	if w := f.do("GET", p, nil); w.Header().Get("OCI-Filters-Applied") != "" {
		t.Errorf("unfiltered: OCI-Filters-Applied %q", w.Header().Get("OCI-Filters-Applied"))
	}
}

// TestServerErrors checks that faults of the image source become a 500
// UNKNOWN with a generic message (the cause only in the log), and that
// errcode errors pass through with their status.
func TestServerErrors(t *testing.T) {
	cases := []struct {
		name    string
		fail    error
		panic   bool
		path    string
		status  int
		code    errcode.Code
		message string // exact message, if not empty
	}{
		{"plain error", errors.New("disk on fire at /secret/path"), false, "/v2/hello/manifests/latest", 500, errcode.Unknown, "internal server error"},
		{"plain error on tags", errors.New("disk on fire at /secret/path"), false, "/v2/hello/tags/list", 500, errcode.Unknown, "internal server error"},
		{"build failed", errcode.Wrap(errcode.BuildFailed, errors.New("/secret/path"), "package hello failed to build"), false, "/v2/hello/manifests/latest", 422, errcode.BuildFailed, "package hello failed to build"},
		{"unavailable", errcode.New(errcode.Unavailable, "the registry is shutting down: try again"), false, "/v2/hello/manifests/latest", 503, errcode.Unavailable, "the registry is shutting down: try again"},
		{"wrapped errcode", errors.Join(errors.New("context"), errcode.New(errcode.NameUnknown, "no such package: foo")), false, "/v2/foo/manifests/latest", 404, errcode.NameUnknown, "no such package: foo"},
		{"panic", nil, true, "/v2/hello/manifests/latest", 500, errcode.Unknown, "internal server error"},
		{"panic on tags", nil, true, "/v2/hello/tags/list", 500, errcode.Unknown, "internal server error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.images.fail, f.images.panic = c.fail, c.panic
			w := f.do("GET", c.path, nil)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %q", w.Code, c.status, w.Body.String())
			}
			e := decodeError(t, w)
			if e.Code != c.code || (c.message != "" && e.Message != c.message) {
				t.Errorf("got %s %q, want %s %q", e.Code, e.Message, c.code, c.message)
			}
			if strings.Contains(w.Body.String(), "/secret/path") {
				t.Errorf("the cause reached the client: %q", w.Body.String())
			}
			lines := f.logs.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1", len(lines))
			}
			line := lines[0]
			wantLevel := "info"
			if c.status >= 500 {
				wantLevel = "error"
			}
			if line["level"] != wantLevel {
				t.Errorf("log level %v, want %s", line["level"], wantLevel)
			}
			cause, _ := line["error"].(string)
			switch {
			case c.panic && !strings.Contains(cause, "panic on purpose"):
				t.Errorf("panic not logged with its value: %q", cause)
			case c.fail != nil && !strings.Contains(cause, c.fail.Error()):
				t.Errorf("log error %q does not hold the cause %q", cause, c.fail)
			}
		})
	}
}
