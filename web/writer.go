package web

import (
	"io"
	"net/http"
	"sync"
	"time"

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

	// Filled by the handlers for the log line and metrics.
	route string // the endpoint's name (a routeKind's, or routeName*)
	user  string // the authenticated user, if any
	// challenge is the WWW-Authenticate of a 401 (empty: Basic).
	challenge string
	image     string
	tag       string
	digest    digest.Digest
	code      errcode.Code // of the error answered, if any
	err       error        // cause of the error answered, if any

	requestID string

	// deadlines, when the server's writer has them, bound each write:
	// every write must finish within writeTimeout of its start, so a slow
	// but live client can take a blob of any size while one that stops
	// reading is let go.
	deadlines    deadlines
	writeTimeout time.Duration

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
	w.extendWrite()
	w.rw.WriteHeader(code)
}

// extendWrite gives the next write its own deadline.
func (w *responseWriter) extendWrite() {
	if w.deadlines != nil && w.writeTimeout > 0 {
		w.deadlines.SetWriteDeadline(time.Now().Add(w.writeTimeout))
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(p), nil
	}
	if len(p) > streamChunk {
		return w.writeChunks(p)
	}
	w.extendWrite()
	n, err := w.rw.Write(p)
	w.bytes += int64(n)
	return n, err
}

// streamChunk is how much of a large answer goes out under one write
// deadline.
const streamChunk = 4 << 20

func (w *responseWriter) writeChunks(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(len(p), streamChunk)
		w.extendWrite()
		m, err := w.rw.Write(p[:n])
		total += m
		w.bytes += int64(m)
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// ReadFrom lets io.Copy (and so http.ServeContent) hand a file to the
// server's own ReadFrom, which uses sendfile. The copy goes in chunks, each
// under a fresh write deadline; a file inside an io.LimitedReader (what
// ServeContent passes) stays a file, so each chunk is still one sendfile.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return io.Copy(io.Discard, r)
	}
	rf, ok := w.rw.(io.ReaderFrom)
	if !ok {
		n, err := io.Copy(writerOnly{w}, r)
		return n, err
	}
	src, limit := r, int64(-1)
	if lr, ok := r.(*io.LimitedReader); ok {
		src, limit = lr.R, max(lr.N, 0)
		defer func() { lr.N = limit }()
	}
	var total int64
	for limit != 0 {
		chunk := int64(streamChunk)
		if limit > 0 {
			chunk = min(chunk, limit)
		}
		w.extendWrite()
		n, err := rf.ReadFrom(&io.LimitedReader{R: src, N: chunk})
		total += n
		w.bytes += n
		if limit > 0 {
			limit -= n
		}
		if err != nil {
			return total, err
		}
		if n < chunk {
			break // the source is done
		}
	}
	return total, nil
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
