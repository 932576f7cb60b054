package web

import (
	"net/http"
	"strconv"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// emptyReferrers is the referrers list of every subject: nixport builds
// images and takes no pushes, so nothing ever refers to a manifest.
var (
	emptyReferrers       = []byte(`{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageIndex + `","manifests":[]}`)
	emptyReferrersLength = []string{strconv.Itoa(len(emptyReferrers))}
	indexType            = []string{v1.MediaTypeImageIndex}
)

// serveReferrers answers GET and HEAD /v2/<name>/referrers/<digest> (OCI
// distribution spec 1.1) with an empty image index. Answering rather than
// 404 tells clients the API is supported, so they need not fall back to
// the tag schema, which would cost them a manifest request per image.
func serveReferrers(w *responseWriter, r *http.Request, rt route) {
	w.digest = rt.digest
	h := w.Header()
	if r.URL.Query().Has("artifactType") {
		// Filtering an empty list gives an empty list.
		h.Set("OCI-Filters-Applied", "artifactType")
	}
	h["Content-Type"] = indexType
	h["Content-Length"] = emptyReferrersLength
	w.WriteHeader(http.StatusOK)
	if !w.head {
		w.Write(emptyReferrers)
	}
}
