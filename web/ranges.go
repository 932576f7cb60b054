package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/nixport/nixport/errcode"
)

// maxRanges bounds the ranges one request may ask of a blob: clients ask
// for one (a resumed download) and tools for a few, while thousands of tiny
// or overlapping ranges make a multipart answer many times the blob's size.
const maxRanges = 32

// boundRanges prepares a request's Range header for http.ServeContent,
// which neither merges ranges nor bounds their number: more than maxRanges
// is RANGE_INVALID, and the ranges that fall within the blob are put in
// order with overlapping and adjacent ones merged, so that no byte is sent
// twice. A header that does not parse is left as it is, for ServeContent
// to answer as it does (416, or the whole blob).
func boundRanges(r *http.Request, size int64) error {
	values := r.Header["Range"]
	if len(values) != 1 {
		return nil
	}
	spec, ok := strings.CutPrefix(values[0], "bytes=")
	if !ok {
		return nil
	}
	if strings.Count(spec, ",") >= maxRanges {
		return errcode.New(errcode.RangeInvalid, "more than %d ranges requested", maxRanges)
	}
	var ranges []byteRange
	for part := range strings.SplitSeq(spec, ",") {
		br, ok := parseByteRange(strings.TrimSpace(part), size)
		if !ok {
			return nil
		}
		if br.start < size && br.end >= br.start {
			ranges = append(ranges, br)
		}
	}
	if len(ranges) == 0 {
		return nil // unsatisfiable: ServeContent says so
	}
	slices.SortFunc(ranges, func(a, b byteRange) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	merged := ranges[:1]
	for _, br := range ranges[1:] {
		last := &merged[len(merged)-1]
		if br.start <= last.end+1 {
			last.end = max(last.end, br.end)
			continue
		}
		merged = append(merged, br)
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, br := range merged {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(br.start, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(br.end, 10))
	}
	r.Header["Range"] = []string{b.String()}
	return nil
}

// byteRange is an inclusive range of byte positions.
type byteRange struct{ start, end int64 }

// parseByteRange reads "first-last", "first-" or "-suffix" (RFC 9110
// 14.1.1), resolved against size and clipped to it.
func parseByteRange(s string, size int64) (byteRange, bool) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return byteRange{}, false
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, false
		}
		if n == 0 {
			return byteRange{start: size, end: size - 1}, true // unsatisfiable
		}
		return byteRange{start: max(size-n, 0), end: size - 1}, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, false
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < start {
			return byteRange{}, false
		}
		end = min(e, size-1)
	}
	return byteRange{start: start, end: end}, true
}
