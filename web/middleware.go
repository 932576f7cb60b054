package web

import (
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/requestid"
)

// handlerFunc is how the steps of a request talk: the request's own
// writer, which carries what the log line and later steps need to know,
// so no step has to allocate a context value or wrap the writer again.
type handlerFunc func(w *responseWriter, r *http.Request)

// middleware is one step around the handlers.
type middleware func(next handlerFunc) handlerFunc

// chain is the one place the steps of every request are put in order:
// the request id first (every later line carries it), then the access
// log, which sees whatever status the steps after it chose, then panic
// recovery (so a panic is logged as the 500 it becomes), then the bounds
// on reading and writing, then the routes. Metrics, like the log, sit
// outside recovery, so they count the 500 a panic becomes. Authentication
// comes last, right before the routes.
func (h *handler) chain(last handlerFunc) handlerFunc {
	steps := []middleware{
		withRequestID,
		h.withAccessLog,
		h.withMetrics,
		withRecovery,
		withBounds,
		h.withAuth,
	}
	next := last
	for i := len(steps) - 1; i >= 0; i-- {
		next = steps[i](next)
	}
	return next
}

// ServeHTTP hands each request, in a pooled writer, to the chain.
func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := writerPool.Get().(*responseWriter)
	*w = responseWriter{rw: rw, head: r.Method == http.MethodHead}
	defer func() {
		*w = responseWriter{}
		writerPool.Put(w)
	}()
	h.serve(w, r)
}

// route dispatches to the registry API, the build API, the build pages
// or the docs site.
func (h *handler) route(w *responseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case isRegistryPath(p):
		w.route = routeNameRegistry // until the path is parsed
		h.serveRegistry(w, r)
	case isAPIPath(p):
		w.route = routeNameAPI
		h.serveAPI(w, r)
	case p == tokenPath && h.verifier != nil:
		w.route = routeNameToken
		h.serveToken(w, r)
	case isHealthPath(p):
		w.route = routeNameHealth
		h.serveHealth(w, r)
	case p == metricsPath && h.metricsHandler != nil:
		w.route = routeNameMetrics
		h.metricsHandler.ServeHTTP(w, r)
	case h.builds != nil && isBuildPagePath(p):
		w.route = routeNamePages
		h.serveBuildPage(w, r)
	default:
		w.route = routeNameSite
		h.site.serve(w, r)
	}
}

const requestIDHeader = "X-Request-Id"

// withRequestID takes the client's X-Request-Id when it is a sane one (a
// proxy in front may have set it), else makes one, and echoes it in the
// response, so a user can quote it and an operator find every line of
// that request.
func withRequestID(next handlerFunc) handlerFunc {
	return func(w *responseWriter, r *http.Request) {
		id := ""
		if v := r.Header[requestIDHeader]; len(v) == 1 && requestid.Valid(v[0]) {
			id = v[0]
		} else {
			id = requestid.New()
		}
		w.requestID = id
		w.Header()[requestIDHeader] = []string{id}
		next(w, r)
	}
}

// withAccessLog writes the request's one line when it is done, however it
// ended: a panic that aborts the connection on purpose
// (http.ErrAbortHandler) is logged and passed on.
func (h *handler) withAccessLog(next handlerFunc) handlerFunc {
	return func(w *responseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				h.logRequest(w, r, start)
				panic(p)
			}
			h.logRequest(w, r, start)
		}()
		next(w, r)
	}
}

// withMetrics counts the request when it is done, however it ended, with
// the bytes of blobs it sent.
func (h *handler) withMetrics(next handlerFunc) handlerFunc {
	if h.metrics == nil {
		return next
	}
	return func(w *responseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			status := w.status
			if !w.wroteHeader {
				status = http.StatusOK
			}
			if w.route == routeNameBlob {
				h.metrics.BlobBytes(w.bytes)
			}
			h.metrics.Request(w.route, r.Method, status, time.Since(start))
		}()
		next(w, r)
	}
}

// metricsPath is where the metrics are served, when they are served by
// this handler.
const metricsPath = "/metrics"

// withRecovery turns a panic into a 500 UNKNOWN, with the stack for the
// log, and keeps the server alive.
func withRecovery(next handlerFunc) handlerFunc {
	return func(w *responseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p) // net/http aborts the connection quietly
			}
			err := fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			if w.wroteHeader {
				// The client has a partial answer: only cutting the
				// connection tells it so.
				w.err = err
				w.code = errcode.Unknown
				panic(http.ErrAbortHandler)
			}
			writeError(w, err)
		}()
		next(w, r)
	}
}

// withBounds gives the reading of a request body and the writing of the
// answer the bounds of the Server the request came through (its
// Timeouts, which it puts in every connection's context); a request from
// elsewhere (a test recorder) has none. A request without a body gets no
// read deadline: net/http reads the connection in the background to see
// a client go, and a deadline there would cancel a long build's request.
func withBounds(next handlerFunc) handlerFunc {
	return func(w *responseWriter, r *http.Request) {
		t, _ := r.Context().Value(timeoutsKey{}).(*Timeouts)
		d, ok := w.rw.(deadlines)
		if t != nil && ok {
			w.deadlines = d
			w.writeTimeout = t.Write
			// The server starts each request with a write deadline
			// (WriteTimeout), which over HTTP/2 resets the stream when it
			// passes even if nothing was written: a pull waiting on a long
			// build would be cut. Nothing is owed until the first write,
			// which sets its own deadline.
			d.SetWriteDeadline(time.Time{})
			if hasBody(r) {
				d.SetReadDeadline(time.Now().Add(t.BodyIdle))
				r.Body = &idleBody{ReadCloser: r.Body, d: d, idle: t.BodyIdle}
			}
		}
		next(w, r)
	}
}

// timeoutsKey is the context key of a connection's *Timeouts.
type timeoutsKey struct{}

// deadlines is what net/http's response writers (HTTP/1 and HTTP/2) offer
// and http.ResponseController uses; asked for directly, it allocates
// nothing.
type deadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// idleBody ends a request whose body stalls: every read that gets bytes
// moves the deadline on, and the end of the body lifts it.
type idleBody struct {
	io.ReadCloser
	d    deadlines
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err != nil:
		b.d.SetReadDeadline(time.Time{})
	case n > 0:
		b.d.SetReadDeadline(time.Now().Add(b.idle))
	}
	return n, err
}
