package prewarm

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	long := strings.Repeat("a", 256)
	tests := []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{"shell/git/htop:latest", Ref{Name: "shell/git/htop", Tag: "latest"}, ""},
		{"shell/hello", Ref{Name: "shell/hello", Tag: "latest"}, ""},
		{"hello:nixos-24.05", Ref{Name: "hello", Tag: "nixos-24.05"}, ""},
		{"shell/python3.pkgs__numpy:0123abc", Ref{Name: "shell/python3.pkgs__numpy", Tag: "0123abc"}, ""},
		{"arm64/shell/hello:_x", Ref{Name: "arm64/shell/hello", Tag: "_x"}, ""},
		{"Shell/hello", Ref{}, `invalid name "Shell/hello": repository name must be lower-case`},
		{"shell/hello/", Ref{}, `invalid name "shell/hello/"`},
		{"/shell", Ref{}, `invalid name "/shell"`},
		{"shell/" + long, Ref{}, "repository name component of 256 bytes: at most 255"},
		{"shell:", Ref{}, `invalid tag ""`},
		{"shell:.x", Ref{}, `invalid tag ".x"`},
		{"shell:" + strings.Repeat("t", 129), Ref{}, "invalid tag"},
		{"shell:a:b", Ref{}, `the registry's host is not part of the name`},
		{"localhost:5000/shell", Ref{}, `"localhost:5000/shell": the registry's host is not part of the name`},
		{"shell@sha256:0000", Ref{}, "a digest names an image already built"},
		{"shell\thello", Ref{}, "one image reference per line"},
	}
	for _, tt := range tests {
		got, err := parseRef(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("parseRef(%q): %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseRef(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
		case got != tt.want:
			t.Errorf("parseRef(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestReadRefs: comments, blank lines and surrounding space are skipped,
// a reference listed twice is kept once (its first line), and every
// invalid line is reported with its number, as file:line.
func TestReadRefs(t *testing.T) {
	in := "# images\n\n  shell/hello  \nshell/git:v1 # pinned\n\t\nshell/hello:latest\nBAD\nshell/git:v1\n#shell/IGNORED\nalso bad:\n"
	refs, err := readRefs("images.txt", strings.NewReader(in))
	want := []Ref{{"shell/hello", "latest", 3}, {"shell/git", "v1", 4}}
	if len(refs) != len(want) || refs[0] != want[0] || refs[1] != want[1] {
		t.Errorf("refs %+v, want %+v", refs, want)
	}
	if err == nil {
		t.Fatal("no error for invalid lines")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `images.txt:7: invalid name "BAD"`) || !strings.HasPrefix(lines[1], `images.txt:10: "also bad:": one image reference per line`) {
		t.Errorf("error:\n%v", err)
	}

	refs, err = readRefs("f", strings.NewReader("shell/hello\n"+strings.Repeat("x", maxLine+1)+"\n"))
	if err == nil || !strings.Contains(err.Error(), "f:2: a line longer than 65536 bytes") {
		t.Errorf("a line too long: %v (refs %v)", err, refs)
	}

	refs, err = readRefs("f", strings.NewReader("# nothing\n\n"))
	if len(refs) != 0 || err != nil {
		t.Errorf("only comments: %v, %v", refs, err)
	}
}
