package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/jsonfile"
	"github.com/nixport/nixport/requestid"
)

// Builds is what the build status API and pages need from the builder:
// its builds, and a way to start one without waiting for it. Errors a
// client should see are *errcode.Error; anything else is a server fault.
type Builds interface {
	// Start starts building name:tag as a pull would (the same checks,
	// caches, coalescing and bounds) without waiting, and returns the
	// build's status; a build of the image already running is joined. An
	// image already built is not built again: built is true and the
	// status says done, with its manifest digest.
	Start(ctx context.Context, name, tag string) (st buildstatus.Status, built bool, err error)
	// Builds lists the builds queued or running and the last ones
	// finished, newest first, without their logs.
	Builds() []buildstatus.Status
	// Build is one build, with the end of its log.
	Build(id string) (buildstatus.Status, bool)
}

// The build status API's own error codes (the OCI spec has none for
// them), with their statuses in status().
const (
	// buildUnknown: no build of that id on this instance.
	buildUnknown errcode.Code = "BUILD_UNKNOWN"
	// requestInvalid: a request body that is not what the endpoint reads.
	requestInvalid errcode.Code = "REQUEST_INVALID"
	// requestTooLarge: a request body over its bound (errcode's, which
	// pushes share).
	requestTooLarge = errcode.RequestTooLarge
)

// maxStartRequestBytes bounds the body of POST /api/builds: room for the
// longest name and tag, even with every character escaped.
const maxStartRequestBytes = 8 << 10

// The build API's paths.
const (
	apiBuildsPath = "/api/builds"
	apiBuildPath  = apiBuildsPath + "/" // + id
)

// buildPagePath is the path of one build's page, + id; a pull's
// BUILD_IN_PROGRESS message ends with it.
const buildPagePath = "/builds/"

var errUnknownAPIEndpoint = errcode.New(errcode.NameUnknown, "unknown API endpoint: builds are at "+apiBuildsPath)

// isAPIPath reports whether an URL path belongs to the JSON API.
func isAPIPath(p string) bool {
	return p == "/api" || strings.HasPrefix(p, "/api/")
}

// serveAPI answers everything under /api: the builds, listed, one by one,
// and started. Errors are OCI error bodies, as on /v2/, so a client
// reads one shape of error from the whole server.
func (h *handler) serveAPI(w *responseWriter, r *http.Request) {
	if h.builds == nil {
		writeError(w, errcode.New(errcode.NameUnknown, "this registry has no build API"))
		return
	}
	switch p := r.URL.Path; {
	case p == apiBuildsPath:
		switch {
		case isReadMethod(r.Method):
			h.serveBuildList(w)
		case r.Method == http.MethodPost:
			h.startBuild(w, r)
		default:
			methodNotAllowed(w, r, "GET, HEAD, POST")
		}
	case strings.HasPrefix(p, apiBuildPath) && len(p) > len(apiBuildPath) && !strings.Contains(p[len(apiBuildPath):], "/"):
		if !isReadMethod(r.Method) {
			methodNotAllowed(w, r, "GET, HEAD")
			return
		}
		h.serveBuild(w, p[len(apiBuildPath):])
	default:
		writeError(w, errUnknownAPIEndpoint)
	}
}

// methodNotAllowed answers 405 UNSUPPORTED naming the methods allowed.
func methodNotAllowed(w *responseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, errcode.New(errcode.Unsupported, "method %s is not allowed here: only %s", truncate(r.Method), allow))
}

// buildList is the body of GET /api/builds.
type buildList struct {
	Builds []buildstatus.Status `json:"builds"`
}

func (h *handler) serveBuildList(w *responseWriter) {
	list := h.builds.Builds()
	if list == nil {
		list = []buildstatus.Status{}
	}
	for i := range list {
		list[i].Log = "" // the list never carries logs, whatever the builder gives
	}
	writeJSON(w, http.StatusOK, buildList{Builds: list})
}

func (h *handler) serveBuild(w *responseWriter, id string) {
	st, ok := h.builds.Build(id)
	if !ok {
		writeError(w, errBuildUnknown(id))
		return
	}
	w.image, w.tag = st.Image, st.Tag
	writeJSON(w, http.StatusOK, st)
}

func errBuildUnknown(id string) error {
	return errcode.New(buildUnknown, "no build %q on this instance, which lists the builds queued or running and the last 100 finished", truncate(id))
}

// startRequest is the body of POST /api/builds.
type startRequest struct {
	Image string `json:"image"`
	Tag   string `json:"tag"`
}

// startBuild answers POST /api/builds: the name and tag are checked as a
// pull's are, then the build is started (or joined) and its status
// answered, 202 with its Location; an image already built is 200, done.
func (h *handler) startBuild(w *responseWriter, r *http.Request) {
	req, err := readStartRequest(r.Body)
	if err != nil {
		writeError(w, err)
		return
	}
	w.image, w.tag = req.Image, req.Tag
	ctx := h.callerContext(requestid.NewContext(r.Context(), w.requestID), w, r)
	st, built, err := h.builds.Start(ctx, req.Image, req.Tag)
	if err != nil {
		writeError(w, err)
		return
	}
	if built {
		writeJSON(w, http.StatusOK, st)
		return
	}
	if st.ID != "" {
		w.Header().Set("Location", apiBuildPath+st.ID)
	}
	writeJSON(w, http.StatusAccepted, st)
}

// readStartRequest reads and checks a start request: bounded, strict
// JSON, the name and tag checked by the registry's own checks. The tag
// defaults to "latest".
func readStartRequest(body io.Reader) (startRequest, error) {
	const example = `a JSON object such as {"image": "shell/hello", "tag": "latest"}`
	data, err := io.ReadAll(io.LimitReader(body, maxStartRequestBytes+1))
	if err != nil {
		return startRequest{}, errcode.Wrap(requestInvalid, err, "reading the request body failed")
	}
	if len(data) > maxStartRequestBytes {
		return startRequest{}, errcode.New(requestTooLarge, "the request body is larger than %d bytes: it should be %s", maxStartRequestBytes, example)
	}
	var req startRequest
	if err := jsonfile.DecodeStrict(data, &req); err != nil {
		return startRequest{}, errcode.Wrap(requestInvalid, err, "the request body should be %s: %v", example, err)
	}
	if req.Image == "" {
		return startRequest{}, errcode.New(requestInvalid, `the request body names no image: field "image" is required, as in %s`, strings.TrimPrefix(example, "a JSON object such as "))
	}
	if err := checkName(req.Image); err != nil {
		return startRequest{}, err
	}
	if req.Tag == "" {
		req.Tag = "latest"
	}
	if err := checkTag(req.Tag); err != nil {
		return startRequest{}, err
	}
	return req, nil
}

// writeJSON answers with v as JSON; an API answer is never cached.
func writeJSON(w *responseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	data = append(data, '\n')
	hdr := w.Header()
	hdr["Content-Type"] = jsonType
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if !w.head {
		w.Write(data)
	}
}

// withBuildURL makes the build page named at the end of a
// BUILD_IN_PROGRESS message ("… follow it at /builds/<id>") absolute, with
// the scheme and host the client used (origin), so that docker pull prints
// a link a terminal can open. A Host that does not look like one leaves
// the path as it is. Any other error is returned unchanged; the builder's
// error is copied, never changed.
func (h *handler) withBuildURL(r *http.Request, err error) error {
	e, ok := errcode.As(err)
	if !ok || e.Code != errcode.BuildInProgress {
		return err
	}
	detail, _ := e.Detail.(map[string]string)
	id := detail["build"]
	page := " " + buildPagePath + id
	origin, ok := h.origin(r)
	if id == "" || !strings.HasSuffix(e.Message, page) || !ok {
		return err
	}
	c := *e
	c.Message = strings.TrimSuffix(e.Message, page) + " " + origin + buildPagePath + id
	return &c
}
