package procrun

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLastLines(t *testing.T) {
	noise := func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "warning: ") }
	tests := []struct {
		output string
		n      int
		drop   func(string) bool
		want   string
	}{
		{"", 5, nil, ""},
		{"a\nwarning: x\n\nb  \r\n\x1b[31;1mc\x1b[0m\nd\n", 2, noise, "c\nd"},
		{"a\nwarning: x\n\nb  \r\n\x1b[31;1mc\x1b[0m\nd\n", 10, noise, "a\nb\nc\nd"},
		{"a\nwarning: x\n", 10, nil, "a\nwarning: x"},
		{"  indented\n\t\n", 10, nil, "  indented"},
	}
	for _, tt := range tests {
		if got := LastLines(tt.output, tt.n, tt.drop); got != tt.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tt.output, tt.n, got, tt.want)
		}
	}
}

func TestClientTail(t *testing.T) {
	var many, wide strings.Builder
	for i := range 40 {
		many.WriteString("line " + strconv.Itoa(i) + "\n")
		wide.WriteString(strconv.Itoa(i%10) + strings.Repeat("x", 250) + "\n")
	}
	c := DefaultClientTail.WithDrop(func(l string) bool { return strings.TrimSpace(l) == "noise" }).
		WithDrop(func(l string) bool { return l == "more noise" })
	tests := []struct {
		name, output string
		check        func(string) bool
	}{
		{"empty", "", func(s string) bool { return s == "" }},
		{"blank lines only", "\n  \n\t\n", func(s string) bool { return s == "" }},
		{"dropped lines only", "noise\n  noise\nmore noise\n", func(s string) bool { return s == "" }},
		{"colours, blank and dropped lines left out",
			"building\nnoise\n\x1b[31;1merror:\x1b[0m failed  \n\n  \n",
			func(s string) bool { return s == "building\nerror: failed" }},
		{"at most Lines lines, the last ones", many.String(), func(s string) bool {
			l := strings.Split(s, "\n")
			return len(l) == c.Lines && l[0] == "line "+strconv.Itoa(40-c.Lines) && l[len(l)-1] == "line 39"
		}},
		{"at most Size bytes, whole lines", wide.String(), func(s string) bool {
			l := strings.Split(s, "\n")
			return len(s) <= c.Size && len(l) == c.Size/252 && strings.HasPrefix(l[len(l)-1], "9x")
		}},
		{"a long line is cut to LineSize", "error: " + strings.Repeat("y", 1000) + "\n", func(s string) bool {
			return len(s) == c.LineSize && strings.HasSuffix(s, "y…")
		}},
		{"a long line is cut on a character boundary", strings.Repeat("é", 400), func(s string) bool {
			return len(s) <= c.LineSize && len(s) >= c.LineSize-4 && strings.HasSuffix(s, "é…") && utf8.ValidString(s)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Of(tt.output)
			if !tt.check(got) {
				t.Errorf("Of = %q", got)
			}
			if w := c.Suffix("its output", tt.output); (w == "") != (got == "") || w != "" && w != "; the last lines of its output:\n"+got {
				t.Errorf("Suffix = %q", w)
			}
		})
	}
}
