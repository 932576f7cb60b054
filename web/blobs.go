package web

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/storage"
)

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>. Storage does
// the serving (Range, conditional requests, sendfile, or a redirect to
// signed URL); this only maps its failures to OCI errors. Blobs are shared
// by every name, as everywhere in nixport's content-addressed store.
func (h *handler) serveBlob(w *responseWriter, r *http.Request, rt route) {
	w.digest = rt.digest
	// http.ServeContent answers an unsatisfiable range with a plain-text
	// 416; the guard turns it into an OCI error body.
	w.rangeGuard = r.Header.Get("Range") != ""
	err := h.storage.ServeBlob(w, r, rt.digest)
	w.rangeGuard = false
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, errcode.Wrap(errcode.BlobUnknown, err, "blob unknown: %s", rt.digest))
	default:
		writeError(w, fmt.Errorf("serving blob %s: %w", rt.digest, err))
	}
}
