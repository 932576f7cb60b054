package web

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	for _, tt := range []struct {
		in          string
		first, last int64
		ok          bool
	}{
		{"0-0", 0, 0, true},
		{"0-1023", 0, 1023, true},
		{"1024-2047", 1024, 2047, true},
		{"0000-0010", 0, 10, true},
		{"4611686018427387904-4611686018427387904", 1 << 62, 1 << 62, true},
		{"4611686018427387905-4611686018427387905", 0, 0, false}, // past the bound
		{"9223372036854775807-9223372036854775807", 0, 0, false},
		{"99999999999999999999-1", 0, 0, false},
		{"10-9", 0, 0, false},
		{"bytes 0-9/10", 0, 0, false},
		{"bytes=0-9", 0, 0, false},
		{"0-9/10", 0, 0, false},
		{"-9", 0, 0, false},
		{"0-", 0, 0, false},
		{"-", 0, 0, false},
		{"", 0, 0, false},
		{" 0-9", 0, 0, false},
		{"+0-9", 0, 0, false},
		{"0--9", 0, 0, false},
		{"0x1-0x2", 0, 0, false},
	} {
		first, last, err := parseContentRange(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (first != tt.first || last != tt.last)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, first, last, err, tt.first, tt.last, tt.ok)
		}
	}
}

// contentRangeRE is the OCI spec's pattern of a chunk's Content-Range.
var contentRangeRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// FuzzContentRange feeds arbitrary Content-Range values (client input)
// to the parser: it never panics, accepts only what the spec's pattern
// matches, with first <= last within the bound, and reads back the
// numbers written.
//
//	go test ./web -run '^$' -fuzz FuzzContentRange -fuzztime 1m
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-1023", "1024-2047", "10-9", "bytes 0-9/10", "", "-", "4611686018427387904-4611686018427387904"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, err := parseContentRange(s)
		if err != nil {
			return
		}
		if !contentRangeRE.MatchString(s) {
			t.Fatalf("accepted %q, which the spec's pattern does not match", s)
		}
		if first < 0 || first > last || last > maxRangeNumber {
			t.Fatalf("%q gave %d-%d", s, first, last)
		}
		a, b, _ := strings.Cut(s, "-")
		if x, _ := strconv.ParseInt(a, 10, 64); x != first {
			t.Fatalf("%q: first %d", s, first)
		}
		if y, _ := strconv.ParseInt(b, 10, 64); y != last {
			t.Fatalf("%q: last %d", s, last)
		}
	})
}
