package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/push"
)

// pushFixture is the fixture's handler with the push namespaces local and
// ci (and, given a verifier, authentication).
func pushFixture(t *testing.T, verifier Verifier) *fixture {
	t.Helper()
	f := newFixture(t)
	reg, err := push.New(push.Options{Storage: f.store, Namespaces: []string{"local", "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	log := logrus.New()
	log.Out = f.logs
	log.Formatter = &logrus.JSONFormatter{}
	h, err := New(Options{Storage: f.store, Images: f.images, Log: log, Push: reg, Auth: verifier})
	if err != nil {
		t.Fatal(err)
	}
	f.handler = h
	return f
}

// send sends one request with a body through h.
func send(h http.Handler, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body == "" {
		r.ContentLength = 0
	}
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// exchange is one request and what its answer must be.
type exchange struct {
	name         string
	method, path string // path may hold {upload}, replaced by the session's URL
	body         string
	header       http.Header
	status       int
	code         errcode.Code      // for errors
	headers      map[string]string // exact values; "*" for present
	respBody     string            // exact, when set
}

func (x exchange) run(t *testing.T, h http.Handler, upload string) *httptest.ResponseRecorder {
	t.Helper()
	w := send(h, x.method, strings.ReplaceAll(x.path, "{upload}", upload), x.body, x.header)
	if w.Code != x.status {
		t.Fatalf("%s: %s %s: %d %s, want %d", x.name, x.method, x.path, w.Code, w.Body, x.status)
	}
	if x.code != "" {
		if e := decodeError(t, w); e.Code != x.code {
			t.Fatalf("%s: code %s (%s), want %s", x.name, e.Code, e.Message, x.code)
		}
	}
	for k, v := range x.headers {
		got := w.Header().Get(k)
		if (v == "*" && got == "") || (v != "*" && got != strings.ReplaceAll(v, "{upload}", upload)) {
			t.Fatalf("%s: %s: %q, want %q", x.name, k, got, v)
		}
	}
	if x.respBody != "" && w.Body.String() != x.respBody {
		t.Fatalf("%s: body %q, want %q", x.name, w.Body, x.respBody)
	}
	return w
}

var uploadPath = regexp.MustCompile(`^/v2/local/app/blobs/uploads/[0-9a-f]{32}$`)

// TestPushBlobs runs the blob upload endpoints in order over real storage:
// a chunked upload with every mistake a client can make on the way, a
// monolithic one, mounts, cancels and deletes.
func TestPushBlobs(t *testing.T) {
	f := pushFixture(t, nil)
	h := f.handler
	data := strings.Repeat("0123456789", 5)
	d := digest.FromString(data).String()
	octet := http.Header{"Content-Type": {"application/octet-stream"}}
	chunk := func(r string, length int) http.Header {
		return http.Header{"Content-Range": {r}, "Content-Length": {strconv.Itoa(length)}}
	}

	start := exchange{name: "start", method: "POST", path: "/v2/local/app/blobs/uploads/", status: 202,
		headers: map[string]string{"Range": "0-0", "Docker-Upload-Uuid": "*", "Content-Length": "0"}}
	w := start.run(t, h, "")
	loc := w.Header().Get("Location")
	if !uploadPath.MatchString(loc) || !strings.HasSuffix(loc, w.Header().Get("Docker-Upload-Uuid")) {
		t.Fatalf("Location %q", loc)
	}
	for _, x := range []exchange{
		{name: "status at 0", method: "GET", path: "{upload}", status: 204, headers: map[string]string{"Range": "0-0", "Location": "{upload}"}},
		{name: "first chunk", method: "PATCH", path: "{upload}", body: data[:10], header: chunk("0-9", 10), status: 202,
			headers: map[string]string{"Range": "0-9", "Location": "{upload}"}},
		{name: "out of order", method: "PATCH", path: "{upload}", body: data[20:30], header: chunk("20-29", 10), status: 416,
			code: errcode.RangeInvalid, headers: map[string]string{"Range": "0-9", "Location": "{upload}"}},
		{name: "again from 0", method: "PATCH", path: "{upload}", body: data[:10], header: chunk("0-9", 10), status: 416, code: errcode.RangeInvalid},
		{name: "length differs", method: "PATCH", path: "{upload}", body: data[10:19], header: chunk("10-19", 9), status: 400, code: errcode.SizeInvalid},
		{name: "bad range", method: "PATCH", path: "{upload}", body: data[10:20], header: chunk("bytes 10-19/50", 10), status: 400, code: errcode.BlobUploadInvalid},
		{name: "status", method: "GET", path: "{upload}", status: 204, headers: map[string]string{"Range": "0-9"}},
		{name: "stream", method: "PATCH", path: "{upload}", body: data[10:40], header: octet, status: 202, headers: map[string]string{"Range": "0-39"}},
		{name: "close without digest", method: "PUT", path: "{upload}", status: 400, code: errcode.DigestInvalid},
		{name: "close with a bad digest", method: "PUT", path: "{upload}?digest=sha256:nope", status: 400, code: errcode.DigestInvalid},
		{name: "blob not there yet", method: "HEAD", path: "/v2/local/app/blobs/" + d, status: 404},
		{name: "last chunk in the PUT", method: "PUT", path: "{upload}?digest=" + d, body: data[40:], header: chunk("40-49", 10), status: 201,
			headers: map[string]string{"Location": "/v2/local/app/blobs/" + d, "Docker-Content-Digest": d}},
		{name: "session over", method: "PATCH", path: "{upload}", body: "x", status: 404, code: errcode.BlobUploadUnknown},
		{name: "blob", method: "GET", path: "/v2/local/app/blobs/" + d, status: 200, respBody: data, headers: map[string]string{"Docker-Content-Digest": d}},
		{name: "blob HEAD", method: "HEAD", path: "/v2/local/app/blobs/" + d, status: 200, headers: map[string]string{"Content-Length": "50"}},
		{name: "range", method: "GET", path: "/v2/local/app/blobs/" + d, header: http.Header{"Range": {"bytes=5-9"}}, status: 206, respBody: data[5:10]},
		{name: "other repository", method: "GET", path: "/v2/local/other/blobs/" + d, status: 404, code: errcode.BlobUnknown},
		{name: "built names serve every blob", method: "GET", path: "/v2/hello/blobs/" + d, status: 200, respBody: data},
		{name: "mount", method: "POST", path: "/v2/ci/x/blobs/uploads/?mount=" + d + "&from=local/app", status: 201,
			headers: map[string]string{"Location": "/v2/ci/x/blobs/" + d, "Docker-Content-Digest": d}},
		{name: "mounted", method: "GET", path: "/v2/ci/x/blobs/" + d, status: 200, respBody: data},
		{name: "mount from a built image", method: "POST", path: "/v2/local/y/blobs/uploads/?mount=" + f.layerDigest.String() + "&from=shell/hello", status: 201},
		{name: "mount anonymous", method: "POST", path: "/v2/local/z/blobs/uploads/?mount=" + d, status: 201},
		{name: "mount of nothing starts an upload", method: "POST", path: "/v2/local/app/blobs/uploads/?mount=" + digest.FromString("none").String() + "&from=local/y", status: 202,
			headers: map[string]string{"Location": "*", "Range": "0-0"}},
		{name: "mount bad digest", method: "POST", path: "/v2/local/app/blobs/uploads/?mount=sha256:x&from=local/y", status: 400, code: errcode.DigestInvalid},
		{name: "mount bad source", method: "POST", path: "/v2/local/app/blobs/uploads/?mount=" + d + "&from=Local/Y", status: 400, code: errcode.NameInvalid},
		{name: "monolithic", method: "POST", path: "/v2/local/mono/blobs/uploads/?digest=" + d, body: data, header: octet, status: 201,
			headers: map[string]string{"Location": "/v2/local/mono/blobs/" + d}},
		{name: "monolithic empty", method: "POST", path: "/v2/local/mono/blobs/uploads/?digest=" + digest.FromString("").String(), status: 201},
		{name: "monolithic mismatch", method: "POST", path: "/v2/local/mono/blobs/uploads/?digest=" + digest.FromString("x").String(), body: data, status: 400, code: errcode.DigestInvalid},
		{name: "monolithic sha512", method: "POST", path: "/v2/local/mono/blobs/uploads/?digest=" + digest.SHA512.FromString(data).String(), body: data, status: 201},
		{name: "sha512 blob", method: "GET", path: "/v2/local/mono/blobs/" + digest.SHA512.FromString(data).String(), status: 200, respBody: data,
			headers: map[string]string{"Docker-Content-Digest": digest.SHA512.FromString(data).String()}},
		{name: "unknown upload", method: "GET", path: "/v2/local/app/blobs/uploads/" + strings.Repeat("a", 32), status: 404, code: errcode.BlobUploadUnknown},
		{name: "malformed upload id", method: "PATCH", path: "/v2/local/app/blobs/uploads/..x", status: 404, code: errcode.BlobUploadUnknown},
		{name: "delete blob", method: "DELETE", path: "/v2/local/app/blobs/" + d, status: 202},
		{name: "deleted", method: "HEAD", path: "/v2/local/app/blobs/" + d, status: 404},
		{name: "delete again", method: "DELETE", path: "/v2/local/app/blobs/" + d, status: 404, code: errcode.BlobUnknown},
		{name: "still mounted elsewhere", method: "GET", path: "/v2/ci/x/blobs/" + d, status: 200},
		{name: "no PUT on blobs", method: "PUT", path: "/v2/local/app/blobs/" + d, status: 405, code: errcode.Unsupported, headers: map[string]string{"Allow": "GET, HEAD, DELETE"}},
		{name: "no POST on a session", method: "POST", path: "{upload}", status: 405, code: errcode.Unsupported},
	} {
		x.run(t, h, loc)
	}

	// Cancel.
	w = start.run(t, h, "")
	loc = w.Header().Get("Location")
	exchange{name: "cancel", method: "DELETE", path: "{upload}", status: 204}.run(t, h, loc)
	exchange{name: "cancelled", method: "GET", path: "{upload}", status: 404, code: errcode.BlobUploadUnknown}.run(t, h, loc)

	// The request log names the digest of each upload it finished.
	found := false
	for _, l := range f.logs.lines(t) {
		if l["method"] == "PUT" && strings.Contains(l["path"].(string), "/blobs/uploads/") && l["status"] == float64(201) && l["digest"] == d {
			found = true
		}
	}
	if !found {
		t.Error("no log line of the PUT that finished the upload with its digest")
	}
	if n := f.images.calls.Load(); n != 0 {
		t.Errorf("push repositories reached Images %d times", n)
	}
}

// pushBlob uploads data into repo monolithically and returns its digest.
func pushBlob(t *testing.T, h http.Handler, repo, data string) digest.Digest {
	t.Helper()
	d := digest.FromString(data)
	if w := send(h, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), data, nil); w.Code != 201 {
		t.Fatalf("pushing a blob: %d %s", w.Code, w.Body)
	}
	return d
}

func imageManifest(t *testing.T, h http.Handler, repo, seed string, subject *v1.Descriptor) []byte {
	t.Helper()
	config := `{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`
	layer := "layer " + seed
	m := v1.Manifest{
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: pushBlob(t, h, repo, config), Size: int64(len(config))},
		Layers:    []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: pushBlob(t, h, repo, layer), Size: int64(len(layer))}},
		Subject:   subject,
	}
	m.SchemaVersion = 2
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestPushManifests runs the manifest, tag and referrers endpoints of a
// push repository.
func TestPushManifests(t *testing.T) {
	f := pushFixture(t, nil)
	h := f.handler
	body := imageManifest(t, h, "local/app", "one", nil)
	d := digest.FromBytes(body).String()
	subject := &v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.Digest(d), Size: int64(len(body))}
	sig := imageManifest(t, h, "local/app", "sig", subject)
	sigD := digest.FromBytes(sig).String()
	oci := http.Header{"Content-Type": {v1.MediaTypeImageManifest}}
	missing := strings.Replace(string(body), `"layers":[{`, `"layers":[{"mediaType":"a/b","digest":"`+digest.FromString("no").String()+`","size":2},{`, 1)

	for _, x := range []exchange{
		{name: "push by tag", method: "PUT", path: "/v2/local/app/manifests/latest", body: string(body), header: oci, status: 201,
			headers: map[string]string{"Location": "/v2/local/app/manifests/" + d, "Docker-Content-Digest": d}},
		{name: "get by tag", method: "GET", path: "/v2/local/app/manifests/latest", status: 200, respBody: string(body),
			headers: map[string]string{"Content-Type": v1.MediaTypeImageManifest, "Docker-Content-Digest": d}},
		{name: "head by digest", method: "HEAD", path: "/v2/local/app/manifests/" + d, status: 200,
			headers: map[string]string{"Content-Length": strconv.Itoa(len(body)), "Content-Type": v1.MediaTypeImageManifest}},
		{name: "not in another repository", method: "GET", path: "/v2/local/other/manifests/" + d, status: 404, code: errcode.ManifestUnknown},
		{name: "push by digest with tags", method: "PUT", path: "/v2/local/app/manifests/" + d + "?tag=v1&tag=v2", body: string(body), header: oci, status: 201,
			headers: map[string]string{"OCI-Tag": "v1, v2"}},
		{name: "bad tag parameter", method: "PUT", path: "/v2/local/app/manifests/" + d + "?tag=-x", body: string(body), header: oci, status: 400, code: errcode.TagInvalid},
		{name: "digest mismatch", method: "PUT", path: "/v2/local/app/manifests/" + digest.FromString("x").String(), body: string(body), header: oci, status: 400, code: errcode.DigestInvalid},
		{name: "blob missing", method: "PUT", path: "/v2/local/app/manifests/broken", body: missing, header: oci, status: 400, code: errcode.ManifestBlobUnknown},
		{name: "not a manifest", method: "PUT", path: "/v2/local/app/manifests/broken", body: "{}", header: oci, status: 400, code: errcode.ManifestInvalid},
		{name: "too large", method: "PUT", path: "/v2/local/app/manifests/big", body: strings.Repeat(" ", maxManifestBytes+1), header: oci, status: 413, code: errcode.RequestTooLarge},
		{name: "with a subject", method: "PUT", path: "/v2/local/app/manifests/sig", body: string(sig), header: oci, status: 201,
			headers: map[string]string{"OCI-Subject": d}},
		{name: "tags", method: "GET", path: "/v2/local/app/tags/list", status: 200, respBody: `{"name":"local/app","tags":["latest","sig","v1","v2"]}`},
		{name: "tags page", method: "GET", path: "/v2/local/app/tags/list?n=2", status: 200, respBody: `{"name":"local/app","tags":["latest","sig"]}`,
			headers: map[string]string{"Link": `</v2/local/app/tags/list?last=sig&n=2>; rel="next"`}},
		{name: "tags after", method: "GET", path: "/v2/local/app/tags/list?n=2&last=sig", status: 200, respBody: `{"name":"local/app","tags":["v1","v2"]}`},
		{name: "no tags", method: "GET", path: "/v2/local/none/tags/list", status: 200, respBody: `{"name":"local/none","tags":[]}`},
		{name: "delete a tag", method: "DELETE", path: "/v2/local/app/manifests/v2", status: 202},
		{name: "tag gone", method: "GET", path: "/v2/local/app/manifests/v2", status: 404, code: errcode.ManifestUnknown},
		{name: "manifest stays", method: "GET", path: "/v2/local/app/manifests/v1", status: 200},
		{name: "delete the artifact", method: "DELETE", path: "/v2/local/app/manifests/" + sigD, status: 202},
		{name: "delete the manifest", method: "DELETE", path: "/v2/local/app/manifests/" + d, status: 202},
		{name: "manifest gone", method: "HEAD", path: "/v2/local/app/manifests/" + d, status: 404},
		{name: "its tags gone", method: "GET", path: "/v2/local/app/tags/list", status: 200, respBody: `{"name":"local/app","tags":[]}`},
		{name: "delete again", method: "DELETE", path: "/v2/local/app/manifests/" + d, status: 404, code: errcode.ManifestUnknown},
		{name: "no PATCH on manifests", method: "PATCH", path: "/v2/local/app/manifests/x", status: 405, code: errcode.Unsupported, headers: map[string]string{"Allow": "GET, HEAD, PUT, DELETE"}},
	} {
		x.run(t, h, "")
	}

	// Referrers: the index is global, a push repository lists what it
	// holds.
	send(h, "PUT", "/v2/local/app/manifests/latest", string(body), oci)
	send(h, "PUT", "/v2/local/app/manifests/sig", string(sig), oci)
	for _, tt := range []struct {
		path string
		n    int
	}{
		{"/v2/local/app/referrers/" + d, 1},
		{"/v2/local/other/referrers/" + d, 0},
		{"/v2/local/app/referrers/" + d + "?artifactType=" + url.QueryEscape(v1.MediaTypeImageConfig), 1},
		{"/v2/local/app/referrers/" + d + "?artifactType=application/other", 0},
	} {
		w := send(h, "GET", tt.path, "", nil)
		var idx v1.Index
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &idx) != nil || len(idx.Manifests) != tt.n {
			t.Errorf("GET %s: %d %s, want %d referrers", tt.path, w.Code, w.Body, tt.n)
		} else if tt.n == 1 && idx.Manifests[0].Digest.String() != sigD {
			t.Errorf("GET %s: %+v", tt.path, idx.Manifests)
		}
	}
	if n := f.images.calls.Load(); n != 0 {
		t.Errorf("push repositories reached Images %d times", n)
	}
}

// TestPushOnlyInNamespaces: names outside the push namespaces stay
// read-only, with a message that says where pushes go; a registry
// without push namespaces says it takes none.
func TestPushOnlyInNamespaces(t *testing.T) {
	f := pushFixture(t, nil)
	for _, x := range []exchange{
		{name: "manifest PUT", method: "PUT", path: "/v2/hello/manifests/latest", body: "{}", status: 405, code: errcode.Unsupported},
		{name: "upload POST", method: "POST", path: "/v2/shell/hello/blobs/uploads/", status: 405, code: errcode.Unsupported},
		{name: "upload GET", method: "GET", path: "/v2/hello/blobs/uploads/" + strings.Repeat("a", 32), status: 405, code: errcode.Unsupported},
		{name: "blob DELETE", method: "DELETE", path: "/v2/hello/blobs/" + f.layerDigest.String(), status: 405, code: errcode.Unsupported},
		{name: "POST on the base", method: "POST", path: "/v2/", status: 405, code: errcode.Unsupported},
		{name: "OPTIONS", method: "OPTIONS", path: "/v2/local/app/manifests/latest", status: 405, code: errcode.Unsupported},
		{name: "pulls go on", method: "GET", path: "/v2/hello/manifests/latest", status: 200},
	} {
		w := x.run(t, f.handler, "")
		if x.code == errcode.Unsupported && x.method != "OPTIONS" && x.path != "/v2/" {
			if e := decodeError(t, w); !strings.Contains(e.Message, "push to a repository under ci/, local/") {
				t.Errorf("%s: message %q", x.name, e.Message)
			}
		}
	}
	plain := newFixture(t)
	w := send(plain.handler, "POST", "/v2/local/app/blobs/uploads/", "", nil)
	if e := decodeError(t, w); w.Code != 405 || !strings.Contains(e.Message, "read-only") {
		t.Errorf("without push namespaces: %d %s", w.Code, e.Message)
	}
}

// TestPushAuth: with credentials configured, every write needs them
// whatever the mode, and GET /v2/ asks for them so that docker sends
// them; an upload belongs to whom started it.
func TestPushAuth(t *testing.T) {
	f := pushFixture(t, twoUsers{})
	h := f.handler
	alice, bob := basic("alice", "secret"), basic("bob", "hunter2")
	for _, x := range []exchange{
		{name: "ping asks", method: "GET", path: "/v2/", status: 401, code: errcode.Unauthorized, headers: map[string]string{"WWW-Authenticate": `Bearer realm="http://example.com/auth/token",service="nixport"`}},
		{name: "ping with the anonymous token", method: "GET", path: "/v2/", header: bearer("anonymous"), status: 200},
		{name: "anonymous push with the anonymous token", method: "POST", path: "/v2/local/app/blobs/uploads/", header: bearer("anonymous"), status: 401, code: errcode.Unauthorized},
		{name: "push with a token", method: "POST", path: "/v2/local/app/blobs/uploads/", header: bearer("tok-alice"), status: 202},
		{name: "ping with credentials", method: "GET", path: "/v2/", header: alice, status: 200},
		{name: "anonymous push", method: "POST", path: "/v2/local/app/blobs/uploads/", status: 401, code: errcode.Unauthorized},
		{name: "anonymous delete", method: "DELETE", path: "/v2/local/app/manifests/latest", status: 401, code: errcode.Unauthorized},
		{name: "anonymous write elsewhere", method: "PUT", path: "/v2/hello/manifests/latest", status: 401, code: errcode.Unauthorized},
		{name: "anonymous pull", method: "GET", path: "/v2/local/app/manifests/latest", status: 404, code: errcode.ManifestUnknown},
		{name: "wrong password", method: "POST", path: "/v2/local/app/blobs/uploads/", header: basic("alice", "nope"), status: 401},
		{name: "push with credentials", method: "POST", path: "/v2/local/app/blobs/uploads/", header: alice, status: 202},
	} {
		x.run(t, h, "")
	}
	loc := send(h, "POST", "/v2/local/app/blobs/uploads/", "", alice).Header().Get("Location")
	exchange{name: "the owner", method: "GET", path: "{upload}", header: alice, status: 204}.run(t, h, loc)
	exchange{name: "another user", method: "PATCH", path: "{upload}", body: "x", header: bob, status: 404, code: errcode.BlobUploadUnknown}.run(t, h, loc)
}

// twoUsers verifies alice's password "secret" and bob's "hunter2".
type twoUsers struct{}

func (twoUsers) Verify(user, password string) error {
	if (user == "alice" && password == "secret") || (user == "bob" && password == "hunter2") {
		return nil
	}
	return errcode.New(errcode.Unauthorized, "wrong")
}

func (twoUsers) Token(user string, now time.Time) (string, error) { return "tok-" + user, nil }

func (twoUsers) VerifyToken(token string, now time.Time) (string, error) {
	switch token {
	case "tok-alice":
		return "alice", nil
	case "tok-bob":
		return "bob", nil
	}
	return "", auth.ErrBadToken
}

// FuzzPush sends arbitrary requests (method, path, query, Content-Range,
// Content-Type, body: everything a pushing client controls) to a handler
// with push namespaces over real storage: nothing panics, no client input
// is answered as a server fault, and every error is an OCI error body.
//
//	go test ./web -run '^$' -fuzz FuzzPush -fuzztime 1m
func FuzzPush(f *testing.F) {
	d := digest.FromString("x").String()
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"` + d + `","size":1},"layers":[]}`
	for _, s := range []struct {
		method                           uint8
		path, query, crange, ctype, body string
	}{
		{0, "/v2/local/app/blobs/uploads/", "", "", "", ""},
		{0, "/v2/local/app/blobs/uploads/", "digest=" + d, "", "application/octet-stream", "x"},
		{0, "/v2/local/app/blobs/uploads/", "mount=" + d + "&from=local/b", "", "", ""},
		{1, "/v2/local/app/blobs/uploads/" + strings.Repeat("a", 32), "", "0-0", "", "x"},
		{2, "/v2/local/app/blobs/uploads/" + strings.Repeat("a", 32), "digest=" + d, "", "", ""},
		{2, "/v2/local/app/manifests/latest", "", "", "application/vnd.oci.image.manifest.v1+json", manifest},
		{2, "/v2/local/app/manifests/" + d, "tag=a&tag=b", "", "", manifest},
		{3, "/v2/local/app/manifests/latest", "", "", "", ""},
		{3, "/v2/local/app/blobs/" + d, "", "", "", ""},
		{4, "/v2/local/app/tags/list", "n=1&last=a", "", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.crange, s.ctype, []byte(s.body))
	}
	fx := newFixture(f)
	reg, err := push.New(push.Options{Storage: fx.store, Namespaces: []string{"local"}, MaxUploadBytes: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { reg.Close() })
	quiet := logrus.New()
	quiet.Out = io.Discard
	h, err := New(Options{Storage: fx.store, Images: fx.images, Log: quiet, Push: reg})
	if err != nil {
		f.Fatal(err)
	}
	methods := []string{"POST", "PATCH", "PUT", "DELETE", "GET", "HEAD"}
	f.Fuzz(func(t *testing.T, m uint8, p, query, crange, ctype string, body []byte) {
		r := httptest.NewRequest("GET", "/", bytes.NewReader(body))
		r.Method = methods[int(m)%len(methods)]
		r.URL = &url.URL{Path: p, RawQuery: query}
		r.RequestURI = r.URL.RequestURI()
		r.ContentLength = int64(len(body))
		if crange != "" {
			r.Header.Set("Content-Range", crange)
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s: status %d: %s", r.Method, p, query, w.Code, w.Body.String())
		}
		if isRegistryPath(p) && w.Code >= 400 && r.Method != "HEAD" {
			decodeError(t, w)
		}
	})
}
