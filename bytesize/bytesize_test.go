package bytesize

import (
	"math"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "50GiB", want: 50 << 30},
		{in: "50 GiB", want: 50 << 30},
		{in: "50gib", want: 50 << 30},
		{in: " 500MB ", want: 500e6},
		{in: "500mb", want: 500e6},
		{in: "1kB", want: 1000},
		{in: "1KB", want: 1000},
		{in: "1KiB", want: 1024},
		{in: "2TiB", want: 2 << 40},
		{in: "3TB", want: 3e12},
		{in: "1PiB", want: 1 << 50},
		{in: "1EiB", want: 1 << 60},
		{in: "12B", want: 12},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1.5 B", want: 1}, // fractions of a byte are dropped
		{in: "3.45 MiB", want: 3617587},
		{in: "0.00 MiB", want: 0},
		{in: "007", want: 7},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "8EiB", wantErr: "too large"},
		{in: "", wantErr: "does not start with a number"},
		{in: "GiB", wantErr: "does not start with a number"},
		{in: "-1", wantErr: "does not start with a number"},
		{in: "+1", wantErr: "does not start with a number"},
		{in: ".5GiB", wantErr: "does not start with a number"},
		{in: "1.GiB", wantErr: "needs digits after it"},
		{in: "1e9", wantErr: `unknown unit "e9"`},
		{in: "1,5GB", wantErr: "unknown unit"},
		{in: "50G", wantErr: `unit "G" is ambiguous: write GB (powers of 1000) or GiB (powers of 1024)`},
		{in: "1m", wantErr: "ambiguous"},
		{in: "1 bytes", wantErr: "unknown unit"},
		{in: "1GiB2", wantErr: "unknown unit"},
		{in: strings.Repeat("1", 65), wantErr: "too long"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.00 KiB"},
		{3 << 29, "1.50 GiB"},
		{50 << 30, "50.00 GiB"},
		{1 << 60, "1.00 EiB"},
		{-2048, "-2.00 KiB"},
		{math.MinInt64, "-8.00 EiB"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParse: Parse never panics, never returns a negative size, and reads
// what Format writes back to within its rounding.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"50GiB", "500 MB", "1.5TiB", "1048576", "3.45 MiB", "1e9", "9223372036854775807", ".", "1.", "50G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d", s, n)
		}
		back, err := Parse(Format(n))
		if err != nil {
			if n < 7<<60 {
				t.Fatalf("Parse(Format(%d) = %q): %v", n, Format(n), err)
			}
			return
		}
		if diff := math.Abs(float64(back - n)); diff > float64(n)/200+1 {
			t.Fatalf("Parse(Format(%d) = %q) = %d", n, Format(n), back)
		}
	})
}
