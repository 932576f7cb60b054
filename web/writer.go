package web

import (
	"io"
	"net/http"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
)

// responseWriter wraps the server's ResponseWriter for one request. It
// counts what is written and holds the facts the handlers learn (image,
// tag, digest, error) for the request's log line, so that no context value
// or extra allocation is needed to carry them. It keeps io.ReaderFrom, so
// files still go out with sendfile.
type responseWriter struct {
	rw          http.ResponseWriter
	head        bool // a HEAD request: headers only
	status      int
	bytes       int64
	wroteHeader bool

	// Filled by the handlers for the log line.
	image  string
	tag    string
	digest digest.Digest
	code   errcode.Code // of the error answered, if any
	err    error        // cause of the error answered, if any

	// rangeGuard turns a 416 written by http.ServeContent (plain text) into
	// an OCI error body; swallow then drops ServeContent's own body.
	rangeGuard bool
	swallow    bool
}

var writerPool = sync.Pool{New: func() any { return new(responseWriter) }}

func (w *responseWriter) Header() http.Header { return w.rw.Header() }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return // a second call is a bug in a handler; net/http would only log it
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.rw.WriteHeader(code) // informational: the real header follows
		return
	}
	if code == http.StatusRequestedRangeNotSatisfiable && w.rangeGuard {
		w.rangeGuard = false
		writeError(w, errcode.New(errcode.RangeInvalid, "requested range not satisfiable"))
		w.swallow = true // ServeContent's own text body
		return
	}
	w.wroteHeader = true
	w.status = code
	w.rw.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(p), nil
	}
	n, err := w.rw.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy (and so http.ServeContent) hand a file to the
// server's own ReadFrom, which uses sendfile.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return io.Copy(io.Discard, r)
	}
	var n int64
	var err error
	if rf, ok := w.rw.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.rw}, r)
	}
	w.bytes += n
	return n, err
}

// writerOnly hides every method but Write, so io.Copy cannot recurse into
// ReadFrom.
type writerOnly struct{ io.Writer }

// Flush implements http.Flusher.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.rw.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }
