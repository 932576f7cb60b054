package nix

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/procrun"
)

const (
	pA = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
	pB = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b"
	pC = "/nix/store/cccccccccccccccccccccccccccccccc-c"
)

func TestParsePathInfo(t *testing.T) {
	// Nix 2.8: an array sorted by path; a path may list itself.
	old := `[
 {"path":"` + pA + `","narHash":"sha256-AAA=","narSize":10,"references":["` + pA + `","` + pB + `"],"deriver":"/nix/store/x.drv","registrationTime":1,"ultimate":true},
 {"path":"` + pB + `","narHash":"sha256-BBB=","narSize":20,"references":["` + pC + `"]},
 {"path":"` + pC + `","narHash":"sha256-CCC=","narSize":30,"references":[]}
]`
	// Nix 2.19 and later: an object keyed by store path.
	recent := `{
 "` + pC + `":{"narHash":"sha256-CCC=","narSize":30,"references":[]},
 "` + pA + `":{"narHash":"sha256-AAA=","narSize":10,"references":["` + pB + `","` + pA + `"],"signatures":[]},
 "` + pB + `":{"narHash":"sha256-BBB=","narSize":20,"references":["` + pC + `"]}
}`
	want := &Closure{Roots: []string{pA}, Paths: []PathInfo{
		{Path: pA, NarSize: 10, NarHash: "sha256-AAA=", References: []string{pB}},
		{Path: pB, NarSize: 20, NarHash: "sha256-BBB=", References: []string{pC}},
		{Path: pC, NarSize: 30, NarHash: "sha256-CCC=", References: []string{}},
	}}
	for name, in := range map[string]string{"array (Nix 2.8)": old, "object (Nix >= 2.19)": recent} {
		t.Run(name, func(t *testing.T) {
			got, err := parsePathInfo([]byte(in), []string{pA})
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(g) != string(w) {
				t.Errorf("got  %s\nwant %s", g, w)
			}
			if got.NarSize() != 60 || got.Index(pB) != 1 || got.Index("/nix/store/zz") != -1 {
				t.Errorf("NarSize %d, Index %d", got.NarSize(), got.Index(pB))
			}
		})
	}

	bad := map[string]string{
		"invalid path (2.8)":  `[{"path":"` + pA + `","valid":false}]`,
		"invalid path (2.19)": `{"` + pA + `":null}`,
		"missing root":        `[{"path":"` + pB + `","narSize":1,"references":[]}]`,
		"dangling reference":  `[{"path":"` + pA + `","narSize":1,"references":["` + pB + `"]}]`,
		"not JSON":            `error: something`,
		"no path":             `[{"narSize":1}]`,
	}
	for name, in := range bad {
		if _, err := parsePathInfo([]byte(in), []string{pA}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFirstError(t *testing.T) {
	tests := []struct{ name, stderr, want string }{
		{"minver abort", `warning: something
error: evaluation aborted with the following error message: 'This version of Nixpkgs requires Nix >= 2.18, please upgrade:

       - If you are running NixOS, ` + "`nixos-rebuild'" + ` can be used to upgrade your system.
       '
(use '--show-trace' to show detailed location information)
`, "This version of Nixpkgs requires Nix >= 2.18, please upgrade"},
		{"minver abort as Nix 2.8 prints it", `error: evaluation aborted with the following error message: '
       This version of Nixpkgs requires Nix >= 99.0, please upgrade:

       - If you are running NixOS, ` + "`nixos-rebuild'" + ` can be used to upgrade your system.
       '
(use '--show-trace' to show detailed location information)
`, "This version of Nixpkgs requires Nix >= 99.0, please upgrade"},
		{"throw", "error: nixport test packages cannot build hello for aarch64-linux\n(use '--show-trace' to show detailed location information)\n",
			"nixport test packages cannot build hello for aarch64-linux"},
		{"colours", "\x1b[31;1merror:\x1b[0m undefined variable '\x1b[35;1mfoo\x1b[0m'\n\n       at /tmp/x.nix:1:1:\n",
			"undefined variable 'foo'"},
		{"git", "fatal: couldn't find remote ref refs/heads/v2\nerror: program 'git' failed with exit code 128\n",
			"fatal: couldn't find remote ref refs/heads/v2"},
		{"no error line", "warning: you did not specify '--add-root'; the result might be removed by the garbage collector\nsomething odd\n",
			"something odd"},
		{"long", "error: " + strings.Repeat("x", 1000), strings.Repeat("x", maxMessage-1) + "…"},
	}
	for _, tc := range tests {
		if got := firstError(tc.stderr); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStderrTail(t *testing.T) {
	in := "a\nwarning: you did not specify '--add-root'; the result might be removed by the garbage collector\n\nb\nc\nd\n"
	if got := stderrTail(in, 2); got != "c\nd" {
		t.Errorf("got %q", got)
	}
	if got := stderrTail(in, 10); got != "a\nb\nc\nd" {
		t.Errorf("got %q", got)
	}
}

func TestBuildFailureMessage(t *testing.T) {
	res := &Resolution{Packages: []Package{{Name: "broken", DrvPath: "/nix/store/v03az7yplcvz9crk33hyjzqwmv4v4b9c-broken.drv"}}}
	r := procrun.Result{ExitCode: 100, Tail: `building '/nix/store/v03az7yplcvz9crk33hyjzqwmv4v4b9c-broken.drv'...
nixport test package: this build fails on purpose
error: builder for '/nix/store/v03az7yplcvz9crk33hyjzqwmv4v4b9c-broken.drv' failed with exit code 1
error: builder for '/nix/store/11111111111111111111111111111111-dep.drv' failed with exit code 2;
error: 1 dependencies of derivation '/nix/store/x-y.drv' failed to build
`}
	e, ok := errcode.As(buildFailure(res, r))
	if !ok || e.Code != errcode.BuildFailed {
		t.Fatalf("got %v", e)
	}
	want := "building the image failed: package broken (/nix/store/v03az7yplcvz9crk33hyjzqwmv4v4b9c-broken.drv) failed with exit code 1; " +
		"/nix/store/11111111111111111111111111111111-dep.drv failed with exit code 2; the last lines of the build output:\n" +
		strings.TrimSuffix(r.Tail, "\n")
	if e.Message != want {
		t.Errorf("got  %q\nwant %q", e.Message, want)
	}
	r = procrun.Result{ExitCode: 1, Tail: "error: a 'aarch64-linux' with features {} is required to build '/nix/store/x.drv', but I am a 'x86_64-linux'\n"}
	e, _ = errcode.As(buildFailure(res, r))
	if e == nil || !strings.HasPrefix(e.Message, "building the image failed: a 'aarch64-linux' with features {} is required") {
		t.Errorf("got %v", e)
	}
}

// TestClientTail: what a client is shown of Nix's stderr leaves out what
// only Nix prints; procrun's tests check the bounds.
func TestClientTail(t *testing.T) {
	addRoot := "warning: you did not specify '--add-root'; the result might be removed by the garbage collector\n"
	tests := []struct {
		name, stderr string
		want         string // "" for nothing to show
	}{
		{"empty", "", ""},
		{"only the add-root warning", addRoot + "\n", ""},
		{"warning, colours and blank lines dropped",
			"building '/nix/store/x.drv'...\n" + addRoot + "\x1b[31;1merror:\x1b[0m builder failed\n\n  \n",
			"building '/nix/store/x.drv'...\nerror: builder failed"},
		{"Nix's note that it was interrupted dropped",
			"building '/nix/store/x.drv'...\nerror: interrupted by the user\n",
			"building '/nix/store/x.drv'..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientTail.Of(tc.stderr); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if w := clientTail.Suffix("it", tc.stderr); (w == "") != (tc.want == "") || w != "" && w != "; the last lines of it:\n"+tc.want {
				t.Errorf("Suffix = %q", w)
			}
		})
	}
	// The log keeps what the client is spared.
	if got := stderrTail("a\nerror: interrupted by the user\n", 5); got != "a\nerror: interrupted by the user" {
		t.Errorf("stderrTail = %q", got)
	}
}

func TestFailureMessage(t *testing.T) {
	tests := []struct {
		name, stderr string
		want         string
	}{
		{"evaluation error", "error: undefined variable 'foo'\n\n       at /tmp/x.nix:1:1:\n",
			"evaluating the package set failed: undefined variable 'foo'"},
		{"unfree (nixpkgs' check-meta)", "error: Package ‘steam-1.0’ in /nix/store/s-source/pkgs/games/steam/default.nix:12 has an unfree license (‘unfree’), refusing to evaluate.\n\n" +
			"       a) To temporarily allow unfree packages, you can use an environment variable\n",
			"the package set refuses to build a package: Package ‘steam-1.0’ in /nix/store/s-source/pkgs/games/steam/default.nix:12 has an unfree license (‘unfree’), refusing to evaluate. " +
				"Choose another package: this registry uses the package set's default configuration, which allows no unfree, broken or insecure packages"},
		{"nothing on stderr", "", "evaluating the package set failed: nix-instantiate exited with code 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := errcode.As(failure("evaluating the package set failed", "nix-instantiate", procrun.Result{ExitCode: 1, Tail: tc.stderr}))
			if !ok || e.Code != errcode.BuildFailed {
				t.Fatalf("got %v", e)
			}
			if e.Message != tc.want {
				t.Errorf("got  %q\nwant %q", e.Message, tc.want)
			}
		})
	}
}

func TestSourceSpecAndPinned(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		src    config.PackageSource
		tag    string
		want   string
		pinned bool
	}{
		{config.PackageSource{Kind: config.SourceGit, Value: "https://example.org/p.git"}, "latest",
			`{"kind":"git","git":{"url":"https://example.org/p.git","ref":"HEAD"}}`, false},
		{config.PackageSource{Kind: config.SourceGit, Value: "https://example.org/p.git"}, "release-1",
			`{"kind":"git","git":{"url":"https://example.org/p.git","ref":"release-1"}}`, false},
		{config.PackageSource{Kind: config.SourceGit, Value: "https://example.org/p.git"}, commit,
			`{"kind":"git","git":{"url":"https://example.org/p.git","rev":"` + commit + `","allRefs":true}}`, true},
		{config.PackageSource{Kind: config.SourceGit, Value: "https://example.org/p.git"}, strings.ToUpper(commit),
			`{"kind":"git","git":{"url":"https://example.org/p.git","ref":"` + strings.ToUpper(commit) + `"}}`, false},
		{config.PackageSource{Kind: config.SourceChannel, Value: "nixos-unstable"}, "latest",
			`{"kind":"channel","url":"https://github.com/NixOS/nixpkgs/archive/nixos-unstable.tar.gz"}`, false},
		{config.PackageSource{Kind: config.SourceChannel, Value: "nixos-unstable"}, "nixos-24.05",
			`{"kind":"channel","url":"https://github.com/NixOS/nixpkgs/archive/nixos-24.05.tar.gz"}`, false},
		{config.PackageSource{Kind: config.SourceChannel, Value: "nixos-unstable"}, commit,
			`{"kind":"channel","url":"https://github.com/NixOS/nixpkgs/archive/` + commit + `.tar.gz"}`, true},
		{config.PackageSource{Kind: config.SourcePath, Value: "/srv/pkgs"}, "latest",
			`{"kind":"path","path":"/srv/pkgs"}`, false},
		{config.PackageSource{Kind: config.SourceBuiltin}, "latest",
			`{"kind":"path","path":"/tmp/builtin"}`, false},
	}
	for _, tc := range tests {
		d := &Driver{opts: Options{Source: tc.src}, pkgsDir: tc.src.Value}
		if tc.src.Kind == config.SourceBuiltin {
			d.pkgsDir = "/tmp/builtin"
		}
		s, err := d.spec(context.Background(), logrus.New(), tc.tag)
		if err != nil {
			t.Errorf("%v %s: %v", tc.src, tc.tag, err)
			continue
		}
		if got := s.json(); got != tc.want {
			t.Errorf("%v %s:\n got  %s\n want %s", tc.src, tc.tag, got, tc.want)
		}
		if got := d.Pinned(tc.tag); got != tc.pinned {
			t.Errorf("%v %s: Pinned = %v", tc.src, tc.tag, got)
		}
	}
}

func TestCheckTag(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	var (
		builtin  = &Driver{opts: Options{Source: config.PackageSource{Kind: config.SourceBuiltin}}}
		dir      = &Driver{opts: Options{Source: config.PackageSource{Kind: config.SourcePath, Value: "/srv/pkgs"}}}
		checkout = &Driver{opts: Options{Source: config.PackageSource{Kind: config.SourcePath, Value: "/srv/nixpkgs"}}, checkout: "/srv/nixpkgs"}
		git      = &Driver{opts: Options{Source: config.PackageSource{Kind: config.SourceGit, Value: "https://example.org/p.git"}}}
		channel  = &Driver{opts: Options{Source: config.PackageSource{Kind: config.SourceChannel, Value: "nixos-unstable"}}}
	)
	const ok = errcode.Code("")
	tests := []struct {
		tag                                  string
		builtin, dir, checkout, git, channel errcode.Code
	}{
		{"latest", ok, ok, ok, ok, ok},
		{"main", errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		{"missing-abc123", errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		{commit, errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		{"v1.0_rc-2", errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		{"HEAD", errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		{"x.lock.y", errcode.ManifestUnknown, errcode.ManifestUnknown, ok, ok, ok},
		// Tags git cannot name: nothing to look up.
		{"a..b", errcode.ManifestUnknown, errcode.ManifestUnknown, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{"main.lock", errcode.ManifestUnknown, errcode.ManifestUnknown, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{"v1.", errcode.ManifestUnknown, errcode.ManifestUnknown, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		// Not tags at all.
		{"", errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{".hidden", errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{"-x", errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{"a/b", errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{"a~1", errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
		{strings.Repeat("a", 129), errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid, errcode.TagInvalid},
	}
	for _, tc := range tests {
		for _, c := range []struct {
			d    *Driver
			want errcode.Code
		}{{builtin, tc.builtin}, {dir, tc.dir}, {checkout, tc.checkout}, {git, tc.git}, {channel, tc.channel}} {
			err := c.d.CheckTag(tc.tag)
			var got errcode.Code
			if e, isCode := errcode.As(err); isCode {
				got = e.Code
			} else if err != nil {
				got = "not an errcode: " + errcode.Code(err.Error())
			}
			if got != c.want {
				t.Errorf("%s source, tag %q: %q (%v), want %q", c.d.opts.Source.Kind, tc.tag, got, err, c.want)
			}
			if e, isCode := errcode.As(err); isCode && e.Code == errcode.ManifestUnknown && !strings.Contains(e.Message, `"latest"`) {
				t.Errorf("tag %q: message %q does not name the tag that works", tc.tag, e.Message)
			}
		}
	}
}

// TestValidRefName holds validRefName to git's own check-ref-format on
// every tag the OCI pattern allows that the rules are about.
func TestValidRefName(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH")
	}
	for _, tag := range []string{"main", "a..b", "a...b", "main.lock", "main.lock.x", "x.LOCK", "v1.", "v1.0", "a.b.c",
		"HEAD", "lock", ".lock", "a_.", "_", "0", "a-", "1.2.3-rc.4", "x..", strings.Repeat("z", 128)} {
		if !tagPattern.MatchString(tag) {
			continue
		}
		want := exec.Command("git", "check-ref-format", "refs/heads/"+tag).Run() == nil
		if got := validRefName(tag); got != want {
			t.Errorf("validRefName(%q) = %v, git check-ref-format says %v", tag, got, want)
		}
	}
}

func TestValidName(t *testing.T) {
	good := []string{"hello", "xorg.xev", "haskellPackages.pandoc", "iana-etc", "gtk+", "_0x0", "python3.pkgs.requests", "7zz"}
	bad := []string{"", ".", "a.", ".a", "a..b", "-a", "+a", "a b", "a/b", `a"b`, "a$b", "a'", "${x}", "a\n", "é", strings.Repeat("x", MaxNameLength+1)}
	for _, n := range good {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range bad {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
}

func TestNixEnv(t *testing.T) {
	env := nixEnv([]string{"PATH=/bin", "NIX_CONFIG=sandbox = true"}, Options{Substituters: []string{"https://a", "https://b"}, NixConfig: "max-jobs = 4\n"})
	var conf []string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok {
			conf = append(conf, v)
		}
	}
	if len(conf) != 1 || !slices.Contains(env, "PATH=/bin") {
		t.Fatalf("env %q", env)
	}
	want := "substituters = https://a https://b\nsandbox = false\nexperimental-features = nix-command\nbuild-poll-interval = 1\nmax-jobs = 4"
	if conf[0] != want {
		t.Errorf("NIX_CONFIG\n%s\nwant\n%s", conf[0], want)
	}
	if c := nixEnv(nil, Options{}); !strings.HasPrefix(c[0], "NIX_CONFIG=substituters = \n") {
		t.Errorf("offline NIX_CONFIG %q", c[0])
	}
}
