package nix

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/config"
)

// TestResolveMeta: the evaluation that resolves the names also says what
// the requested packages say of themselves (pname, version, meta), in
// every form meta.license takes.
func TestResolveMeta(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	res, err := d.Resolve(context.Background(), LatestTag, hostSystem, []string{"hello", "multi", "nano", "iana-etc", "deep"})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	mit := License{SPDXID: "MIT", Name: "mit"}
	want := map[string]Package{
		"hello": {Pname: "hello", Version: "2.12.1", Meta: Meta{
			Description: "A program that produces a familiar, friendly greeting",
			Homepage:    "https://www.gnu.org/software/hello/manual/",
			Licenses:    []License{mit},
		}},
		"multi": {Meta: Meta{Description: "A package of three outputs", Homepage: "https://example.org/multi",
			Licenses: []License{mit, {SPDXID: "Apache-2.0", Name: "asl20"}}}},
		"nano":     {Meta: Meta{Licenses: []License{{Name: "nixport-test-custom"}}}},
		"iana-etc": {Meta: Meta{Licenses: []License{{Name: "free"}}}},
		"deep":     {},
	}
	for _, p := range res.Packages {
		w := want[p.Name]
		got := Package{Pname: p.Pname, Version: p.Version, Meta: p.Meta}
		if len(got.Meta.Licenses) == 0 {
			got.Meta.Licenses = nil
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: %+v, want %+v", p.Name, got, w)
		}
	}
	if res.Source != (Provenance{Kind: "builtin"}) {
		t.Errorf("provenance of the builtin set: %+v", res.Source)
	}
}

// TestNames: every path of a closure is named from its derivation, in one
// more Nix process: pname and version where the derivation has them, else
// its name split as parseDrvName splits it.
func TestNames(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	ctx := context.Background()
	img, err := d.Build(ctx, LatestTag, hostSystem, []string{"hello", "multi", "deep"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	before := d.ProcessCount()
	names, err := d.Names(ctx, img.Closure)
	if err != nil {
		t.Fatal(err)
	}
	if n := d.ProcessCount() - before; n != 1 {
		t.Errorf("%d Nix processes, want 1", n)
	}
	want := map[string]PathName{
		"hello":     {Name: "hello", Version: "2.12.1", Output: "out"},
		"greeting":  {Name: "greeting", Version: "1.0", Output: "out"},
		"busybox":   {Name: "busybox", Output: "out"},
		"multi":     {Name: "multi", Output: "out"},
		"multi-bin": {Name: "multi", Output: "bin"},
		"chain-c1":  {Name: "chain-c1", Output: "out"},
	}
	if len(names) != len(img.Closure.Paths) {
		t.Errorf("%d names for %d paths", len(names), len(img.Closure.Paths))
	}
	for _, p := range img.Closure.Paths {
		n, ok := names[p.Path]
		if !ok {
			t.Errorf("%s has no name", p.Path)
			continue
		}
		if n.From != NameFromDerivation {
			t.Errorf("%s named from %q", p.Path, n.From)
		}
		if w, ok := want[storeName(p.Path)]; ok {
			w.From = NameFromDerivation
			if n != w {
				t.Errorf("%s: %+v, want %+v", storeName(p.Path), n, w)
			}
		}
	}

	// Without its derivation a path is named from its store path.
	c := *img.Closure
	c.Paths = append([]PathInfo(nil), c.Paths...)
	for i := range c.Paths {
		c.Paths[i].Deriver = ""
	}
	before = d.ProcessCount()
	names, err = d.Names(ctx, &c)
	if err != nil {
		t.Fatal(err)
	}
	if n := d.ProcessCount() - before; n != 0 {
		t.Errorf("%d Nix processes without derivers, want 0", n)
	}
	for _, p := range c.Paths {
		if n := names[p.Path]; n.From != NameFromStorePath || n.Name != storeName(p.Path) || n.Output != "" {
			t.Errorf("%s named %+v without its derivation", p.Path, n)
		}
	}
}

func TestParseDrvName(t *testing.T) {
	for _, tc := range []struct{ in, name, version string }{
		{"hello-2.12.1", "hello", "2.12.1"},
		{"python3.11-requests-2.31.0", "python3.11-requests", "2.31.0"},
		{"chain-c1", "chain-c1", ""},
		{"multi-bin", "multi-bin", ""},
		{"openssl-3.0.13-bin", "openssl", "3.0.13-bin"},
		{"hello", "hello", ""},
		{"hello-", "hello-", ""},
		{"", "", ""},
		{"-1", "", "1"},
	} {
		name, version := ParseDrvName(tc.in)
		if name != tc.name || version != tc.version {
			t.Errorf("ParseDrvName(%q) = %q, %q; want %q, %q", tc.in, name, version, tc.name, tc.version)
		}
	}
}

func TestParseDerivations(t *testing.T) {
	const full = `{"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x-1.0.drv":{"outputs":{"out":{"path":"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x-1.0"}},"env":{"name":"x-1.0","pname":"x","version":"1.0"}}}`
	const base = `{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x-1.0.drv":{"outputs":{"out":{"path":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x-1.0"}},"env":{"name":"x-1.0"}}}`
	for _, in := range []string{full, base} {
		drvs, err := parseDerivations([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		p := PathInfo{Path: "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x-1.0", Deriver: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x-1.0.drv"}
		if n := nameOf(p, drvs); n != (PathName{Name: "x", Version: "1.0", Output: "out", From: NameFromDerivation}) {
			t.Errorf("%s: %+v", in, n)
		}
	}
	if _, err := parseDerivations([]byte(`[`)); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestPublicURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/NixOS/nixpkgs":                     "https://github.com/NixOS/nixpkgs",
		"https://user:token@git.example/org/repo.git?x=1#frag": "https://git.example/org/repo.git",
		"ssh://git@git.example/org/repo":                       "ssh://git.example/org/repo",
		"git@github.com:org/repo.git":                          "git@github.com:org/repo.git",
		"file:///srv/nixpkgs":                                  "file:///srv/nixpkgs",
	} {
		if got := publicURL(in); got != want {
			t.Errorf("publicURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGitProvenance: a git source's resolution names the repository
// (without credentials), the commit evaluated and its time.
func TestGitProvenance(t *testing.T) {
	needNix(t)
	dir, first, second, _ := gitRepo(t)
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourceGit, Value: "file://" + dir}})
	for tag, rev := range map[string]string{LatestTag: second, first: first} {
		res, err := d.Resolve(context.Background(), tag, hostSystem, []string{"one"})
		if err != nil {
			t.Fatal(err)
		}
		res.Release()
		p := res.Source
		if p.Kind != "git" || p.URL != "file://"+dir || p.Rev != rev || p.Time.IsZero() || time.Since(p.Time) > time.Hour {
			t.Errorf("tag %s: provenance %+v, want commit %s", tag, p, rev)
		}
	}
}

func TestBoundText(t *testing.T) {
	long := strings.Repeat("é", maxText)
	if got := boundText(long); len(got) > maxText || !strings.HasPrefix(long, got) || len(got) < maxText-1 {
		t.Errorf("bound of %d bytes: %d bytes", len(long), len(got))
	}
	if got := boundText("a\xffb"); got != "ab" {
		t.Errorf("invalid UTF-8 kept: %q", got)
	}
}

// TestNarSHA256: every form Nix prints a NAR hash in gives the same hex
// (the forms are nix hash to-base32 / to-base64 of the hex).
func TestNarSHA256(t *testing.T) {
	const want = "8b6c3b5d1bc1a8c3c3d7a3b6e9c1d4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b"
	for _, h := range []string{
		"sha256-i2w7XRvBqMPD16O26cHU9aa3yNng8aKzxNXm9wgZKjs=",
		"sha256:0fra344ggrnmqjrs5wg0v74bg9pmsk0ykdm3sz1w7a613dfknv4b",
		"sha256:" + want,
	} {
		if got, ok := (PathInfo{NarHash: h}).NarSHA256(); !ok || got != want {
			t.Errorf("%s: %q %v", h, got, ok)
		}
	}
	for _, h := range []string{
		"", "md5-abc", "sha256-!!", "sha256-AAAA",
		"sha256:0fra344ggrnmqjrs5wg0v74bg9pmsk0ykdm3sz1w7a613dfknv4e", // e is no nix32 digit
		"sha256:zfra344ggrnmqjrs5wg0v74bg9pmsk0ykdm3sz1w7a613dfknv4b", // overflows 256 bits
		"sha256:0fra",
	} {
		if got, ok := (PathInfo{NarHash: h}).NarSHA256(); ok {
			t.Errorf("%q accepted as %s", h, got)
		}
	}
}
