package prewarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
)

// maxBody bounds an answer of the API. A build's status carries at most
// 64 KiB of its log; an error body is smaller still.
const maxBody = 1 << 20

// requestTimeout bounds one request, so that a server that stops
// answering counts as a transient error instead of hanging prewarm.
const requestTimeout = 30 * time.Second

// client speaks the build status API of one nixport server:
//
//	POST /api/builds {"image": NAME, "tag": TAG} → 202 and the build (started or joined),
//	                                             200 and its status, done, with no build id (the image is built)
//	GET  /api/builds/{id}                        → 200 and the build
//
// Errors are OCI error bodies with a 4xx or 5xx status.
type client struct {
	base    *url.URL // the server, e.g. http://127.0.0.1:8080
	http    *http.Client
	retries int           // transient failures tolerated in a row, per request
	delay   time.Duration // before the first retry; doubled for each next one
}

// apiError is an answer of the API other than a build: its status and the
// first error of its body.
type apiError struct {
	status    int
	code      errcode.Code // "" if the body was no OCI error body
	message   string
	requestID string // the server's X-Request-Id, which its log lines carry
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("HTTP %d %s: %s", e.status, http.StatusText(e.status), e.message)
	if e.code != "" {
		s = fmt.Sprintf("%s: %s", e.code, e.message)
	}
	// The server's message tells a registry client to log in; prewarm has
	// no login: it sends the credentials of its server's URL.
	if e.code == errcode.Unauthorized {
		s += " (prewarm sends the credentials in its server URL: https://USER:PASSWORD@HOST)"
	}
	// A fault of the server is explained in its log, found by the request.
	if e.status >= 500 && e.requestID != "" {
		s += " (request " + e.requestID + ")"
	}
	return s
}

// retryNote tells of a transient failure about to be retried.
type retryNote func(err error, attempt, attempts int, wait time.Duration)

// start starts the build of ref, or joins the one running. built says the
// server answered 200: the image was there already.
func (c *client) start(ctx context.Context, ref Ref, note retryNote) (st buildstatus.Status, built bool, err error) {
	body, err := json.Marshal(struct {
		Image string `json:"image"`
		Tag   string `json:"tag"`
	}{ref.Name, ref.Tag})
	if err != nil {
		return st, false, err
	}
	status, err := c.do(ctx, http.MethodPost, c.base.JoinPath("api", "builds"), body, note, &st)
	return st, status == http.StatusOK, err
}

// status is the build's status now.
func (c *client) status(ctx context.Context, id string, note retryNote) (st buildstatus.Status, err error) {
	_, err = c.do(ctx, http.MethodGet, c.base.JoinPath("api", "builds", id), nil, note, &st)
	return st, err
}

// do sends one request, retrying transient failures (no answer; a fault
// of the server, a gateway or an overloaded server: 429, 500, 502, 503,
// 504) up to c.retries times with a doubling delay, and decodes a 2xx
// answer into st. Retrying a POST is safe: starting a build that runs
// joins it, and one that is built is answered as such.
func (c *client) do(ctx context.Context, method string, u *url.URL, body []byte, note retryNote, st *buildstatus.Status) (int, error) {
	wait := c.delay
	for attempt := 1; ; attempt++ {
		status, err := c.once(ctx, method, u, body, st)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return status, err
		}
		if attempt > c.retries {
			return status, fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		note(err, attempt, c.retries+1, wait)
		if !sleep(ctx, wait) {
			return status, err
		}
		wait *= 2
	}
}

// sleep waits for d, or until ctx ends: it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// networkError is a request that got no answer.
type networkError struct{ err error }

func (e *networkError) Error() string { return "no answer from the server: " + e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }

func transient(err error) bool {
	var ne *networkError
	if errors.As(err, &ne) {
		return true
	}
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.status {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

func (c *client) once(ctx context.Context, method string, u *url.URL, body []byte, st *buildstatus.Status) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known to the reader; keep the cause
		}
		return 0, &networkError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return resp.StatusCode, &networkError{fmt.Errorf("reading the answer: %w", err)}
	}
	if len(data) > maxBody {
		return resp.StatusCode, fmt.Errorf("%s %s: an answer of more than %d bytes", method, u.Path, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := errorBody(method, u, resp.StatusCode, data)
		err.requestID = resp.Header.Get("X-Request-Id")
		return resp.StatusCode, err
	}
	*st = buildstatus.Status{}
	if err := json.Unmarshal(data, st); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: the answer is not a build's status: %v", method, u.Path, err)
	}
	// An image already built is answered 200, done, with no build and so
	// no id: nothing was built to follow.
	built := resp.StatusCode == http.StatusOK && st.State == buildstatus.Done && st.ID == ""
	if !built && !validID(st.ID) || st.State == "" {
		return resp.StatusCode, fmt.Errorf("%s %s: the answer names no valid build id (%q) or no state", method, u.Path, truncate(st.ID, 80))
	}
	return resp.StatusCode, nil
}

// errorBody is the error an answer with status code says: the first error
// of its OCI error body, or, when it holds none (a proxy's page, a server
// without the build API), the status and what to check.
func errorBody(method string, u *url.URL, code int, data []byte) *apiError {
	var body struct {
		Errors []struct {
			Code    errcode.Code `json:"code"`
			Message string       `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(data, &body) == nil && len(body.Errors) > 0 && body.Errors[0].Code != "" {
		return &apiError{status: code, code: body.Errors[0].Code, message: body.Errors[0].Message}
	}
	msg := fmt.Sprintf("%s %s answered without an error body", method, u.Path)
	if line, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n"); line != "" && !strings.HasPrefix(line, "<") {
		msg += " (" + truncate(line, 200) + ")"
	}
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		msg += "; is it a nixport server with the build API?"
	}
	return &apiError{status: code, message: msg}
}

// validID reports whether id can be put in a URL's path as it is.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
