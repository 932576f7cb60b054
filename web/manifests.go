package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/storage"
)

// maxManifestBytes bounds a manifest read into memory; the OCI spec asks
// registries to accept manifests of at least 4 MiB, and nixport's own are a
// few kilobytes.
const maxManifestBytes = 4 << 20

var immutable = []string{"max-age=31536000, immutable"}

// serveManifest answers GET and HEAD /v2/<name>/manifests/<reference>. A
// digest reference is answered from the manifest cache without touching
// storage when warm; a tag goes to Images, in the format the client's
// Accept header asks for.
func (h *handler) serveManifest(w *responseWriter, r *http.Request, rt route) {
	var e *manifestEntry
	var err error
	if rt.digest != "" {
		w.digest = rt.digest
		e, err = h.manifestByDigest(r.Context(), rt.digest)
	} else {
		w.tag = rt.tag
		e, err = h.manifestByTag(w, r, rt.name, rt.tag, manifest.Negotiate(r.Header["Accept"]))
	}
	if err != nil {
		writeError(w, h.withBuildURL(r, err))
		return
	}
	writeManifest(w, r, e, rt.digest != "")
}

// writeManifest answers with manifest e; byDigest: it was asked for by
// digest, so the answer never changes.
func writeManifest(w *responseWriter, r *http.Request, e *manifestEntry, byDigest bool) {
	w.digest = e.digest
	hdr := w.Header()
	hdr["Docker-Content-Digest"] = e.digestValue
	hdr["Etag"] = e.etag
	if byDigest {
		hdr["Cache-Control"] = immutable
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && etagMatches(inm, e.etag[0]) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr["Content-Type"] = e.contentType
	hdr["Content-Length"] = e.length
	w.WriteHeader(http.StatusOK)
	if !w.head {
		w.Write(e.body)
	}
}

// manifestByDigest returns the manifest stored at d. A blob that is not a
// manifest is not served from /manifests/.
func (h *handler) manifestByDigest(ctx context.Context, d digest.Digest) (*manifestEntry, error) {
	if e, ok := h.manifests.get(d); ok {
		return e, nil
	}
	info, err := h.storage.StatBlob(ctx, d)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errcode.Wrap(errcode.ManifestUnknown, err, "manifest unknown: %s", d)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up manifest %s: %w", d, err)
	}
	if !manifest.IsManifestMediaType(info.MediaType) {
		return nil, errcode.New(errcode.ManifestUnknown, "manifest unknown: %s is not a manifest", d)
	}
	return h.loadManifest(ctx, info)
}

// manifestByTag answers name:tag in format f from the tag map while Images'
// last answer is fresh, else asks Images (which may build the image) with
// the request's id in the context, for the build's log lines.
func (h *handler) manifestByTag(w *responseWriter, r *http.Request, name, tag string, f manifest.Format) (*manifestEntry, error) {
	k := tagKey{name: name, tag: tag, format: f}
	e, ok := h.tags.get(k, time.Now())
	h.metrics.CacheLookup(metrics.CacheTagMap, ok)
	if ok {
		return e, nil
	}
	ctx := h.callerContext(requestid.NewContext(r.Context(), w.requestID), w, r)
	info, fresh, err := h.images.ManifestByTag(ctx, name, tag, f)
	if err != nil {
		if _, ok := errcode.As(err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("manifest of %s:%s (%s): %w", name, tag, f, err)
	}
	e, err = h.loadManifest(ctx, info)
	if err != nil {
		return nil, err
	}
	h.tags.add(k, e, fresh, time.Now())
	return e, nil
}

// loadManifest returns the manifest described by info from the cache, or
// reads it from storage, checks it and caches it.
func (h *handler) loadManifest(ctx context.Context, info storage.BlobInfo) (*manifestEntry, error) {
	return h.readManifest(ctx, info.Digest, info.Digest, info.MediaType, false)
}

// readManifest returns manifest d, whose bytes storage keeps under stored
// (d itself, or the sha256 digest of a manifest pushed by its sha512
// digest), from the cache or from storage, checked and then cached. The
// media type is the stored blob's unless pushed says mediaType is what the
// manifest was pushed as; else mediaType, else the body's own.
func (h *handler) readManifest(ctx context.Context, d, stored digest.Digest, mediaType string, pushed bool) (*manifestEntry, error) {
	if e, ok := h.manifests.get(d); ok && (!pushed || e.mediaType == mediaType) {
		return e, nil
	}
	rc, info, err := h.storage.OpenBlob(ctx, stored)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errcode.Wrap(errcode.ManifestUnknown, err, "manifest unknown: %s", d)
	}
	if err != nil {
		return nil, fmt.Errorf("opening manifest %s: %w", d, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", d, err)
	}
	if len(body) > maxManifestBytes {
		return nil, fmt.Errorf("manifest %s is larger than %d bytes", d, maxManifestBytes)
	}
	// Read once per digest, so checking is cheap; a corrupt store must not
	// serve bytes under a digest they do not have.
	if got := d.Algorithm().FromBytes(body); got != d {
		return nil, fmt.Errorf("manifest %s: stored bytes hash to %s", d, got)
	}
	if !pushed && info.MediaType != "" {
		mediaType = info.MediaType
	}
	if mediaType == "" {
		mediaType = sniffMediaType(body)
	}
	if !manifest.IsManifestMediaType(mediaType) {
		return nil, fmt.Errorf("blob %s has media type %q, not a manifest's", d, mediaType)
	}
	e := newManifestEntry(d, mediaType, body)
	h.manifests.add(e)
	return e, nil
}

// sniffMediaType reads the mediaType field that OCI and Docker manifests
// carry, for a blob stored without a type.
func sniffMediaType(body []byte) string {
	var m struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return m.MediaType
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match) or is "*".
func etagMatches(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}
