package nix

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/testkit"
)

var versionComparisons = []struct {
	a, b string
	want int
}{
	{"2.18", "2.8.0", 1},
	{"2.8.0", "2.18", -1},
	{"2.8.0", "2.8.0", 0},
	{"2.8", "2.8.0", -1}, // a missing component is older than a number
	{"1.2.3", "1.2.3.0", -1},
	{"10", "9", 1},
	{"01", "1", 0},
	{"2.0", "2-0", 0}, // either separator
	{"1..2", "1.2", 0},
	{"2.3a", "2.3.1", -1}, // letters are older than a number
	{"1.a", "1.1", -1},
	{"2.3pre1", "2.3", -1}, // pre is older than anything
	{"1.0-pre", "1.0", -1},
	{"pre", "pre", 0},
	{"alpha", "pre", 1},
	{"a", "b", -1},
	{"1_2", "1.2", -1}, // "_" is part of a component, not a separator
	{"2.18.3-lix", "2.18", 1},
	{"2.18", "2.18.3-lix", -1},
	{"99.0", "2.8.0", 1},
	{"", "0", -1},
	{"", "", 0},
	{"99999999999", "1", -1}, // too long for a C int: no number to Nix
	{"2147483647", "2147483646", 1},
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range versionComparisons {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// TestCompareVersionsAgreesWithNix asks the host's Nix the same questions:
// the table holds what builtins.compareVersions answers, not a guess.
func TestCompareVersionsAgreesWithNix(t *testing.T) {
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("nix-instantiate is not on PATH")
	}
	pairs := make([][2]string, len(versionComparisons))
	for i, tc := range versionComparisons {
		pairs[i] = [2]string{tc.a, tc.b}
	}
	in, _ := json.Marshal(pairs)
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json",
		"--expr", "{ pairs }: map (p: builtins.compareVersions (builtins.elemAt p 0) (builtins.elemAt p 1)) (builtins.fromJSON pairs)",
		"--argstr", "pairs", string(in)).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	var nix []int
	if err := json.Unmarshal(out, &nix); err != nil || len(nix) != len(pairs) {
		t.Fatalf("nix-instantiate printed %s (%v)", out, err)
	}
	for i, tc := range versionComparisons {
		if nix[i] != tc.want {
			t.Errorf("Nix's compareVersions %q %q = %d, the table says %d", tc.a, tc.b, nix[i], tc.want)
		}
	}
}

func TestParseNixVersion(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{"nix-store (Nix) 2.8.0\n", "2.8.0"},
		{"nix-store (Nix) 2.18.1", "2.18.1"},
		{"nix-store (Lix, like Nix) 2.91.1", "2.91.1"},
		{"nix-store (Nix) 2.24.0pre20240601_dirty", "2.24.0pre20240601_dirty"},
	} {
		got, err := parseNixVersion(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("parseNixVersion(%q) = %q, %v; want %q", tc.out, got, err, tc.want)
		}
	}
	for _, out := range []string{"", "2.8.0", "nix-store (Nix)", "nix-store (Nix) two", "nix-store (Nix) 2.8.0;rm"} {
		if got, err := parseNixVersion(out); err == nil {
			t.Errorf("parseNixVersion(%q) = %q, want an error", out, got)
		}
	}
}

func TestParseMinVer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"# Expose the minimum required version for evaluating Nixpkgs\n\"2.18\"\n", "2.18", true},
		{`"2.3"`, "2.3", true},
		{"/* block */ \"2.3\" # after\n", "2.3", true},
		{"  \n\t\"2.3\"\n\n# trailing comment without newline", "2.3", true},
		{`"2.3" "2.4"`, "", false},
		{`"2.${"3"}"`, "", false},
		{`"2.\"3"`, "", false},
		{`let v = "2.3"; in v`, "", false},
		{`''2.3''`, "", false},
		{`"2.3`, "", false},
		{`/* unterminated "2.3"`, "", false},
		{`""`, "", false},
		{`"two words"`, "", false},
		{``, "", false},
		{"# only a comment", "", false},
	} {
		got, ok := parseMinVer([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseMinVer(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseMinVer: whatever a package set holds, the reader never panics,
// and what it accepts is a version as messages show it, read back the same
// from its plain form.
func FuzzParseMinVer(f *testing.F) {
	f.Add([]byte("# Expose the minimum required version for evaluating Nixpkgs\n\"2.18\"\n"))
	f.Add([]byte(`/* a */ "2.3" /* b */`))
	f.Add([]byte(`"2.${x}"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, ok := parseMinVer(data)
		if !ok {
			if v != "" {
				t.Fatalf("not ok but %q", v)
			}
			return
		}
		if !versionPattern.MatchString(v) {
			t.Fatalf("accepted %q, which is no version", v)
		}
		if again, ok := parseMinVer([]byte(`"` + v + `"`)); !ok || again != v {
			t.Fatalf("%q reads back as %q, %v", v, again, ok)
		}
	})
}

func TestAbortedForNix(t *testing.T) {
	for _, tc := range []struct {
		stderr, want string
		ok           bool
	}{
		{"error: evaluation aborted with the following error message: '\n       This version of Nixpkgs requires Nix >= 2.18, please upgrade:\n", "2.18", true},
		{"error: evaluation aborted with the following error message: 'This version of Nixpkgs requires Nix >= 1.8, please upgrade!'", "1.8", true},
		{"This version of Nixpkgs requires Nix >= 2.3. See …", "2.3", true},
		{"error: undefined variable 'foo'", "", false},
	} {
		got, ok := abortedForNix(tc.stderr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("abortedForNix(%q) = %q, %v; want %q, %v", tc.stderr, got, ok, tc.want, tc.ok)
		}
	}
}

// hookedLogger is a logger whose entries the test can read.
func hookedLogger(t *testing.T) (*logrus.Logger, *logtest.Hook) {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l, logtest.NewLocal(l)
}

// warnings are the hook's warnings whose message holds every part.
func warnings(hook *logtest.Hook, parts ...string) []*logrus.Entry {
	var out []*logrus.Entry
next:
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.WarnLevel {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(e.Message, p) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// pullFast resolves hello at tag, wants the too-new error with message
// want, and returns the Nix processes it started. It must answer well
// under a second.
func pullFast(t *testing.T, d *Driver, pl *procLog, tag, want string) (nixProcs int) {
	t.Helper()
	before, _ := pl.all()
	start := time.Now()
	_, err := d.Resolve(context.Background(), tag, hostSystem, []string{"hello"})
	took := time.Since(start)
	e := wantCode(t, err, errcode.BuildFailed)
	if e.Message != want {
		t.Errorf("%s: message\n %q, want\n %q", tag, e.Message, want)
	}
	if e.Code.Status() != 422 {
		t.Errorf("status %d, want a 4xx (422)", e.Code.Status())
	}
	after, _ := pl.all()
	for _, argv := range after[len(before):] {
		if strings.HasPrefix(argv[0], "nix") {
			nixProcs++
		}
	}
	if nixProcs == 0 && took > 200*time.Millisecond {
		t.Errorf("%s: answered in %s without running Nix, want well under a second", tag, took)
	}
	t.Logf("%s: %d Nix processes, %s", tag, nixProcs, took)
	return nixProcs
}

// TestPathSourceNeedsNewerNix: a path package set whose lib/minver.nix
// demands a Nix newer than the host's is logged once at start-up, and
// every pull of it fails at once, without Nix, with one message naming
// both versions. What only Nix can read is checked by the evaluation.
func TestPathSourceNeedsNewerNix(t *testing.T) {
	needNix(t)
	dir := testkit.FreshPackageSet(t)
	testkit.DemandNix(t, dir, "99.0")
	log, hook := hookedLogger(t)
	d, pl := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: dir}, Log: log})
	running := d.NixVersion()
	if running == "" || CompareVersions("99.0", running) <= 0 {
		t.Fatalf("NixVersion %q", running)
	}
	if w := warnings(hook, "99.0", running); len(w) != 1 || w[0].Data["required_nix"] != "99.0" || w[0].Data["nix_version"] != running {
		t.Fatalf("start-up warnings naming both versions: %v, want one with fields", w)
	}

	want := "the package set needs Nix 99.0 or newer; this server runs Nix " + running +
		": ask the registry's operator to run a newer Nix, or to point the registry at an older package set"
	for range 3 {
		if n := pullFast(t, d, pl, LatestTag, want); n != 0 {
			t.Errorf("%d Nix processes for a package set known to need a newer Nix", n)
		}
	}
	if _, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello"}); err == nil {
		t.Error("Build succeeded")
	}
	if err := d.CheckSource(context.Background()); err == nil || err.Error() != want {
		t.Errorf("CheckSource: %v, want %q", err, want)
	}
	if n := len(warnings(hook, "99.0")); n != 1 {
		t.Errorf("%d warnings, want the one at start-up", n)
	}

	// A minver.nix only Nix can read: the evaluation says it, in one
	// process.
	testkit.Rewrite(t, filepath.Join(dir, "lib", "minver.nix"), `let v = "99.0"; in v`)
	if n := pullFast(t, d, pl, LatestTag, want); n != 1 {
		t.Errorf("%d Nix processes, want the one evaluation", n)
	}

	// The directory changes: an older demand is met, and it builds.
	testkit.Rewrite(t, filepath.Join(dir, "lib", "minver.nix"), `"2.0"`)
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello"})
	if err != nil {
		t.Fatalf("Build with minver 2.0: %v", err)
	}
	img.Release()
	if err := d.CheckSource(context.Background()); err != nil {
		t.Errorf("CheckSource: %v", err)
	}
	if d.Revision() != "" {
		t.Errorf("Revision %q of a directory", d.Revision())
	}
}

// git runs git in dir for a test repository.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=nixport", "-c", "user.email=test@nixport.invalid", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// tooNewRepo is a git repository (branch main) of the test package set:
// its first commit evaluates on any Nix, its second (HEAD) demands Nix
// 99.0 the way nixpkgs does.
func tooNewRepo(t *testing.T) (dir, older, tooNew string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH")
	}
	dir = testkit.FreshPackageSet(t)
	git(t, dir, "init", "-q", "-b", "main")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "packages")
	older = git(t, dir, "rev-parse", "HEAD")
	testkit.DemandNix(t, dir, "99.0")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "needs Nix 99.0")
	return dir, older, git(t, dir, "rev-parse", "HEAD")
}

// TestGitSourceNeedsNewerNix: a git package set whose latest commit
// demands a newer Nix fails in the evaluation that fetches it, naming the
// commit the tag resolved to; the commit is then remembered, so a pull
// naming it fails without Nix. An older commit still builds.
func TestGitSourceNeedsNewerNix(t *testing.T) {
	needNix(t)
	dir, older, tooNew := tooNewRepo(t)
	d, pl := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourceGit, Value: "file://" + dir}})
	msg := func(at string) string {
		return "the package set at " + at + " needs Nix 99.0 or newer; this server runs Nix " + d.NixVersion() +
			": pull a tag that names an older revision of the package set (a commit hash), or ask the registry's operator to run a newer Nix"
	}
	if n := pullFast(t, d, pl, LatestTag, msg(tooNew[:12]+` (tag "latest")`)); n != 1 {
		t.Errorf("latest: %d Nix processes, want the one evaluation", n)
	}
	if d.Revision() != "" {
		t.Errorf("Revision %q: a revision too new is not the one served", d.Revision())
	}
	for range 3 {
		if n := pullFast(t, d, pl, tooNew, msg(tooNew[:12])); n != 0 {
			t.Errorf("%d Nix processes for a commit known to need a newer Nix", n)
		}
	}
	if n := pullFast(t, d, pl, "main", msg(tooNew[:12]+` (tag "main")`)); n != 1 {
		t.Errorf("main: %d Nix processes, want the one evaluation (a branch moves)", n)
	}
	if err := d.CheckSource(context.Background()); err == nil || err.Error() != msg(tooNew[:12]+` (tag "latest")`) {
		t.Errorf("CheckSource: %v", err)
	}
	if _, err := d.Resolve(context.Background(), older, hostSystem, []string{"hello"}); err != nil {
		t.Errorf("the older commit: %v", err)
	}

	// Back to the older commit: latest evaluates, and says its revision.
	git(t, dir, "reset", "-q", "--hard", older)
	if err := d.CheckSource(context.Background()); err != nil {
		t.Errorf("CheckSource at the older commit: %v", err)
	}
	if d.Revision() != older {
		t.Errorf("Revision %q, want %s", d.Revision(), older)
	}
}

// TestPathCheckoutNeedsNewerNix: a path source that is a git checkout
// warns at start-up and fails latest at once, and a tag naming the commit
// fails with git alone after its first evaluation.
func TestPathCheckoutNeedsNewerNix(t *testing.T) {
	needNix(t)
	dir, older, tooNew := tooNewRepo(t)
	log, hook := hookedLogger(t)
	d, pl := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: dir}, Log: log})
	if len(warnings(hook, "99.0", d.NixVersion())) != 1 {
		t.Error("no start-up warning")
	}
	if d.Revision() != tooNew {
		t.Errorf("Revision %q, want HEAD %s", d.Revision(), tooNew)
	}
	advice := ": pull a tag that names an older revision of the package set (a commit hash), or ask the registry's operator to run a newer Nix"
	versions := " needs Nix 99.0 or newer; this server runs Nix " + d.NixVersion()
	if n := pullFast(t, d, pl, LatestTag, "the package set"+versions+advice); n != 0 {
		t.Errorf("latest: %d Nix processes", n)
	}
	if n := pullFast(t, d, pl, "main", "the package set at "+tooNew[:12]+` (tag "main")`+versions+advice); n != 1 {
		t.Errorf("main, first: %d Nix processes, want 1", n)
	}
	if n := pullFast(t, d, pl, "main", "the package set at "+tooNew[:12]+` (tag "main")`+versions+advice); n != 0 {
		t.Errorf("main, again: %d Nix processes, want none (the commit is remembered)", n)
	}
	if _, err := d.Resolve(context.Background(), older, hostSystem, []string{"hello"}); err != nil {
		t.Errorf("the older commit: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	const rev = "3f1e2a7b9c0123456789abcdef0123456789abcd"
	for _, tc := range []struct {
		spec     sourceSpec
		tag, rev string
		want     string
	}{
		{sourceSpec{Kind: "path", Path: "/srv/nixpkgs"}, LatestTag, "", ""},
		{sourceSpec{Kind: "git", Git: &gitSpec{URL: "https://example.org/nixpkgs", Ref: "HEAD"}}, LatestTag, rev, `3f1e2a7b9c01 (tag "latest")`},
		{sourceSpec{Kind: "git", Git: &gitSpec{URL: "file:///srv/nixpkgs", Rev: rev}}, rev, rev, "3f1e2a7b9c01"},
		{sourceSpec{Kind: "channel", URL: channelArchive + "nixos-unstable.tar.gz"}, LatestTag, "", `nixos-unstable (tag "latest")`},
		{sourceSpec{Kind: "channel", URL: channelArchive + "nixos-unstable.tar.gz"}, LatestTag, rev, `3f1e2a7b9c01 (tag "latest")`},
		{sourceSpec{Kind: "git", Git: &gitSpec{URL: "https://example.org/nixpkgs", Ref: "main"}}, "main", "", `tag "main"`},
	} {
		if got := describe(tc.spec, tc.tag, tc.rev); got != tc.want {
			t.Errorf("describe(%+v, %q, %q) = %q, want %q", tc.spec, tc.tag, tc.rev, got, tc.want)
		}
	}
}
