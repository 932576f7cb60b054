package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/requestid"
)

// logRequest writes the request's one line: info, or error with the cause
// for a server fault. A client that went away before its answer is not a
// fault of the server's: its line is info, whatever was answered.
func (h *handler) logRequest(w *responseWriter, r *http.Request, start time.Time) {
	status := w.status
	if !w.wroteHeader {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	level := logrus.InfoLevel
	if status >= 500 && !clientGone(r, w.err) {
		level = logrus.ErrorLevel
	}
	if !h.logEnabled(level) {
		return
	}
	end := time.Now()
	fields := logrus.Fields{
		"method":        r.Method,
		"path":          r.URL.Path,
		"remote":        r.RemoteAddr,
		"status":        status,
		"bytes":         w.bytes,
		"duration_ms":   float64(end.Sub(start).Microseconds()) / 1000,
		requestid.Field: w.requestID,
	}
	for k, v := range map[string]string{"image": w.image, "tag": w.tag, "digest": string(w.digest), "code": string(w.code)} {
		if v != "" {
			fields[k] = v
		}
	}
	entry := h.log.WithFields(fields).WithTime(end)
	if w.err != nil {
		entry = entry.WithError(w.err)
	}
	entry.Log(level, "request")
}

// clientGone reports whether err, the cause of an error answer, is only
// that the client stopped waiting.
func clientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil && errors.Is(err, context.Canceled)
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
