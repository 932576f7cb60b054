package web

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/push"
)

// servePush answers the API for a repository under a push namespace: the
// whole distribution spec, from this package's own handlers and the push
// registry, never from Images (nothing is built for these names).
func (h *handler) servePush(w *responseWriter, r *http.Request, rt route) {
	var allow string
	switch rt.kind {
	case routeManifest:
		allow = "GET, HEAD, PUT, DELETE"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.servePushedManifest(w, r, rt)
			return
		case http.MethodPut:
			h.putManifest(w, r, rt)
			return
		case http.MethodDelete:
			h.deleteManifest(w, r, rt)
			return
		}
	case routeBlob:
		allow = "GET, HEAD, DELETE"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.servePushedBlob(w, r, rt)
			return
		case http.MethodDelete:
			h.deleteBlob(w, r, rt)
			return
		}
	case routeTags:
		allow = "GET, HEAD"
		if isReadMethod(r.Method) {
			h.serveTags(w, r, rt)
			return
		}
	case routeReferrers:
		allow = "GET, HEAD"
		if isReadMethod(r.Method) {
			h.serveReferrers(w, r, rt)
			return
		}
	case routeUploads:
		allow = "POST"
		if r.Method == http.MethodPost {
			h.startUpload(w, r, rt)
			return
		}
	case routeUpload:
		allow = "GET, PATCH, PUT, DELETE"
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.uploadStatus(w, r, rt)
			return
		case http.MethodPatch:
			h.patchUpload(w, r, rt)
			return
		case http.MethodPut:
			h.finishUpload(w, r, rt)
			return
		case http.MethodDelete:
			h.cancelUpload(w, r, rt)
			return
		}
	}
	w.Header().Set("Allow", allow)
	writeError(w, errcode.New(errcode.Unsupported, "method %s is not supported here (%s)", r.Method, allow))
}

// pushHint says where pushes go, for the message of a refused one.
func (h *handler) pushHint() string {
	if h.push == nil {
		return "this registry takes no pushes (NIXPORT_PUSH_NAMESPACES is not set)"
	}
	return "push to a repository under " + strings.Join(h.push.Namespaces(), "/, ") + "/"
}

// servePushedManifest answers GET and HEAD of a pushed manifest, by tag or
// digest, as it was pushed (whatever the Accept header).
func (h *handler) servePushedManifest(w *responseWriter, r *http.Request, rt route) {
	ctx := r.Context()
	w.tag = rt.tag
	w.digest = rt.digest
	l, err := h.pushedLink(ctx, rt)
	if err != nil {
		writeError(w, err)
		return
	}
	e, err := h.readManifest(ctx, l.Digest, l.Stored, l.MediaType, true)
	if err != nil {
		writeError(w, err)
		return
	}
	writeManifest(w, r, e, rt.digest != "")
}

// servePushedBlob answers GET and HEAD of a blob the repository holds.
func (h *handler) servePushedBlob(w *responseWriter, r *http.Request, rt route) {
	w.digest = rt.digest
	l, err := h.push.Blob(r.Context(), rt.name, rt.digest)
	if err != nil {
		writeError(w, err)
		return
	}
	h.serveBlobAt(w, r, rt.digest, l.Stored)
}

// heldReferrers keeps of list the manifests repo holds.
func (h *handler) heldReferrers(ctx context.Context, repo string, list []v1.Descriptor) ([]v1.Descriptor, error) {
	out := list[:0]
	for _, d := range list {
		ok, err := h.push.HasManifest(ctx, repo, d.Digest)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// putManifest answers PUT /v2/<name>/manifests/<reference>: the body,
// bounded, checked and stored by the push registry; by digest, the
// ?tag= parameters tag it too (OCI-Tag says which).
func (h *handler) putManifest(w *responseWriter, r *http.Request, rt route) {
	ctx := r.Context()
	w.tag = rt.tag
	if r.ContentLength > maxManifestBytes {
		writeError(w, errManifestTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
	if err != nil {
		writeError(w, errcode.Wrap(errcode.ManifestInvalid, err, "reading the manifest failed"))
		return
	}
	if len(body) > maxManifestBytes {
		writeError(w, errManifestTooLarge)
		return
	}
	var tags []string
	if rt.tag != "" {
		tags = []string{rt.tag}
	} else {
		for _, tag := range r.URL.Query()["tag"] {
			if err := checkTag(tag); err != nil {
				writeError(w, err)
				return
			}
			tags = append(tags, tag)
		}
	}
	res, err := h.push.PutManifest(ctx, rt.name, r.Header.Get("Content-Type"), body, rt.digest, tags)
	if err != nil {
		writeError(w, err)
		return
	}
	w.digest = res.Digest
	hdr := w.Header()
	hdr.Set("Location", "/v2/"+rt.name+"/manifests/"+string(res.Digest))
	hdr.Set("Docker-Content-Digest", string(res.Digest))
	if res.Subject != "" {
		hdr.Set("OCI-Subject", string(res.Subject))
	}
	if rt.digest != "" && len(res.Tags) > 0 {
		hdr.Set("OCI-Tag", strings.Join(res.Tags, ", "))
	}
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

var errManifestTooLarge = errcode.New(errcode.RequestTooLarge, "the manifest is larger than %d bytes, the most this registry accepts", maxManifestBytes)

// pushedLink is the link of the manifest rt names, by digest or tag.
func (h *handler) pushedLink(ctx context.Context, rt route) (push.Link, error) {
	if rt.digest != "" {
		return h.push.Manifest(ctx, rt.name, rt.digest)
	}
	return h.push.Tag(ctx, rt.name, rt.tag)
}

// deleteManifest answers DELETE /v2/<name>/manifests/<reference>: by
// digest the manifest and the tags naming it, by tag the tag alone.
func (h *handler) deleteManifest(w *responseWriter, r *http.Request, rt route) {
	w.tag, w.digest = rt.tag, rt.digest
	var err error
	if rt.digest != "" {
		err = h.push.DeleteManifest(r.Context(), rt.name, rt.digest)
	} else {
		err = h.push.DeleteTag(r.Context(), rt.name, rt.tag)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	accepted(w)
}

// deleteBlob answers DELETE /v2/<name>/blobs/<digest>: the repository's
// link goes; the bytes stay until nothing names them.
func (h *handler) deleteBlob(w *responseWriter, r *http.Request, rt route) {
	w.digest = rt.digest
	if err := h.push.DeleteBlob(r.Context(), rt.name, rt.digest); err != nil {
		writeError(w, err)
		return
	}
	accepted(w)
}

func accepted(w *responseWriter) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// blobCreated answers 201 for blob d now in repository name.
func blobCreated(w *responseWriter, name string, d digest.Digest) {
	w.digest = d
	hdr := w.Header()
	hdr.Set("Location", "/v2/"+name+"/blobs/"+string(d))
	hdr.Set("Docker-Content-Digest", string(d))
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// uploadLocation is the URL of upload session id of repository name.
func uploadLocation(name, id string) string {
	return "/v2/" + name + "/blobs/uploads/" + url.PathEscape(id)
}

// uploadRange is the Range header of a session holding offset bytes:
// "0-<last byte>", and "0-0" while it holds none, as distribution says it.
func uploadRange(offset int64) string {
	return "0-" + strconv.FormatInt(max(offset-1, 0), 10)
}
