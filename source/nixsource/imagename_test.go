package nixsource

import (
	"slices"
	"strings"
	"testing"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/nix"
)

func TestParseImageName(t *testing.T) {
	base := []string{"cacert", "iana-etc"}
	shell := []string{"bashInteractive", "coreutils", "moreutils", "nano"}
	with := func(pkgs ...[]string) []string {
		var out []string
		for _, p := range pkgs {
			out = append(out, p...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	tests := []struct {
		name    string
		opts    *NameOptions // nil: DefaultNameOptions
		want    []string
		system  string
		nonRoot bool
		wantErr string // substring of the NAME_INVALID message
	}{
		{name: "nonroot/hello", want: with(base, []string{"hello"}), nonRoot: true},
		{name: "shell/nonroot/arm64/htop", want: with(base, shell, []string{"htop"}), system: "aarch64-linux", nonRoot: true},
		{name: "nonroot/nonroot", want: base, nonRoot: true},
		{name: "hello/nonroot", want: with(base, []string{"hello", "nonroot"})},
		{name: "hello", want: with(base, []string{"hello"})},
		{name: "htop/git", want: with(base, []string{"git", "htop"})},
		{name: "git/htop/git", want: with(base, []string{"git", "htop"})},
		{name: "shell", want: with(base, shell)},
		{name: "shell/htop", want: with(base, shell, []string{"htop"})},
		{name: "shell/shell/htop", want: with(base, shell, []string{"htop"})},
		// Meta-packages only count at the front of the path.
		{name: "htop/shell", want: with(base, []string{"htop", "shell"})},
		{name: "htop/arm64", want: with(base, []string{"arm64", "htop"})},
		{name: "arm64/htop", want: with(base, []string{"htop"}), system: "aarch64-linux"},
		{name: "arm64/shell/htop", want: with(base, shell, []string{"htop"}), system: "aarch64-linux"},
		{name: "shell/arm64/htop", want: with(base, shell, []string{"htop"}), system: "aarch64-linux"},
		{name: "amd64/htop", want: with(base, []string{"htop"}), system: "x86_64-linux"},
		{name: "arm64", want: base, system: "aarch64-linux"},
		{name: "xorg.xev/haskellPackages.pandoc/iana-etc", want: with(base, []string{"haskellPackages.pandoc", "xorg.xev"})},
		{name: "gtk+/_0x0/7zz", want: with(base, []string{"7zz", "_0x0", "gtk+"})},
		{name: "cacert", want: base},
		// Options.
		{name: "hello", opts: &NameOptions{}, want: []string{"hello"}},
		{name: "hello", opts: &NameOptions{BasePackages: []string{"tzdata"}}, want: []string{"hello", "tzdata"}},
		{name: "a/b/c", opts: &NameOptions{MaxPackages: 3}, want: []string{"a", "b", "c"}},
		{name: "a/b/c/d", opts: &NameOptions{MaxPackages: 3}, wantErr: "too many packages in the image name: 4, at most 3"},
		{name: strings.Repeat("a/", 64) + "a", wantErr: "too many packages in the image name: 65, at most 64"},
		{name: strings.Repeat("a/", 63) + "a", want: with(base, []string{"a"})},
		// Invalid.
		{name: "", wantErr: "empty image name"},
		{name: "hello/", wantErr: "empty component"},
		{name: "/hello", wantErr: "empty component"},
		{name: "shell/", wantErr: "empty component"},
		{name: "a//b", wantErr: "empty component"},
		{name: "arm64/amd64/htop", wantErr: "both arm64 and amd64"},
		{name: "hello/-rf", wantErr: `invalid package name "-rf"`},
		{name: "hello/a..b", wantErr: `invalid package name "a..b"`},
		{name: "hello/.a", wantErr: `invalid package name ".a"`},
		{name: `hello/a"b`, wantErr: `invalid package name "a\"b"`},
		{name: "hello/${x}", wantErr: `invalid package name "${x}"`},
		{name: "hello/a b", wantErr: `invalid package name "a b"`},
		{name: "hello/é", wantErr: `invalid package name "é"`},
		{name: "hello/" + strings.Repeat("x", 201), wantErr: `invalid package name "xxxxxxxx`},
	}
	for _, tc := range tests {
		opts := DefaultNameOptions()
		if tc.opts != nil {
			opts = *tc.opts
		}
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseImageName(tc.name, opts)
			if tc.wantErr != "" {
				e, ok := errcode.As(err)
				if !ok || e.Code != errcode.NameInvalid || !strings.Contains(e.Message, tc.wantErr) {
					t.Fatalf("got %+v, %v; want NAME_INVALID containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			system := tc.system
			if system == "" {
				system = SystemAMD64
			}
			if !slices.Equal(got.Packages, tc.want) || got.System != system || got.NonRoot != tc.nonRoot {
				t.Errorf("got %+v, want %v for %s", got, tc.want, system)
			}
		})
	}
}

func TestImageRequestKey(t *testing.T) {
	opts := DefaultNameOptions()
	key := func(name string) string {
		t.Helper()
		r, err := ParseImageName(name, opts)
		if err != nil {
			t.Fatal(err)
		}
		return r.Key()
	}
	same := [][]string{
		{"git/htop", "htop/git", "htop/git/htop", "cacert/git/htop/iana-etc"},
		{"shell/git", "shell/shell/git", "git/bashInteractive/coreutils/moreutils/nano"},
		{"amd64/git", "git"},
		{"nonroot/git", "nonroot/nonroot/git", "amd64/nonroot/git"},
	}
	for _, group := range same {
		for _, n := range group[1:] {
			if key(n) != key(group[0]) {
				t.Errorf("%s and %s differ: %s, %s", group[0], n, key(group[0]), key(n))
			}
		}
	}
	different := [][2]string{{"git", "arm64/git"}, {"git", "git/htop"}, {"CoinMP", "coinmp"}, {"git/shell", "shell/git"}, {"git", "nonroot/git"}, {"git/nonroot", "nonroot/git"}}
	for _, p := range different {
		if key(p[0]) == key(p[1]) {
			t.Errorf("%s and %s share key %s", p[0], p[1], key(p[0]))
		}
	}
	if got := key("htop/git"); got != "x86_64-linux:cacert,git,htop,iana-etc" {
		t.Errorf("key %q", got)
	}
	if got := key("nonroot/git"); got != "x86_64-linux:cacert,git,iana-etc:nonroot" {
		t.Errorf("key %q", got)
	}
}

func TestParseImageNameBadBasePackage(t *testing.T) {
	_, err := ParseImageName("hello", NameOptions{BasePackages: []string{"bad name"}})
	if err == nil {
		t.Fatal("no error")
	}
	if _, ok := errcode.As(err); ok {
		t.Errorf("a configuration fault is no client error: %v", err)
	}
}

// FuzzParseImageName checks the parser's invariants on any input: it never
// panics; a rejected name is NAME_INVALID; an accepted one gives sorted,
// unique, valid package names of safe characters only, a known system, and
// the same request whatever the order of its non-meta components.
func FuzzParseImageName(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzParseImageName.
	opts := DefaultNameOptions()
	f.Fuzz(func(t *testing.T, name string) {
		req, err := ParseImageName(name, opts)
		if err != nil {
			if e, ok := errcode.As(err); !ok || e.Code != errcode.NameInvalid {
				t.Fatalf("%q: error %v is not NAME_INVALID", name, err)
			}
			return
		}
		if req.System != SystemAMD64 && req.System != SystemARM64 {
			t.Fatalf("%q: system %q", name, req.System)
		}
		if n := len(req.Packages); n > opts.MaxPackages+len(shellPackages)+len(opts.BasePackages) {
			t.Fatalf("%q: %d packages", name, n)
		}
		for i, p := range req.Packages {
			if i > 0 && req.Packages[i-1] >= p {
				t.Fatalf("%q: packages not sorted and unique: %q", name, req.Packages)
			}
			if !nix.ValidName(p) {
				t.Fatalf("%q: invalid package %q accepted", name, p)
			}
			for _, r := range p {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
					t.Fatalf("%q: unsafe character %q in %q", name, r, p)
				}
			}
		}
		for _, b := range opts.BasePackages {
			if !slices.Contains(req.Packages, b) {
				t.Fatalf("%q: base package %s missing", name, b)
			}
		}
		// Every non-meta component is a package, and their order does
		// not matter.
		comps := strings.Split(name, "/")
		i := 0
		for i < len(comps) && isMeta(comps[i]) {
			i++
		}
		rest := comps[i:]
		for _, c := range rest {
			if !slices.Contains(req.Packages, c) {
				t.Fatalf("%q: component %q is not among the packages %q", name, c, req.Packages)
			}
		}
		if len(rest) > 1 && !isMeta(rest[len(rest)-1]) {
			rev := append(append([]string(nil), comps[:i]...), rest...)
			slices.Reverse(rev[i:])
			req2, err := ParseImageName(strings.Join(rev, "/"), opts)
			if err != nil || req2.Key() != req.Key() {
				t.Fatalf("%q and its reverse %q differ: %v, %v", name, strings.Join(rev, "/"), req2, err)
			}
		}
	})
}

func isMeta(c string) bool { return c == "shell" || c == "arm64" || c == "amd64" || c == "nonroot" }
