package reference

import (
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
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

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"shell/git/htop", true},
		{strings.Repeat("a", MaxComponentLength), true},
		{strings.Repeat("a", MaxComponentLength+1), false},
		{strings.Repeat("ab/", MaxNameLength/3-1) + "c", true},
		{strings.Repeat("ab/", MaxNameLength/3) + "c", false},
		{"Shell", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%.40q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCheckComponent(t *testing.T) {
	for _, tt := range []struct {
		s  string
		ok bool
	}{
		{"local", true}, {"ci", true}, {"a.b-c_d", true},
		{"local/app", false}, {"Local", false}, {"", false}, {"-a", false}, {"_x", false},
		{strings.Repeat("a", MaxComponentLength+1), false},
	} {
		if err := CheckComponent(tt.s); (err == nil) != tt.ok {
			t.Errorf("CheckComponent(%.40q) = %v, want ok=%v", tt.s, err, tt.ok)
		}
	}
}

func TestParseDigest(t *testing.T) {
	good := []string{"sha256:" + strings.Repeat("0", 64), "sha512:" + strings.Repeat("f", 128)}
	bad := []string{
		"", "sha256", "sha256:", ":" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 63),
		"sha256:" + strings.Repeat("F", 64), "sha256:" + strings.Repeat("g", 64), "SHA256:" + strings.Repeat("0", 64),
		"sha384:" + strings.Repeat("0", 96), "md5:" + strings.Repeat("0", 32), "sha256+b64:" + strings.Repeat("0", 64),
		"sha512:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 64) + ":",
	}
	for _, s := range good {
		d, err := ParseDigest(s)
		if err != nil || string(d) != s || ValidDigest(d) != nil {
			t.Errorf("ParseDigest(%q) = %q, %v", s, d, err)
		}
		// Whatever is accepted, go-digest accepts too.
		if err := digest.Digest(s).Validate(); err != nil {
			t.Errorf("go-digest refuses %q: %v", s, err)
		}
	}
	for _, s := range bad {
		if d, err := ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) = %q, want an error", s, d)
		}
	}
}

// FuzzParseDigest checks that ParseDigest accepts nothing go-digest
// refuses, and only lower-case sha256 and sha512.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("0", 64), "sha512:" + strings.Repeat("a", 128), "sha256:", "sha384:" + strings.Repeat("0", 96)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if verr := d.Validate(); verr != nil {
			t.Fatalf("ParseDigest(%q) accepted what go-digest refuses: %v", s, verr)
		}
		if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
			t.Fatalf("ParseDigest(%q) accepted algorithm %s", s, a)
		}
	})
}
