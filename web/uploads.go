package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/push"
)

// The blob upload endpoints of the push repositories (OCI distribution
// spec: "pushing blobs"). A session lives in this instance's memory
// (push.Upload), so a chunked upload must reach the same instance from
// POST to PUT; a monolithic one (POST ?digest=) is one request.

// startUpload answers POST /v2/<name>/blobs/uploads/: a mount (?mount=,
// with ?from= or without), a whole blob (?digest=, the body is the blob),
// or else a new session (202 and its Location). A mount of a blob that
// cannot be found starts a session, as the spec says.
func (h *handler) startUpload(w *responseWriter, r *http.Request, rt route) {
	ctx := r.Context()
	q := r.URL.Query()
	if v, ok := q["mount"]; ok {
		d, err := parseDigest(v[0])
		if err != nil {
			writeError(w, err)
			return
		}
		from := q.Get("from")
		if from != "" {
			if err := checkName(from); err != nil {
				writeError(w, err)
				return
			}
		}
		w.digest = d
		_, ok, err := h.push.Mount(ctx, rt.name, from, d)
		if err != nil {
			writeError(w, err)
			return
		}
		if ok {
			blobCreated(w, rt.name, d)
			return
		}
	} else if v, ok := q["digest"]; ok {
		d, err := parseDigest(v[0])
		if err != nil {
			writeError(w, err)
			return
		}
		w.digest = d
		if _, err := h.push.PutBlob(ctx, rt.name, w.user, h.clientOf(r), d, r.ContentLength, r.Body); err != nil {
			writeError(w, err)
			return
		}
		blobCreated(w, rt.name, d)
		return
	}
	u, err := h.push.StartUpload(ctx, rt.name, w.user, h.clientOf(r))
	if err != nil {
		writeError(w, err)
		return
	}
	setUploadHeaders(w, rt.name, u)
	w.WriteHeader(http.StatusAccepted)
}

// clientOf is whom the bounds on uploads count r against: its address
// (the user, when there is one, is the push registry's to prefer).
func (h *handler) clientOf(r *http.Request) string {
	return clientAddr(r, h.trustedProxies)
}

// setUploadHeaders says where session u is and how much it holds.
func setUploadHeaders(w *responseWriter, name string, u *push.Upload) {
	hdr := w.Header()
	hdr.Set("Location", uploadLocation(name, u.ID()))
	hdr.Set("Range", uploadRange(u.Offset()))
	hdr.Set("Docker-Upload-Uuid", u.ID())
	hdr.Set("Content-Length", "0")
}

// acquire finds the session rt names and holds it for this request, or
// answers why not.
func (h *handler) acquire(w *responseWriter, rt route) (*push.Upload, bool) {
	return h.findUpload(w, rt, h.push.Acquire)
}

// findUpload finds the session rt names with find (Acquire or Status),
// or answers why not.
func (h *handler) findUpload(w *responseWriter, rt route, find func(id, repo, user string) (*push.Upload, error)) (*push.Upload, bool) {
	if !push.ValidID(rt.upload) {
		writeError(w, errcode.New(errcode.BlobUploadUnknown, "upload %q unknown", truncate(rt.upload)))
		return nil, false
	}
	u, err := find(rt.upload, rt.name, w.user)
	if err != nil {
		writeError(w, err)
		return nil, false
	}
	return u, true
}

// uploadStatus answers GET /v2/<name>/blobs/uploads/<id>: 204 with where
// the session ends, which is where the next chunk starts (even while a
// request writes to it).
func (h *handler) uploadStatus(w *responseWriter, r *http.Request, rt route) {
	u, ok := h.findUpload(w, rt, h.push.Status)
	if !ok {
		return
	}
	setUploadHeaders(w, rt.name, u)
	w.Header().Del("Content-Length")
	w.WriteHeader(http.StatusNoContent)
}

// patchUpload answers PATCH /v2/<name>/blobs/uploads/<id>: a chunk, with a
// Content-Range that must start where the session ends (else 416), or a
// stream without one, appended.
func (h *handler) patchUpload(w *responseWriter, r *http.Request, rt route) {
	u, ok := h.acquire(w, rt)
	if !ok {
		return
	}
	defer u.Release()
	if !h.writeChunk(w, r, rt, u) {
		return
	}
	setUploadHeaders(w, rt.name, u)
	w.WriteHeader(http.StatusAccepted)
}

// writeChunk writes r's body into u, or answers why it could not.
func (h *handler) writeChunk(w *responseWriter, r *http.Request, rt route, u *push.Upload) bool {
	start, n := int64(-1), r.ContentLength
	if v := r.Header.Get("Content-Range"); v != "" {
		first, last, err := parseContentRange(v)
		if err != nil {
			writeError(w, errcode.Wrap(errcode.BlobUploadInvalid, err, "%v", err))
			return false
		}
		length := last - first + 1
		if n >= 0 && n != length {
			writeError(w, errcode.New(errcode.SizeInvalid, "Content-Range %s is %d bytes, Content-Length %d", v, length, n))
			return false
		}
		start, n = first, length
	}
	if err := u.Write(r.Context(), start, n, r.Body); err != nil {
		if !u.Closed() {
			// The session goes on: say where it is.
			hdr := w.Header()
			hdr.Set("Location", uploadLocation(rt.name, u.ID()))
			hdr.Set("Range", uploadRange(u.Offset()))
		}
		writeError(w, err)
		return false
	}
	return true
}

// finishUpload answers PUT /v2/<name>/blobs/uploads/<id>?digest=: the last
// chunk, if the body holds one, then the session committed as that blob.
func (h *handler) finishUpload(w *responseWriter, r *http.Request, rt route) {
	v, ok := r.URL.Query()["digest"]
	if !ok {
		writeError(w, errcode.New(errcode.DigestInvalid, "closing an upload needs ?digest=, the digest of the whole blob"))
		return
	}
	d, err := parseDigest(v[0])
	if err != nil {
		writeError(w, err)
		return
	}
	u, ok := h.acquire(w, rt)
	if !ok {
		return
	}
	defer u.Release()
	w.digest = d
	if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
		if !h.writeChunk(w, r, rt, u) {
			return
		}
	}
	if _, err := u.Commit(r.Context(), d); err != nil {
		writeError(w, err)
		return
	}
	blobCreated(w, rt.name, d)
}

// cancelUpload answers DELETE /v2/<name>/blobs/uploads/<id>.
func (h *handler) cancelUpload(w *responseWriter, r *http.Request, rt route) {
	u, ok := h.acquire(w, rt)
	if !ok {
		return
	}
	defer u.Release()
	u.Cancel(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

// maxRangeNumber bounds the numbers of a Content-Range: far past any
// upload, and far from overflowing an int64.
const maxRangeNumber = 1 << 62

// parseContentRange parses the Content-Range of a chunk as the OCI spec
// writes it, "<first>-<last>" (inclusive, decimal, ^[0-9]+-[0-9]+$), with
// first <= last.
func parseContentRange(v string) (first, last int64, err error) {
	a, b, ok := strings.Cut(v, "-")
	if ok {
		first, ok = parseRangeNumber(a)
	}
	if ok {
		last, ok = parseRangeNumber(b)
	}
	if !ok || first > last {
		return 0, 0, errors.New(`Content-Range must be "<first byte>-<last byte>" (inclusive, first <= last), as in 0-1023`)
	}
	return first, last, nil
}

// parseRangeNumber parses 1 to 19 decimal digits, up to maxRangeNumber.
func parseRangeNumber(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxRangeNumber {
		return 0, false
	}
	return n, true
}
