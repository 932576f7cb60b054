package nix

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
)

// gitRepo creates a git repository whose default branch main holds a
// package set with "one" (first commit) and then "two" (second commit), and
// a branch feature with "three". It returns the directory and the commits.
func gitRepo(t *testing.T) (dir string, first, second, feature string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH")
	}
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=nixport", "-c", "user.email=test@nixport.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(attrs ...string) {
		t.Helper()
		var b strings.Builder
		b.WriteString("{ system ? builtins.currentSystem, ... }:\nlet mk = name: derivation { inherit name system; builder = \"/bin/sh\"; args = [ \"-c\" \"echo ${name} > $out\" ]; }; in {\n")
		for _, a := range attrs {
			b.WriteString("  " + a + " = mk \"git-" + a + "\";\n")
		}
		b.WriteString("}\n")
		if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("one")
	git("add", "default.nix")
	git("commit", "-q", "-m", "one")
	first = git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "feature")
	write("one", "three")
	git("commit", "-q", "-a", "-m", "three")
	feature = git("rev-parse", "HEAD")
	git("checkout", "-q", "main")
	write("one", "two")
	git("commit", "-q", "-a", "-m", "two")
	second = git("rev-parse", "HEAD")
	git("tag", "v1.0", first)
	return dir, first, second, feature
}

// tagCase is a tag of a package set in git: the packages it has, those
// it lacks, and whether it names a fixed commit.
type tagCase struct {
	tag     string
	found   []string
	missing []string
	pinned  bool
}

// checkTags builds each tag's packages and checks that they come from
// that tag, and that its missing packages are an unknown manifest whose
// message names them.
func checkTags(t *testing.T, d *Driver, tests []tagCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.tag, func(t *testing.T) {
			if got := d.Pinned(tc.tag); got != tc.pinned {
				t.Errorf("Pinned = %v, want %v", got, tc.pinned)
			}
			img, err := d.Build(context.Background(), tc.tag, hostSystem, tc.found)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			img.Release()
			for i, p := range img.Resolution.Packages {
				if want := "git-" + tc.found[i]; storeName(p.Outputs[0].Path) != want {
					t.Errorf("%s built %s", want, p.Outputs[0].Path)
				}
			}
			_, err = d.Resolve(context.Background(), tc.tag, hostSystem, tc.missing)
			e := wantCode(t, err, errcode.ManifestUnknown)
			for _, m := range tc.missing {
				if !strings.Contains(e.Message, m) {
					t.Errorf("message %q does not name %s", e.Message, m)
				}
			}
		})
	}
}

func TestGitSource(t *testing.T) {
	needNix(t)
	dir, first, second, feature := gitRepo(t)
	d, pl := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourceGit, Value: "file://" + dir}})
	tests := []tagCase{
		{tag: LatestTag, found: []string{"one", "two"}, missing: []string{"three"}},
		{tag: "main", found: []string{"one", "two"}, missing: []string{"three"}},
		{tag: "feature", found: []string{"one", "three"}, missing: []string{"two"}},
		{tag: "v1.0", found: []string{"one"}, missing: []string{"two", "three"}},
		{tag: first, found: []string{"one"}, missing: []string{"two", "three"}, pinned: true},
		{tag: feature, found: []string{"one", "three"}, missing: []string{"two"}, pinned: true},
		{tag: second, found: []string{"one", "two"}, missing: []string{"three"}, pinned: true},
	}
	checkTags(t, d, tests)
	argvs, _ := pl.all()
	for _, argv := range argvs {
		if argv[0] == "nix-instantiate" && !strings.Contains(strings.Join(argv, " "), "--option tarball-ttl 0") {
			t.Errorf("git evaluation without tarball-ttl 0: %v", argv)
		}
	}

	// A tag naming nothing in the repository is an unknown manifest (404),
	// not a failed build: the client asked for something that is not there.
	for _, tag := range []string{"nosuchbranch", strings.Repeat("0", 40)} {
		_, err := d.Resolve(context.Background(), tag, hostSystem, []string{"one"})
		e := wantCode(t, err, errcode.ManifestUnknown)
		if !strings.Contains(e.Message, tag) || strings.Contains(e.Message, "\n") {
			t.Errorf("message %q", e.Message)
		}
	}
}

// TestGitRemoteTag serves the repository over git:// so that fetchGit
// treats it as remote: a git tag is then found only as refs/tags/…
func TestGitRemoteTag(t *testing.T) {
	needNix(t)
	dir, first, _, _ := gitRepo(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	daemon := exec.CommandContext(ctx, "git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1",
		"--port="+strconv.Itoa(port), "--base-path="+filepath.Dir(dir), dir)
	if err := daemon.Start(); err != nil {
		cancel()
		t.Skipf("git daemon: %v", err)
	}
	t.Cleanup(func() { cancel(); daemon.Wait() })
	url := "git://127.0.0.1:" + strconv.Itoa(port) + "/" + filepath.Base(dir)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			break
		}
		if i == 300 {
			t.Fatal("git daemon did not start within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourceGit, Value: url}})
	if _, err := d.Resolve(context.Background(), "nosuchref", hostSystem, []string{"one"}); err == nil {
		t.Error("a remote ref that does not exist resolved")
	} else {
		wantCode(t, err, errcode.ManifestUnknown)
	}
	for _, tc := range []struct {
		tag, name string
		procs     int
	}{
		{LatestTag, "two", 1},
		{"feature", "three", 1},
		{"v1.0", "one", 2}, // a branch first, then a tag
		{first, "one", 1},
	} {
		before := d.ProcessCount()
		res, err := d.Resolve(context.Background(), tc.tag, hostSystem, []string{tc.name})
		if err != nil {
			t.Errorf("%s: %v", tc.tag, err)
			continue
		}
		if storeName(res.Packages[0].Outputs[0].Path) != "git-"+tc.name {
			t.Errorf("%s: resolved %v", tc.tag, res.Packages)
		}
		if n := d.ProcessCount() - before; n != int64(tc.procs) {
			t.Errorf("%s: %d processes, want %d", tc.tag, n, tc.procs)
		}
	}
}

// TestPathCheckoutTags: a path source that is a git checkout serves
// "latest" from the directory as it is (uncommitted changes included), and
// its branches, git tags and commits from exactly those commits.
func TestPathCheckoutTags(t *testing.T) {
	needNix(t)
	dir, first, second, feature := gitRepo(t)
	// An uncommitted change: only "latest" sees it.
	dirty := "{ system ? builtins.currentSystem, ... }:\nlet mk = name: derivation { inherit name system; builder = \"/bin/sh\"; args = [ \"-c\" \"echo ${name} > $out\" ]; }; in {\n" +
		"  one = mk \"git-one\";\n  two = mk \"git-two\";\n  four = mk \"git-four\";\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(dirty), 0o644); err != nil {
		t.Fatal(err)
	}
	d, pl := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: dir}})
	tests := []tagCase{
		{tag: LatestTag, found: []string{"one", "two", "four"}, missing: []string{"three"}},
		{tag: "main", found: []string{"one", "two"}, missing: []string{"three", "four"}},
		{tag: "feature", found: []string{"one", "three"}, missing: []string{"two", "four"}},
		{tag: "v1.0", found: []string{"one"}, missing: []string{"two", "three", "four"}},
		{tag: first, found: []string{"one"}, missing: []string{"two", "four"}, pinned: true},
		{tag: second, found: []string{"one", "two"}, missing: []string{"four"}, pinned: true},
		{tag: feature, found: []string{"one", "three"}, missing: []string{"two", "four"}, pinned: true},
	}
	checkTags(t, d, tests)

	// Tags that name nothing: 404 naming the tags that work; tags git
	// cannot name: 400, without running git or Nix.
	for _, tc := range []struct {
		tag  string
		code errcode.Code
		ran  bool
	}{
		{"nosuchbranch", errcode.ManifestUnknown, true},
		{strings.Repeat("0", 40), errcode.ManifestUnknown, true},
		{"a..b", errcode.TagInvalid, false},
		{"main.lock", errcode.TagInvalid, false},
		{"feature.", errcode.TagInvalid, false},
	} {
		before, _ := pl.all()
		_, err := d.Resolve(context.Background(), tc.tag, hostSystem, []string{"one"})
		e := wantCode(t, err, tc.code)
		after, _ := pl.all()
		if ran := len(after) > len(before); ran != tc.ran {
			t.Errorf("%s: processes started: %v, want %v", tc.tag, ran, tc.ran)
		}
		for _, argv := range after[len(before):] {
			if argv[0] != "git" {
				t.Errorf("%s: started %v", tc.tag, argv)
			}
		}
		t.Logf("%s: %s", tc.tag, e.Message)
		if tc.code == errcode.ManifestUnknown {
			for _, want := range []string{tc.tag, "latest", "main", "feature"} {
				if !strings.Contains(e.Message, want) {
					t.Errorf("%s: message %q does not name %q", tc.tag, e.Message, want)
				}
			}
		}
	}

	// The tag reaches git as one revision argument, and Nix only as the
	// commit it names.
	argvs, _ := pl.all()
	for _, argv := range argvs {
		line := strings.Join(argv, " ")
		switch argv[0] {
		case "git":
			if !strings.HasPrefix(line, "git rev-parse --verify --quiet ") && !strings.HasPrefix(line, "git for-each-ref ") {
				t.Errorf("git run as %q", line)
			}
		case "nix-instantiate":
			if strings.Contains(line, "feature") || strings.Contains(line, "v1.0") {
				t.Errorf("a tag reached Nix: %q", line)
			}
		}
	}
}
