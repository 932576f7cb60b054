package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/requestid"
)

// fakeBuilds implements Builds from a list of builds: Start joins a build
// of the same image and tag that is not finished, answers an image in
// built as done, and otherwise adds a queued build.
type fakeBuilds struct {
	mu       sync.Mutex
	builds   []buildstatus.Status         // newest first, with their logs
	built    map[string]string            // "name:tag" → manifest digest
	startErr error                        // if set, Start returns it
	panic    bool                         // if set, every call panics
	starts   []string                     // "name:tag" of each Start
	ctxIDs   []string                     // the request id in each Start's context
	now      func() time.Time             // for new builds; nil is a fixed time
	onStart  func(st *buildstatus.Status) // changes a new build, if set
}

var fakeTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func (f *fakeBuilds) Start(ctx context.Context, name, tag string) (buildstatus.Status, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panic {
		panic("fake builds: panic on purpose")
	}
	f.starts = append(f.starts, name+":"+tag)
	f.ctxIDs = append(f.ctxIDs, requestid.FromContext(ctx))
	if f.startErr != nil {
		return buildstatus.Status{}, false, f.startErr
	}
	if d, ok := f.built[name+":"+tag]; ok {
		return buildstatus.Status{Image: name, Tag: tag, Source: "nix", State: buildstatus.Done, ManifestDigest: d}, true, nil
	}
	for _, b := range f.builds {
		if b.Image == name && b.Tag == tag && !b.State.Finished() {
			b.Log = ""
			return b, false, nil
		}
	}
	st := buildstatus.Status{
		ID: "new" + string(rune('a'+len(f.builds))), Image: name, Tag: tag, Source: "nix",
		State: buildstatus.Queued, QueuedAt: fakeTime, RequestID: requestid.FromContext(ctx),
	}
	if f.onStart != nil {
		f.onStart(&st)
	}
	f.builds = append([]buildstatus.Status{st}, f.builds...)
	return st, false, nil
}

func (f *fakeBuilds) Builds() []buildstatus.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panic {
		panic("fake builds: panic on purpose")
	}
	out := make([]buildstatus.Status, len(f.builds))
	copy(out, f.builds)
	for i := range out {
		out[i].Log = ""
	}
	return out
}

func (f *fakeBuilds) Build(id string) (buildstatus.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.builds {
		if b.ID == id {
			return b, true
		}
	}
	return buildstatus.Status{}, false
}

// newFakeBuilds holds a running build, a failed one and a done one, and
// knows one image as built.
func newFakeBuilds() *fakeBuilds {
	at := func(s int) *time.Time { t := fakeTime.Add(time.Duration(s) * time.Second); return &t }
	return &fakeBuilds{
		builds: []buildstatus.Status{
			{
				ID: "run1", Image: "shell/git/htop", Tag: "latest", Source: "nix", State: buildstatus.Realising,
				PathsDone: 3, PathsTotal: 10, QueuedAt: fakeTime, StartedAt: at(1), RequestID: "req-run1",
				Log: "building '/nix/store/abc-htop.drv'...\n<script>alert(1)</script>\n",
			},
			{
				ID: "fail1", Image: "broken", Tag: "latest", Source: "nix", State: buildstatus.Failed,
				QueuedAt: fakeTime, StartedAt: at(1), FinishedAt: at(2),
				Error: "package broken failed to build\nthe last lines of its log", Log: "error: builder failed\n",
			},
			{
				ID: "done1", Image: "hello", Tag: "v1", Source: "nix", State: buildstatus.Done,
				LayersDone: 4, LayersTotal: 4, BytesCompressed: 3 << 20,
				QueuedAt: fakeTime, StartedAt: at(1), FinishedAt: at(5), ManifestDigest: "sha256:" + strings.Repeat("d", 64),
			},
		},
		built: map[string]string{"hello:latest": "sha256:" + strings.Repeat("e", 64)},
	}
}

// doBody sends one request with a body through h.
func doBody(h http.Handler, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestBuildAPI runs every route, method and error of /api/builds through
// the handler, with its middleware, over a fake builder.
func TestBuildAPI(t *testing.T) {
	type want struct {
		status   int
		code     errcode.Code // for errors
		message  string       // in the error's message
		allow    string       // the Allow header of a 405
		location string       // the Location header
		id       string       // the build's id, for a status answer
		state    buildstatus.State
		start    string // the Start call made, "name:tag"; "" for none
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		want   want
	}{
		// Starting builds.
		{"start", "POST", "/api/builds", `{"image": "shell/curl", "tag": "v2"}`,
			want{status: 202, location: "/api/builds/newd", id: "newd", state: buildstatus.Queued, start: "shell/curl:v2"}},
		{"start, tag defaults to latest", "POST", "/api/builds", `{"image": "shell/curl"}`,
			want{status: 202, location: "/api/builds/newd", id: "newd", state: buildstatus.Queued, start: "shell/curl:latest"}},
		{"start, empty tag is latest", "POST", "/api/builds", `{"image": "shell/curl", "tag": ""}`,
			want{status: 202, location: "/api/builds/newd", id: "newd", start: "shell/curl:latest", state: buildstatus.Queued}},
		{"start joins a running build", "POST", "/api/builds", `{"image": "shell/git/htop"}`,
			want{status: 202, location: "/api/builds/run1", id: "run1", state: buildstatus.Realising, start: "shell/git/htop:latest"}},
		{"start of an image already built", "POST", "/api/builds", `{"image": "hello", "tag": "latest"}`,
			want{status: 200, state: buildstatus.Done, start: "hello:latest"}},
		{"start, longest name and tag", "POST", "/api/builds", `{"image": "` + strings.Repeat("a", 255) + `", "tag": "` + strings.Repeat("t", 128) + `"}`,
			want{status: 202, location: "/api/builds/newd", id: "newd", state: buildstatus.Queued, start: strings.Repeat("a", 255) + ":" + strings.Repeat("t", 128)}},

		// Bad requests, refused before the builder is asked.
		{"malformed JSON", "POST", "/api/builds", `{"image": "hello"`, want{status: 400, code: requestInvalid, message: "malformed JSON: it ends early"}},
		{"not JSON", "POST", "/api/builds", `image=hello`, want{status: 400, code: requestInvalid, message: "malformed JSON at byte"}},
		{"empty body", "POST", "/api/builds", ``, want{status: 400, code: requestInvalid, message: `{"image": "shell/hello", "tag": "latest"}`}},
		{"a list", "POST", "/api/builds", `["hello"]`, want{status: 400, code: requestInvalid, message: "a JSON array where an object belongs"}},
		{"unknown field", "POST", "/api/builds", `{"image": "hello", "packages": ["git"]}`, want{status: 400, code: requestInvalid, message: `unknown field "packages"`}},
		{"wrong type", "POST", "/api/builds", `{"image": 3}`, want{status: 400, code: requestInvalid, message: `field "image": a JSON number where a string belongs`}},
		{"data after the object", "POST", "/api/builds", `{"image": "hello"} {}`, want{status: 400, code: requestInvalid, message: "data after the JSON value"}},
		{"no image", "POST", "/api/builds", `{"tag": "latest"}`, want{status: 400, code: requestInvalid, message: `field "image" is required`}},
		{"bad name", "POST", "/api/builds", `{"image": "Shell/Hello"}`, want{status: 400, code: errcode.NameInvalid, message: `invalid repository name "Shell/Hello"`}},
		{"name with an empty component", "POST", "/api/builds", `{"image": "shell//hello"}`, want{status: 400, code: errcode.NameInvalid}},
		{"name too long", "POST", "/api/builds", `{"image": "` + strings.Repeat("a/", 400) + `a"}`, want{status: 400, code: errcode.NameInvalid, message: "at most 768"}},
		{"component too long", "POST", "/api/builds", `{"image": "` + strings.Repeat("a", 256) + `"}`, want{status: 400, code: errcode.NameInvalid, message: "at most 255"}},
		{"bad tag", "POST", "/api/builds", `{"image": "hello", "tag": "-latest"}`, want{status: 400, code: errcode.TagInvalid, message: `invalid tag "-latest"`}},
		{"tag too long", "POST", "/api/builds", `{"image": "hello", "tag": "` + strings.Repeat("t", 129) + `"}`, want{status: 400, code: errcode.TagInvalid}},
		{"body too large", "POST", "/api/builds", `{"image": "hello", "tag": "` + strings.Repeat(" ", maxStartRequestBytes) + `"}`,
			want{status: 413, code: requestTooLarge, message: "larger than 8192 bytes"}},

		// Listing and showing.
		{"list", "GET", "/api/builds", "", want{status: 200}},
		{"list HEAD", "HEAD", "/api/builds", "", want{status: 200}},
		{"one", "GET", "/api/builds/run1", "", want{status: 200, id: "run1", state: buildstatus.Realising}},
		{"one HEAD", "HEAD", "/api/builds/done1", "", want{status: 200}},
		{"one unknown", "GET", "/api/builds/nope", "", want{status: 404, code: buildUnknown, message: `no build "nope"`}},
		{"one unknown HEAD", "HEAD", "/api/builds/nope", "", want{status: 404}},
		{"one, deeper", "GET", "/api/builds/run1/log", "", want{status: 404, code: errcode.NameUnknown, message: "unknown API endpoint"}},
		{"empty id", "GET", "/api/builds/", "", want{status: 404, code: errcode.NameUnknown}},
		{"api root", "GET", "/api", "", want{status: 404, code: errcode.NameUnknown}},
		{"api other", "GET", "/api/images", "", want{status: 404, code: errcode.NameUnknown}},

		// Methods.
		{"PUT the list", "PUT", "/api/builds", `{"image": "hello"}`, want{status: 405, code: errcode.Unsupported, allow: "GET, HEAD, POST"}},
		{"DELETE the list", "DELETE", "/api/builds", "", want{status: 405, code: errcode.Unsupported, allow: "GET, HEAD, POST"}},
		{"POST one", "POST", "/api/builds/run1", `{}`, want{status: 405, code: errcode.Unsupported, allow: "GET, HEAD"}},
		{"DELETE one", "DELETE", "/api/builds/run1", "", want{status: 405, code: errcode.Unsupported, allow: "GET, HEAD"}},
		{"OPTIONS one", "OPTIONS", "/api/builds/run1", "", want{status: 405, code: errcode.Unsupported, allow: "GET, HEAD"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			w := doBody(f.handler, c.method, c.path, c.body, nil)
			if w.Code != c.want.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want.status, w.Body.String())
			}
			if got := w.Header().Get("Location"); got != c.want.location {
				t.Errorf("Location %q, want %q", got, c.want.location)
			}
			if got := w.Header().Get("Allow"); got != c.want.allow {
				t.Errorf("Allow %q, want %q", got, c.want.allow)
			}
			if w.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id: the request missed the middleware")
			}
			if w.Header().Get("Docker-Distribution-Api-Version") != "" {
				t.Error("the registry's header on an API answer")
			}
			var starts []string
			f.builds.mu.Lock()
			starts = append(starts, f.builds.starts...)
			f.builds.mu.Unlock()
			if c.want.start == "" && len(starts) != 0 || c.want.start != "" && (len(starts) != 1 || starts[0] != c.want.start) {
				t.Errorf("Start calls %q, want %q", starts, c.want.start)
			}
			if c.method == "HEAD" {
				if w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
					t.Errorf("HEAD: %d bytes of body, Content-Length %q", w.Body.Len(), w.Header().Get("Content-Length"))
				}
				return
			}
			if c.want.code != "" {
				e := decodeError(t, w)
				if e.Code != c.want.code || !strings.Contains(e.Message, c.want.message) {
					t.Errorf("error %s %q, want %s with %q", e.Code, e.Message, c.want.code, c.want.message)
				}
				return
			}
			if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
				t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
			}
			if c.want.state == "" {
				return
			}
			var st buildstatus.Status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
				t.Fatalf("status %s: %v", w.Body.String(), err)
			}
			if st.ID != c.want.id || st.State != c.want.state {
				t.Errorf("build %q in state %s, want %q in %s", st.ID, st.State, c.want.id, c.want.state)
			}
		})
	}
}

// TestBuildAPIBodies checks what the list and one build say: the list,
// newest first, without logs; one build, with its log; a start, with the
// request's id; an image already built, with its manifest.
func TestBuildAPIBodies(t *testing.T) {
	f := newFixture(t)
	w := f.do("GET", "/api/builds", nil)
	var raw struct {
		Builds []map[string]any `json:"builds"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range raw.Builds {
		ids = append(ids, b["id"].(string))
		if _, ok := b["log"]; ok {
			t.Errorf("build %s listed with its log", b["id"])
		}
	}
	if strings.Join(ids, ",") != "run1,fail1,done1" {
		t.Errorf("listed %v, want run1, fail1, done1", ids)
	}
	if raw.Builds[0]["paths_done"] != 3.0 || raw.Builds[0]["paths_total"] != 10.0 || raw.Builds[0]["started_at"] != "2026-03-04T05:06:08Z" {
		t.Errorf("running build listed as %v", raw.Builds[0])
	}

	var one buildstatus.Status
	json.Unmarshal(f.do("GET", "/api/builds/run1", nil).Body.Bytes(), &one)
	if !strings.Contains(one.Log, "abc-htop.drv") || one.RequestID != "req-run1" {
		t.Errorf("one build: %+v", one)
	}

	// A start carries the request's id to the builder.
	w = doBody(f.handler, "POST", "/api/builds", `{"image": "shell/jq"}`, http.Header{"X-Request-Id": {"my-request-1234"}})
	var st buildstatus.Status
	json.Unmarshal(w.Body.Bytes(), &st)
	if f.builds.ctxIDs[0] != "my-request-1234" || st.RequestID != "my-request-1234" {
		t.Errorf("request id in Start's context %q, in the status %q", f.builds.ctxIDs[0], st.RequestID)
	}
	// The new build is listed and shown.
	if w := f.do("GET", w.Header().Get("Location"), nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"image":"shell/jq"`) {
		t.Errorf("the Location of a new build: %d %s", w.Code, w.Body.String())
	}

	// An image already built: done, its manifest, no time of a build.
	w = doBody(f.handler, "POST", "/api/builds", `{"image": "hello"}`, nil)
	var done map[string]any
	json.Unmarshal(w.Body.Bytes(), &done)
	if done["state"] != "done" || done["manifest_digest"] != "sha256:"+strings.Repeat("e", 64) {
		t.Errorf("an image already built: %s", w.Body.String())
	}
	if _, ok := done["queued_at"]; ok {
		t.Errorf("an image already built has a queue time: %s", w.Body.String())
	}

	// An empty list is a list.
	f.builds.builds = nil
	if body := f.do("GET", "/api/builds", nil).Body.String(); body != "{\"builds\":[]}\n" {
		t.Errorf("empty list: %q", body)
	}
}

// TestBuildAPIStartErrors: the builder's *errcode.Error reaches the client
// with its status and message; any other error is a 500 that says nothing
// of its cause, which goes to the log; a panic is recovered.
func TestBuildAPIStartErrors(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		status  int
		code    errcode.Code
		message string
	}{
		{"build failed", errcode.New(errcode.BuildFailed, "package broken failed to build"), 422, errcode.BuildFailed, "package broken failed to build"},
		{"unknown package", errcode.New(errcode.NameUnknown, "no package nope"), 404, errcode.NameUnknown, "no package nope"},
		{"wrapped", errors.Join(errors.New("context"), errcode.New(errcode.NameInvalid, "too many packages")), 400, errcode.NameInvalid, "too many packages"},
		{"shutting down", errcode.New(errcode.Unavailable, "the registry is shutting down: try again"), 503, errcode.Unavailable, "shutting down"},
		{"server fault", errors.New("storage: disk on fire"), 500, errcode.Unknown, "internal server error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.builds.startErr = c.err
			w := doBody(f.handler, "POST", "/api/builds", `{"image": "broken"}`, nil)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body.String())
			}
			e := decodeError(t, w)
			if e.Code != c.code || !strings.Contains(e.Message, c.message) {
				t.Errorf("error %s %q, want %s %q", e.Code, e.Message, c.code, c.message)
			}
			if strings.Contains(w.Body.String(), "disk on fire") {
				t.Error("a server fault's cause reached the client")
			}
		})
	}

	f := newFixture(t)
	f.builds.panic = true
	for _, req := range []struct{ method, path, body string }{{"GET", "/api/builds", ""}, {"POST", "/api/builds", `{"image": "hello"}`}} {
		w := doBody(f.handler, req.method, req.path, req.body, nil)
		if w.Code != 500 || decodeError(t, w).Code != errcode.Unknown {
			t.Errorf("%s %s with a panicking builder: %d %s", req.method, req.path, w.Code, w.Body.String())
		}
	}
	// Each of those requests has its line in the access log.
	n := 0
	for _, l := range f.logs.lines(t) {
		if l["msg"] == "request" && l["path"] == "/api/builds" && l["status"] == 500.0 {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d access log lines of the panics, want 2", n)
	}
}

// TestBuildAPILogLine: an API request gets the one access log line, with
// the image and tag it named.
func TestBuildAPILogLine(t *testing.T) {
	f := newFixture(t)
	doBody(f.handler, "POST", "/api/builds", `{"image": "shell/curl", "tag": "v3"}`, nil)
	for _, l := range f.logs.lines(t) {
		if l["msg"] == "request" && l["path"] == "/api/builds" {
			if l["status"] != 202.0 || l["image"] != "shell/curl" || l["tag"] != "v3" || l["request_id"] == "" {
				t.Errorf("log line %v", l)
			}
			return
		}
	}
	t.Error("no access log line for POST /api/builds")
}

// TestNoBuilds: without Builds, the API and the build pages are not found.
func TestNoBuilds(t *testing.T) {
	f := newFixture(t)
	h, err := New(Options{Storage: f.store, Images: f.images})
	if err != nil {
		t.Fatal(err)
	}
	if w := httpDo(h, "GET", "/api/builds", nil); w.Code != 404 || decodeError(t, w).Code != errcode.NameUnknown {
		t.Errorf("/api/builds without builds: %d %s", w.Code, w.Body.String())
	}
	if w := httpDo(h, "GET", "/builds", nil); w.Code != 404 || !strings.Contains(w.Body.String(), "Page not found") {
		t.Errorf("/builds without builds: %d", w.Code)
	}
}

// TestBuildInProgressLinksTheBuild: the BUILD_IN_PROGRESS of a manifest
// request names the build's page by an absolute URL, with the scheme and
// host the client used, so that docker pull prints a link.
func TestBuildInProgressLinksTheBuild(t *testing.T) {
	const msg = "hello:latest is still being built (10m0s so far, now realising); the build goes on: pull again later, or follow it at /builds/0123abcd"
	orig := &errcode.Error{Code: errcode.BuildInProgress, Message: msg, Detail: map[string]string{"build": "0123abcd"}}
	cases := []struct {
		name, host string
		tls        bool
		want       string
	}{
		{"http", "registry.test:5000", false, "follow it at http://registry.test:5000/builds/0123abcd"},
		{"https", "registry.test", true, "follow it at https://registry.test/builds/0123abcd"},
		{"IPv6", "[::1]:8080", false, "follow it at http://[::1]:8080/builds/0123abcd"},
		{"a Host that is no host", `evil"/x`, false, "follow it at /builds/0123abcd"},
		{"no Host", "", false, "follow it at /builds/0123abcd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.images.fail = orig
			r := httptest.NewRequest("GET", "/v2/hello/manifests/latest", nil)
			r.Host = c.host
			if c.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			f.handler.ServeHTTP(w, r)
			if w.Code != 409 {
				t.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
			e := decodeError(t, w)
			if e.Code != errcode.BuildInProgress || !strings.HasSuffix(e.Message, c.want) || !strings.HasPrefix(e.Message, "hello:latest is still being built") {
				t.Errorf("message %q, want it to end with %q", e.Message, c.want)
			}
			if d, _ := e.Detail.(map[string]any); d["build"] != "0123abcd" {
				t.Errorf("detail %v", e.Detail)
			}
			if orig.Message != msg {
				t.Errorf("the builder's error was changed: %q", orig.Message)
			}
		})
	}
	// Other errors keep their message.
	f := newFixture(t)
	f.images.fail = errcode.New(errcode.BuildFailed, "see /builds/x")
	if e := decodeError(t, f.do("GET", "/v2/hello/manifests/latest", nil)); e.Message != "see /builds/x" {
		t.Errorf("BUILD_FAILED message changed: %q", e.Message)
	}
}
