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
	fields := make(logrus.Fields, 13)
	for k, v := range h.logBase {
		fields[k] = v
	}
	fields["method"] = r.Method
	fields["path"] = r.URL.Path
	fields["remote"] = r.RemoteAddr
	fields["status"] = status
	fields["bytes"] = w.bytes
	fields["duration_ms"] = float64(end.Sub(start).Microseconds()) / 1000
	fields[requestid.Field] = w.requestID
	if w.image != "" {
		fields["image"] = w.image
	}
	if w.user != "" {
		fields["user"] = w.user
	}
	if w.tag != "" {
		fields["tag"] = w.tag
	}
	if w.digest != "" {
		fields["digest"] = string(w.digest)
	}
	if w.code != "" {
		fields["code"] = string(w.code)
	}
	if w.err != nil {
		fields[logrus.ErrorKey] = w.err
	}
	if h.logger == nil {
		h.log.WithFields(fields).Log(level, "request") // a FieldLogger of another kind
		return
	}
	// The entry takes the map as it is: WithFields would copy it once
	// more, and a line per request is most of what a warm request costs.
	entry := logrus.NewEntry(h.logger)
	entry.Data, entry.Time = fields, end
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
