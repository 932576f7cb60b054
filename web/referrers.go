package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/referrers"
)

var indexType = []string{v1.MediaTypeImageIndex}

// serveReferrers answers GET and HEAD /v2/<name>/referrers/<digest> (OCI
// distribution spec 1.1) with an image index of the manifests that name
// the digest as their subject, filtered by ?artifactType= when given
// (and OCI-Filters-Applied then says so). A subject nothing refers to
// gets an empty index, not a 404: that tells clients the API is
// supported, so they need not fall back to the tag schema. The index is
// global, by subject; a push repository lists only the referrers it holds.
func (h *handler) serveReferrers(w *responseWriter, r *http.Request, rt route) {
	w.digest = rt.digest
	artifactType := r.URL.Query().Get("artifactType")
	list, err := referrers.List(r.Context(), h.storage, rt.digest, artifactType)
	if err == nil && h.push.Owns(rt.name) {
		list, err = h.heldReferrers(r.Context(), rt.name, list)
	}
	if err != nil {
		writeError(w, fmt.Errorf("referrers of %s: %w", rt.digest, err))
		return
	}
	body, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: list,
	})
	if err != nil {
		writeError(w, fmt.Errorf("encoding the referrers of %s: %w", rt.digest, err))
		return
	}
	hdr := w.Header()
	if artifactType != "" {
		hdr.Set("OCI-Filters-Applied", "artifactType")
	}
	hdr["Content-Type"] = indexType
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if !w.head {
		w.Write(body)
	}
}
