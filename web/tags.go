package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"

	"github.com/nixport/nixport/errcode"
)

// tagList is the body of GET /v2/<name>/tags/list.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// serveTags answers GET and HEAD /v2/<name>/tags/list, with the paging of
// the distribution spec: at most n tags, those sorting after last, and a
// Link header to the next page when tags remain.
func (h *handler) serveTags(w *responseWriter, r *http.Request, rt route) {
	q := r.URL.Query()
	n := -1 // no limit
	if v, ok := q["n"]; ok {
		parsed, err := strconv.Atoi(v[0])
		if err != nil || parsed < 0 {
			writeError(w, errcode.New(paginationNumberInvalid, "invalid number of results requested: n=%q", truncate(v[0])))
			return
		}
		n = parsed
	}
	last := q.Get("last")

	var tags []string
	var err error
	if h.push.Owns(rt.name) {
		tags, err = h.push.Tags(r.Context(), rt.name)
	} else {
		tags, err = h.images.Tags(r.Context(), rt.name)
	}
	if err != nil {
		if _, ok := errcode.As(err); !ok {
			err = fmt.Errorf("listing tags of %s: %w", rt.name, err)
		}
		writeError(w, err)
		return
	}
	if !slices.IsSorted(tags) {
		tags = slices.Clone(tags)
		slices.Sort(tags)
	}
	page := tags[sort.Search(len(tags), func(i int) bool { return tags[i] > last }):]
	if n >= 0 && len(page) > n {
		page = page[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {page[n-1]}}
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.name, next.Encode()))
		}
	}
	if page == nil {
		page = []string{}
	}
	body, err := json.Marshal(tagList{Name: rt.name, Tags: page})
	if err != nil {
		writeError(w, fmt.Errorf("encoding tags of %s: %w", rt.name, err))
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonType
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if !w.head {
		w.Write(body)
	}
}
