package storagetest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

func runServeTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("Requests", func(t *testing.T) {
		b := newBackend(t)
		content := randomBytes(5, 10_000)
		info := putBlob(t, b, layerType, content)
		dgst := info.Digest
		size := len(content)
		etag := `"` + dgst.String() + `"`
		srv := newServeFixture(t, b)

		tests := []struct {
			name        string
			method      string
			header      map[string]string
			wantStatus  int
			wantBody    []byte // nil: not checked
			wantLength  int    // Content-Length; -1: not checked
			wantRange   string // Content-Range; "": not checked
			wantHeaders bool   // Content-Type, Docker-Content-Digest, ETag
		}{
			{
				name: "GET whole", method: "GET",
				wantStatus: 200, wantBody: content, wantLength: size, wantHeaders: true,
			},
			{
				name: "HEAD", method: "HEAD",
				wantStatus: 200, wantBody: []byte{}, wantLength: size, wantHeaders: true,
			},
			{
				name: "Range", method: "GET", header: map[string]string{"Range": "bytes=10-19"},
				wantStatus: 206, wantBody: content[10:20], wantLength: 10,
				wantRange: fmt.Sprintf("bytes 10-19/%d", size), wantHeaders: true,
			},
			{
				name: "Range open-ended", method: "GET", header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", size-5)},
				wantStatus: 206, wantBody: content[size-5:], wantLength: 5,
				wantRange: fmt.Sprintf("bytes %d-%d/%d", size-5, size-1, size),
			},
			{
				name: "Range suffix", method: "GET", header: map[string]string{"Range": "bytes=-7"},
				wantStatus: 206, wantBody: content[size-7:], wantLength: 7,
			},
			{
				name: "Range unsatisfiable", method: "GET", header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)},
				wantStatus: 416, wantLength: -1,
			},
			{
				name: "If-None-Match matching", method: "GET", header: map[string]string{"If-None-Match": etag},
				wantStatus: 304, wantBody: []byte{}, wantLength: -1,
			},
			{
				name: "If-None-Match matching, HEAD", method: "HEAD", header: map[string]string{"If-None-Match": etag},
				wantStatus: 304, wantBody: []byte{}, wantLength: -1,
			},
			{
				name: "If-None-Match other", method: "GET", header: map[string]string{"If-None-Match": `"` + digest.FromString("x").String() + `"`},
				wantStatus: 200, wantBody: content, wantLength: size, wantHeaders: true,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp := srv.get(t, tt.method, dgst, tt.header)
				if resp.status != tt.wantStatus {
					t.Fatalf("status %d, want %d", resp.status, tt.wantStatus)
				}
				if tt.wantBody != nil && string(resp.body) != string(tt.wantBody) {
					t.Errorf("body is %d bytes (%s), want %d bytes (%s)",
						len(resp.body), digest.FromBytes(resp.body), len(tt.wantBody), digest.FromBytes(tt.wantBody))
				}
				if tt.wantLength >= 0 {
					if got := resp.header.Get("Content-Length"); got != strconv.Itoa(tt.wantLength) {
						t.Errorf("Content-Length %q, want %d", got, tt.wantLength)
					}
				}
				if tt.wantRange != "" {
					if got := resp.header.Get("Content-Range"); got != tt.wantRange {
						t.Errorf("Content-Range %q, want %q", got, tt.wantRange)
					}
				}
				if tt.wantHeaders {
					if got := resp.header.Get("Content-Type"); got != layerType {
						t.Errorf("Content-Type %q, want %q", got, layerType)
					}
					if got := resp.firstHeader.Get("Docker-Content-Digest"); got != dgst.String() {
						t.Errorf("Docker-Content-Digest %q, want %q", got, dgst)
					}
					if got := resp.firstHeader.Get("Etag"); got != etag {
						t.Errorf("ETag %q, want %q", got, etag)
					}
				}
				if err := srv.lastError(); err != nil {
					t.Errorf("ServeBlob: %v", err)
				}
			})
		}
	})

	t.Run("UntypedBlob", func(t *testing.T) {
		b := newBackend(t)
		info := putBlob(t, b, "", []byte("no media type"))
		resp := newServeFixture(t, b).get(t, "GET", info.Digest, nil)
		if resp.status != 200 {
			t.Fatalf("status %d, want 200", resp.status)
		}
		if got := resp.header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("Content-Type %q, want application/octet-stream", got)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		b := newBackend(t)
		missing := digest.FromString("never stored")
		srv := newServeFixture(t, b)
		for _, method := range []string{"GET", "HEAD"} {
			resp := srv.get(t, method, missing, nil)
			if resp.status != 404 {
				t.Errorf("%s: status %d, want 404 (from the test handler)", method, resp.status)
			}
			if err := srv.lastError(); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s: ServeBlob error = %v, want one wrapping ErrNotFound", method, err)
			}
		}

		// Having written nothing means the caller can still answer with
		// an error of its own, without the blob's headers leaking into it.
		w := &recordingWriter{header: http.Header{}}
		r := httptest.NewRequestWithContext(t.Context(), "GET", "/blobs/"+missing.String(), nil)
		err := b.ServeBlob(w, r, missing)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ServeBlob error = %v, want one wrapping ErrNotFound", err)
		}
		if w.wrote || len(w.header) != 0 {
			t.Errorf("ServeBlob of a missing blob wrote a response (status written: %v, headers %v)", w.wrote, w.header)
		}
	})
}

// serveFixture is a real HTTP server whose only handler calls ServeBlob for
// /blobs/{digest}, and answers 404 or 500 itself when ServeBlob fails, as
// the registry API does.
type serveFixture struct {
	server *httptest.Server

	mu  sync.Mutex
	err error // from the last ServeBlob
}

func newServeFixture(t *testing.T, b storage.Backend) *serveFixture {
	t.Helper()
	f := &serveFixture{}
	mux := http.NewServeMux()
	mux.HandleFunc("/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		err := b.ServeBlob(w, r, digest.Digest(r.PathValue("digest")))
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			http.Error(w, "blob unknown", http.StatusNotFound)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	f.server = httptest.NewServer(mux)
	t.Cleanup(f.server.Close)
	return f
}

func (f *serveFixture) lastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// serveResponse is what a client got for one request.
type serveResponse struct {
	status      int
	header      http.Header // of the final response
	firstHeader http.Header // of the backend's own response (the redirect, if any)
	body        []byte
}

// get sends one request for the blob, following redirects.
func (f *serveFixture) get(t *testing.T, method string, dgst digest.Digest, header map[string]string) serveResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.server.URL+"/blobs/"+dgst.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// The client follows redirects (copying Range and the conditional
	// headers); the transport keeps the first response's headers, which the
	// backend wrote itself.
	transport := &firstResponseTransport{base: f.server.Client().Transport}
	client := &http.Client{Transport: transport}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, req.URL, err)
	}
	return serveResponse{status: resp.StatusCode, header: resp.Header, firstHeader: transport.first, body: body}
}

// firstResponseTransport records the headers of the first response it sees.
type firstResponseTransport struct {
	base  http.RoundTripper
	first http.Header
}

func (t *firstResponseTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil && t.first == nil {
		t.first = resp.Header.Clone()
	}
	return resp, err
}

// recordingWriter is an http.ResponseWriter that notes whether anything was
// written.
type recordingWriter struct {
	header http.Header
	wrote  bool
}

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) WriteHeader(int)     { w.wrote = true }
func (w *recordingWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return len(p), nil
}
