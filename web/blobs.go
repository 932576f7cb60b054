package web

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/storage"
)

// Header values every blob answer shares.
var (
	octetStream = []string{"application/octet-stream"}
	noStore     = []string{"no-store"}
)

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>, the same way
// for every storage backend: the HTTP semantics (HEAD, Range,
// If-None-Match, caching, redirects) are this package's, storage only
// gives bytes. Blobs are shared by every name, as everywhere in nixport's
// content-addressed store.
//
// A GET is redirected to a signed URL when storage offers one, unless its
// If-None-Match already names the blob (a 304 needs no bytes, and the
// storage service's own ETag is not the digest). Everything else is
// answered from the blob itself through http.ServeContent, which reads
// only the ranges it sends and hands a file to sendfile.
func (h *handler) serveBlob(w *responseWriter, r *http.Request, rt route) {
	h.serveBlobAt(w, r, rt.digest, rt.digest)
}

// serveBlobAt answers for blob d the bytes storage keeps under stored:
// d itself, or, for a blob a push repository names by its sha512 digest,
// the sha256 digest it is stored under.
func (h *handler) serveBlobAt(w *responseWriter, r *http.Request, d, stored digest.Digest) {
	w.digest = d
	ctx := r.Context()
	etag := `"` + string(d) + `"`
	if r.Method == http.MethodGet && !etagMatches(r.Header["If-None-Match"], etag) {
		url, ok, err := h.storage.SignedBlobURL(ctx, stored)
		if err != nil {
			writeError(w, fmt.Errorf("serving blob %s: %w", d, err))
			return
		}
		if ok {
			h.redirectBlob(w, r, d, stored, url, etag)
			return
		}
	}
	blob, info, err := h.storage.OpenBlob(ctx, stored)
	if err != nil {
		writeBlobError(w, d, err)
		return
	}
	defer blob.Close()
	hdr := w.Header()
	hdr["Content-Type"] = octetStream
	if info.MediaType != "" {
		hdr["Content-Type"] = []string{info.MediaType}
	}
	hdr["Docker-Content-Digest"] = []string{string(d)}
	hdr["Etag"] = []string{etag}
	hdr["Cache-Control"] = immutable
	if err := boundRanges(r, info.Size); err != nil {
		writeError(w, err)
		return
	}
	// http.ServeContent answers an unsatisfiable range with a plain-text
	// 416; the guard turns it into an OCI error body.
	w.rangeGuard = r.Header["Range"] != nil
	// No modification time: it would differ between replicas of the same
	// blob, and the ETag answers every conditional request.
	http.ServeContent(w, r, "", time.Time{}, blob)
	w.rangeGuard = false
}

// redirectBlob answers a GET with a 307 to url, after checking the blob
// exists (a missing one is BLOB_UNKNOWN, not a redirect to a 404).
func (h *handler) redirectBlob(w *responseWriter, r *http.Request, d, stored digest.Digest, url, etag string) {
	if _, err := h.storage.StatBlob(r.Context(), stored); err != nil {
		writeBlobError(w, d, err)
		return
	}
	hdr := w.Header()
	hdr["Docker-Content-Digest"] = []string{string(d)}
	hdr["Etag"] = []string{etag}
	// The URL expires: caches must not keep the redirect.
	hdr["Cache-Control"] = noStore
	hdr["Location"] = []string{url}
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func writeBlobError(w *responseWriter, d digest.Digest, err error) {
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, errcode.Wrap(errcode.BlobUnknown, err, "blob unknown: %s", d))
		return
	}
	writeError(w, fmt.Errorf("serving blob %s: %w", d, err))
}
