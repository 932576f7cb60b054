package reference

import (
	"regexp"
	"strings"
	"testing"
)

var (
	namePattern = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagPattern  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"hello", true},
		{"shell/git/htop", true},
		{"xorg.xev", true},
		{"a__b--c.d/e_f", true},
		{"a---b", true},
		{"", false},
		{"Hello", false},
		{"a//b", false},
		{"/a", false},
		{"a/", false},
		{"a..b", false},
		{"a___b", false},
		{"_a", false},
		{"a-", false},
		{"a b", false},
		{"a/../b", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
		if re := namePattern.MatchString(tt.name); re != tt.want {
			t.Errorf("test case %q disagrees with the spec's pattern", tt.name)
		}
	}
}

func TestValidTag(t *testing.T) {
	for _, tag := range []string{"latest", "v1.0", "_x", "A-b_c.d", strings.Repeat("a", 128), "", ".x", "-x", "a:b", "a/b", strings.Repeat("a", 129)} {
		if got, want := ValidTag(tag), tagPattern.MatchString(tag); got != want {
			t.Errorf("ValidTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

// FuzzGrammar checks that the scanners agree exactly with the spec's
// regular expressions.
func FuzzGrammar(f *testing.F) {
	for _, s := range []string{"hello", "shell/git", "a__b", "a___b", "v1.0", "-x", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidName(s) != namePattern.MatchString(s) {
			t.Errorf("ValidName(%q) disagrees with the pattern", s)
		}
		if ValidTag(s) != tagPattern.MatchString(s) {
			t.Errorf("ValidTag(%q) disagrees with the pattern", s)
		}
	})
}
