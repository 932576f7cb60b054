package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/nixport/nixport/errcode"
)

// paginationNumberInvalid is distribution's code for a bad "n" on
// tags/list. The OCI spec names no code for it; errcode does not list it
// because only this package can produce it.
const paginationNumberInvalid errcode.Code = "PAGINATION_NUMBER_INVALID"

// status is the HTTP status of an error code, including the codes only
// this package uses.
func status(c errcode.Code) int {
	switch c {
	case paginationNumberInvalid, requestInvalid:
		return http.StatusBadRequest
	case buildUnknown:
		return http.StatusNotFound
	}
	return c.Status()
}

// ociErrors is the body of every registry error response.
type ociErrors struct {
	Errors []ociError `json:"errors"`
}

type ociError struct {
	Code    errcode.Code `json:"code"`
	Message string       `json:"message"`
	Detail  any          `json:"detail,omitempty"`
}

// writeError is the one place that answers a registry or API request
// with an error. A *errcode.Error in err's chain gives the code, message and
// detail; anything else is a server fault, answered as a 500 UNKNOWN with a
// generic message while the cause goes only to the log (through w.err). If
// the response has already started, nothing more can be said to the client
// and the error is only recorded for the log.
func writeError(w *responseWriter, err error) {
	w.err = err
	if w.wroteHeader {
		return
	}
	body := ociError{Code: errcode.Unknown, Message: "internal server error"}
	if e, ok := errcode.As(err); ok {
		body = ociError{Code: e.Code, Message: e.Message, Detail: e.Detail}
	}
	w.code = body.Code
	data, jerr := json.Marshal(ociErrors{Errors: []ociError{body}})
	if jerr != nil {
		// Only Detail can fail to encode; the rest is plain strings.
		body.Detail = nil
		data, _ = json.Marshal(ociErrors{Errors: []ociError{body}})
	}
	data = append(data, '\n')

	h := w.Header()
	// Whatever a handler or storage set for the content it meant to send
	// no longer applies (Content-Range stays: on a 416 it tells the size).
	for _, k := range []string{"Content-Encoding", "Etag", "Last-Modified", "Docker-Content-Digest", "Cache-Control", "Accept-Ranges"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("X-Content-Type-Options", "nosniff")
	if body.Code == errcode.Unsupported && h.Get("Allow") == "" {
		h.Set("Allow", "GET, HEAD") // the registry's; an API route sets its own first
	}
	if e, ok := errcode.As(err); ok && e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if body.Code == errcode.Unauthorized {
		challenge := w.challenge
		if challenge == "" {
			challenge = basicChallenge
		}
		h.Set("WWW-Authenticate", challenge)
	}
	w.WriteHeader(status(body.Code))
	if !w.head {
		w.Write(data)
	}
}
