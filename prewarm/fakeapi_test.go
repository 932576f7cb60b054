package prewarm

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/reference"
)

// fakeAPI is a nixport server's build status API as its contract says,
// with builds that follow a script:
//
//	POST /api/builds {"image", "tag"} → 202 + the build + Location: /api/builds/{id};
//	                                    200 + done for an image built already;
//	                                    202 + the same build while one runs (joined)
//	GET /api/builds/{id}              → 200 + the build, one step further each time
//
// and every error an OCI error body. Builds are buildstatus.Status, the type
// the server encodes.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	scripts map[string]*script    // by "name:tag"
	builds  map[string]*fakeBuild // by id
	running map[string]*fakeBuild // by "name:tag", until final
	posts   map[string]int        // by "name:tag"
	nextID  int
}

// script is what the builds of one image do.
type script struct {
	built     bool                 // built already: POST answers 200 and done
	states    []buildstatus.Status // a build's states, one GET after another; the last is final
	postError *fakeError           // POST answers this instead
	gets503   int                  // the first GETs of each build answer 503 (an overloaded proxy)
	posts500  int                  // the first POSTs answer 500 (a fault of the server)
	forget    bool                 // the first GET of the first build answers 404 (the server restarted)
}

type fakeError struct {
	status  int
	code    errcode.Code
	message string
}

type fakeBuild struct {
	status buildstatus.Status
	key    string
	step   int
	gets   []time.Time
}

func newFakeAPI(t *testing.T, scripts map[string]*script) *fakeAPI {
	f := &fakeAPI{t: t, scripts: scripts, builds: map[string]*fakeBuild{}, running: map[string]*fakeBuild{}, posts: map[string]int{}}
	for key, s := range scripts {
		if s.built || s.postError != nil {
			continue
		}
		if n := len(s.states); n == 0 || !s.states[n-1].State.Finished() {
			t.Fatalf("script of %s: the last state must be final", key)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/builds", f.post)
	mux.HandleFunc("GET /api/builds/{id}", f.get)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		writeOCIError(w, &fakeError{http.StatusNotFound, errcode.NameUnknown, "no such route"})
	})
	f.srv = httptest.NewServer(mux) // on 127.0.0.1
	t.Cleanup(f.srv.Close)
	return f
}

func writeOCIError(w http.ResponseWriter, e *fakeError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "req-error")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": e.code, "message": e.message}}})
}

func writeBuild(w http.ResponseWriter, code int, st buildstatus.Status) {
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusAccepted {
		w.Header().Set("Location", "/api/builds/"+st.ID)
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(st)
}

func (f *fakeAPI) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("POST with Content-Type %q", ct)
	}
	var req struct {
		Image string `json:"image"`
		Tag   string `json:"tag"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeOCIError(w, &fakeError{http.StatusBadRequest, errcode.ManifestInvalid, "body: " + err.Error()})
		return
	}
	if err := reference.CheckName(req.Image); err != nil {
		writeOCIError(w, &fakeError{http.StatusBadRequest, errcode.NameInvalid, err.Error()})
		return
	}
	if !reference.ValidTag(req.Tag) {
		writeOCIError(w, &fakeError{http.StatusBadRequest, errcode.TagInvalid, "invalid tag"})
		return
	}
	key := req.Image + ":" + req.Tag
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts[key]++
	s := f.scripts[key]
	switch {
	case s == nil:
		f.t.Errorf("POST of %s, which the test does not expect", key)
		writeOCIError(w, &fakeError{http.StatusInternalServerError, errcode.Unknown, "internal server error"})
		return
	case s.postError != nil:
		writeOCIError(w, s.postError)
		return
	case f.posts[key] <= s.posts500:
		writeOCIError(w, &fakeError{http.StatusInternalServerError, errcode.Unknown, "internal server error"})
		return
	case s.built:
		// As the builder answers it: no build, so no id and no times.
		writeBuild(w, http.StatusOK, buildstatus.Status{
			Image: req.Image, Tag: req.Tag, Source: "nix", State: buildstatus.Done, ManifestDigest: digestOf(key),
		})
		return
	}
	b := f.running[key]
	if b == nil { // else joined
		b = &fakeBuild{key: key, status: buildstatus.Status{
			ID: f.newID(), Image: req.Image, Tag: req.Tag, Source: "nix", State: buildstatus.Queued,
			QueuedAt: time.Now().UTC(), RequestID: "req-" + strconv.Itoa(f.nextID),
		}}
		f.advance(b, s)
		f.builds[b.status.ID] = b
		f.running[key] = b
	}
	writeBuild(w, http.StatusAccepted, b.status)
}

func (f *fakeAPI) get(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.builds[r.PathValue("id")]
	if b == nil {
		writeOCIError(w, &fakeError{http.StatusNotFound, "BUILD_UNKNOWN", "no build " + r.PathValue("id")})
		return
	}
	b.gets = append(b.gets, time.Now())
	if b.status.State.Finished() {
		f.t.Errorf("GET of build %s (%s), which had finished", b.status.ID, b.key)
	}
	s := f.scripts[b.key]
	if s.forget && f.posts[b.key] == 1 {
		delete(f.builds, b.status.ID)
		delete(f.running, b.key)
		writeOCIError(w, &fakeError{http.StatusNotFound, "BUILD_UNKNOWN", "no build " + b.status.ID})
		return
	}
	if len(b.gets) <= s.gets503 {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "<html><body>503 Service Temporarily Unavailable</body></html>")
		return
	}
	f.advance(b, s)
	st := b.status
	st.Log = "building...\n"
	writeBuild(w, http.StatusOK, st)
}

// advance moves b to its script's next state, keeping the fields the
// server sets: id, image, times.
func (f *fakeAPI) advance(b *fakeBuild, s *script) {
	next := s.states[min(b.step, len(s.states)-1)]
	b.step++
	cur := b.status
	st := next
	st.ID, st.Image, st.Tag, st.Source, st.QueuedAt, st.RequestID = cur.ID, cur.Image, cur.Tag, cur.Source, cur.QueuedAt, cur.RequestID
	st.StartedAt, st.FinishedAt = cur.StartedAt, cur.FinishedAt
	now := time.Now().UTC()
	if st.State != buildstatus.Queued && st.StartedAt == nil {
		st.StartedAt = &now
	}
	if st.State.Finished() {
		st.FinishedAt = &now
		if st.State == buildstatus.Done && st.ManifestDigest == "" {
			st.ManifestDigest = digestOf(b.key)
		}
		delete(f.running, b.key)
	}
	b.status = st
}

func (f *fakeAPI) newID() string {
	f.nextID++
	return fmt.Sprintf("b%04d", f.nextID)
}

// digestOf is a made-up manifest digest, the same for the same image.
func digestOf(key string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(key)))
}

// buildsOf is the builds of image key.
func (f *fakeAPI) buildsOf(key string) []*fakeBuild {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bs []*fakeBuild
	for _, b := range f.builds {
		if b.key == key {
			bs = append(bs, b)
		}
	}
	return bs
}

// requests is how many POSTs the API answered, in all.
func (f *fakeAPI) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.posts {
		n += c
	}
	return n
}
