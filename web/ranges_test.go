package web

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nixport/nixport/errcode"
)

func TestBoundRanges(t *testing.T) {
	const size = 1000
	tests := []struct {
		in, want string // want "": the header is left as it is
		invalid  bool
	}{
		{"bytes=0-9", "bytes=0-9", false},
		{"bytes=5-19,0-9", "bytes=0-19", false},
		{"bytes=0-9,10-19", "bytes=0-19", false},
		{"bytes=0-9,20-29", "bytes=0-9,20-29", false},
		{"bytes=20-29,0-9", "bytes=0-9,20-29", false},
		{"bytes=-10", "bytes=990-999", false},
		{"bytes=990-", "bytes=990-999", false},
		{"bytes=0-5000", "bytes=0-999", false},
		{"bytes=0-9, 5000-", "bytes=0-9", false},
		{"bytes=5000-", "", false}, // unsatisfiable: ServeContent answers 416
		{"bytes=x-y", "", false},   // malformed: ServeContent answers 416
		{"items=0-9", "", false},   // another unit: ServeContent ignores it
		{"bytes=9-0", "", false},   // malformed
		{"bytes=-0", "", false},    // unsatisfiable
		{"bytes=0-0," + strings.Repeat("0-0,", maxRanges-2) + "0-0", "bytes=0-0", false},
		{"bytes=" + strings.Repeat("0-0,", maxRanges) + "0-0", "", true},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Range", tt.in)
		err := boundRanges(r, size)
		if tt.invalid {
			if e, ok := errcode.As(err); !ok || e.Code != errcode.RangeInvalid {
				t.Errorf("%.60q: %v, want RANGE_INVALID", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.60q: %v", tt.in, err)
			continue
		}
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if got := r.Header.Get("Range"); got != want {
			t.Errorf("%.60q became %q, want %q", tt.in, got, want)
		}
	}
}

// FuzzBoundRanges checks, for any Range header, that boundRanges never
// panics and that a header it rewrites asks for exactly the bytes the
// original's satisfiable ranges did, in few, ordered, disjoint ranges.
//
//	go test ./web -run '^$' -fuzz FuzzBoundRanges -fuzztime 1m
func FuzzBoundRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=5-19,0-9", "bytes=-10", "bytes=90-", "bytes=0-0,0-0", "bytes=x", "bytes=1-2,4-5,3-3"} {
		f.Add(s, uint16(100))
	}
	f.Fuzz(func(t *testing.T, header string, size16 uint16) {
		size := int64(size16)
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header["Range"] = []string{header}
		if err := boundRanges(r, size); err != nil {
			return
		}
		got := r.Header["Range"][0]
		if got == header {
			return
		}
		wantBytes := coveredBytes(t, header, size)
		gotBytes := coveredBytes(t, got, size)
		if wantBytes != gotBytes {
			t.Fatalf("%q (size %d) became %q: bytes %q, want %q", header, size, got, gotBytes, wantBytes)
		}
		var prevEnd int64 = -2
		n := 0
		for part := range strings.SplitSeq(strings.TrimPrefix(got, "bytes="), ",") {
			n++
			a, b, _ := strings.Cut(part, "-")
			start, _ := strconv.ParseInt(a, 10, 64)
			end, _ := strconv.ParseInt(b, 10, 64)
			if start <= prevEnd+1 || end < start || end >= size {
				t.Fatalf("%q became %q: ranges not ordered, disjoint and within %d", header, got, size)
			}
			prevEnd = end
		}
		if n > maxRanges {
			t.Fatalf("%q became %d ranges", header, n)
		}
	})
}

// coveredBytes marks which of size bytes a Range header asks for, reading
// it with parseByteRange.
func coveredBytes(t *testing.T, header string, size int64) string {
	covered := make([]byte, size)
	for i := range covered {
		covered[i] = '.'
	}
	for part := range strings.SplitSeq(strings.TrimPrefix(header, "bytes="), ",") {
		br, ok := parseByteRange(strings.TrimSpace(part), size)
		if !ok {
			t.Fatalf("%q: part %q does not parse, yet the header was rewritten", header, part)
		}
		for i := br.start; i <= br.end && i < size; i++ {
			covered[i] = '#'
		}
	}
	return string(covered)
}
