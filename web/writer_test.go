package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWriterKeepsInterfaces checks that the response writer still offers
// what net/http and ServeContent look for.
func TestWriterKeepsInterfaces(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &responseWriter{rw: rec}
	var rw http.ResponseWriter = w
	if _, ok := rw.(http.Flusher); !ok {
		t.Error("not a Flusher")
	}
	if _, ok := rw.(io.ReaderFrom); !ok {
		t.Error("not a ReaderFrom: files would not go out with sendfile")
	}
	if err := http.NewResponseController(rw).Flush(); err != nil {
		t.Errorf("ResponseController.Flush: %v", err)
	}
	n, err := w.ReadFrom(strings.NewReader("hello"))
	if err != nil || n != 5 || rec.Body.String() != "hello" || w.bytes != 5 || w.status != 200 {
		t.Errorf("ReadFrom: %d %v %q bytes=%d status=%d", n, err, rec.Body.String(), w.bytes, w.status)
	}
	w.WriteHeader(500) // ignored: the header is out
	if w.status != 200 || rec.Code != 200 {
		t.Errorf("second WriteHeader changed the status to %d", w.status)
	}
}
