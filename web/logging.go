package web

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
)

// ServeHTTP is the outermost layer: it recovers from panics, dispatches
// to the registry API or the docs site, and writes one log line per request.
func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := writerPool.Get().(*responseWriter)
	*w = responseWriter{rw: rw, head: r.Method == http.MethodHead}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				h.logRequest(w, r, start)
				panic(p) // the server aborts the connection quietly
			}
			w.code = errcode.Unknown
			w.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			if !w.wroteHeader {
				writeError(w, w.err)
			}
		}
		h.logRequest(w, r, start)
		*w = responseWriter{}
		writerPool.Put(w)
	}()
	if isRegistryPath(r.URL.Path) {
		h.serveRegistry(w, r)
	} else {
		h.site.serve(w, r)
	}
}

// requestLine is what the log says about a request.
type requestLine struct {
	method, path, remote     string
	image, tag, digest, code string // empty: not known, not logged
	status                   int
	bytes                    int64
	durationMs               float64
	end                      time.Time // when the request was done: the line's time
	err                      error
}

// has reports whether the line sets a field named key.
func (l *requestLine) has(key string) bool {
	switch key {
	case "method", "path", "remote", "status", "bytes", "duration_ms":
		return true
	case "image":
		return l.image != ""
	case "tag":
		return l.tag != ""
	case "digest":
		return l.digest != ""
	case "code":
		return l.code != ""
	case logrus.ErrorKey:
		return l.err != nil
	}
	return false
}

func (l *requestLine) fields() logrus.Fields {
	f := logrus.Fields{
		"method":      l.method,
		"path":        l.path,
		"remote":      l.remote,
		"status":      l.status,
		"bytes":       l.bytes,
		"duration_ms": l.durationMs,
	}
	for k, v := range map[string]string{"image": l.image, "tag": l.tag, "digest": l.digest, "code": l.code} {
		if v != "" {
			f[k] = v
		}
	}
	return f
}

// logRequest writes the request's line: info, or error with the cause for
// a server fault.
func (h *handler) logRequest(w *responseWriter, r *http.Request, start time.Time) {
	status := w.status
	if !w.wroteHeader {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	level := logrus.InfoLevel
	if status >= 500 {
		level = logrus.ErrorLevel
	}
	if !h.logEnabled(level) {
		return
	}
	line := requestLine{
		method: r.Method,
		path:   r.URL.Path,
		remote: r.RemoteAddr,
		image:  w.image,
		tag:    w.tag,
		digest: string(w.digest),
		code:   string(w.code),
		status: status,
		bytes:  w.bytes,
		err:    w.err,
	}
	h.writeLine(level, &line, start)
}

// writeLine writes a request line, timed from start to now: on the fast
// path when the logger allows, else through logrus.
func (h *handler) writeLine(level logrus.Level, line *requestLine, start time.Time) {
	line.end = time.Now()
	line.durationMs = float64(line.end.Sub(start).Microseconds()) / 1000
	if fastLine(h.log, level, line) {
		return
	}
	entry := h.log.WithFields(line.fields()).WithTime(line.end)
	if line.err != nil {
		entry = entry.WithError(line.err)
	}
	entry.Log(level, "request")
}

// logEnabled reports whether a line at level would be written, to skip
// building fields for nothing. A logger whose level cannot be asked is
// assumed to want everything.
func (h *handler) logEnabled(level logrus.Level) bool {
	switch l := h.log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(level)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(level)
	}
	return true
}
