package nix

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/testkit"
)

func TestResolve(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	tests := []struct {
		name     string
		attr     string   // attribute found
		outputs  []string // output names to install
		drvMatch string   // suffix of the derivation path
	}{
		{name: "hello", attr: "hello", outputs: []string{"out"}, drvMatch: "-hello.drv"},
		{name: "xorg.xev", attr: "xorg.xev", outputs: []string{"out"}, drvMatch: "-xev.drv"},
		// camelCase through the case-insensitive fallback; nested key exact.
		{name: "haskellpackages.pandoc", attr: "haskellPackages.pandoc", outputs: []string{"out"}, drvMatch: "-pandoc.drv"},
		{name: "bashinteractive", attr: "bashInteractive", outputs: []string{"out"}, drvMatch: "-bash-interactive.drv"},
		{name: "bashInteractive", attr: "bashInteractive", outputs: []string{"out"}, drvMatch: "-bash-interactive.drv"},
		// Names differing only in case: exact wins, else the smallest.
		{name: "coinmp", attr: "coinmp", outputs: []string{"out"}, drvMatch: "-coinmp.drv"},
		{name: "CoinMP", attr: "CoinMP", outputs: []string{"out"}, drvMatch: "-CoinMP.drv"},
		{name: "COINMP", attr: "CoinMP", outputs: []string{"out"}, drvMatch: "-CoinMP.drv"},
		// meta.outputsToInstall, and a name selecting an output.
		{name: "multi", attr: "multi", outputs: []string{"bin"}, drvMatch: "-multi.drv"},
		{name: "multi.dev", attr: "multi.dev", outputs: []string{"dev"}, drvMatch: "-multi.drv"},
		{name: "iana-etc", attr: "iana-etc", outputs: []string{"out"}, drvMatch: "-iana-etc.drv"},
		{name: "small.s50", attr: "small.s50", outputs: []string{"out"}, drvMatch: "-small-s50.drv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := d.Resolve(context.Background(), LatestTag, hostSystem, []string{tc.name})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if len(res.Packages) != 1 || len(res.Missing) != 0 {
				t.Fatalf("got %+v", res)
			}
			p := res.Packages[0]
			if p.Name != tc.name || p.Attr != tc.attr || !strings.HasSuffix(p.DrvPath, tc.drvMatch) {
				t.Errorf("got %+v, want attr %s and a derivation ending in %s", p, tc.attr, tc.drvMatch)
			}
			var outs []string
			for _, o := range p.Outputs {
				outs = append(outs, o.Name)
				if !storePathPattern.MatchString(o.Path) {
					t.Errorf("output %s: bad path %q", o.Name, o.Path)
				}
			}
			if !slices.Equal(outs, tc.outputs) {
				t.Errorf("outputs %v, want %v", outs, tc.outputs)
			}
			if _, err := os.Stat(p.DrvPath); err != nil {
				t.Errorf("derivation not written: %v", err)
			}
		})
	}
}

func TestResolveManyAtOnce(t *testing.T) {
	d, pl := newDriver(t, Options{Source: builtin()})
	names := []string{"hello", "xorg.xev", "haskellpackages.hello", "multi", "coreutils"}
	res, err := d.Resolve(context.Background(), LatestTag, hostSystem, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packages) != len(names) {
		t.Fatalf("got %d packages", len(res.Packages))
	}
	for i, p := range res.Packages {
		if p.Name != names[i] {
			t.Errorf("package %d is %s, want %s (request order)", i, p.Name, names[i])
		}
	}
	if argv, _ := pl.all(); len(argv) != 1 {
		t.Errorf("%d Nix processes, want 1", len(argv))
	}
	if paths := res.OutputPaths(); len(paths) != len(names) || !slices.IsSorted(paths) {
		t.Errorf("OutputPaths = %v", paths)
	}
}

func TestResolveMissing(t *testing.T) {
	d, pl := newDriver(t, Options{Source: builtin()})
	names := []string{"hello", "nosuchpackage", "xorg.XEV", "xorg", "alsomissing.sub", "multi"}
	res, err := d.Resolve(context.Background(), LatestTag, hostSystem, names)
	e := wantCode(t, err, errcode.ManifestUnknown)
	want := []string{"nosuchpackage", "xorg.XEV", "xorg", "alsomissing.sub"}
	if res == nil || !slices.Equal(res.Missing, want) {
		t.Fatalf("missing = %v, want %v", res, want)
	}
	for _, n := range want {
		if !strings.Contains(e.Message, n) {
			t.Errorf("message %q does not name %s", e.Message, n)
		}
	}
	if !strings.Contains(e.Message, "xorg (not a package)") {
		t.Errorf("message %q does not say xorg is no package", e.Message)
	}
	if len(res.Packages) != 2 {
		t.Errorf("found %d packages, want hello and multi", len(res.Packages))
	}
	if argv, _ := pl.all(); len(argv) != 1 {
		t.Errorf("%d Nix processes, want 1", len(argv))
	}
	if e.Code.Status() != 404 {
		t.Errorf("status %d", e.Code.Status())
	}
}

func TestResolveRejectsBadInput(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	tests := []struct {
		tag, system string
		names       []string
		code        errcode.Code
	}{
		{LatestTag, hostSystem, []string{`hello"; abort "x`}, errcode.NameInvalid},
		{LatestTag, hostSystem, []string{"${builtins.abort \"x\"}"}, errcode.NameInvalid},
		{LatestTag, hostSystem, []string{"-hello"}, errcode.NameInvalid},
		{LatestTag, hostSystem, []string{"hello..world"}, errcode.NameInvalid},
		{LatestTag, hostSystem, []string{"hello.", "x"}, errcode.NameInvalid},
		{LatestTag, hostSystem, []string{strings.Repeat("a", MaxNameLength+1)}, errcode.NameInvalid},
		{LatestTag, "x86_64-linux\n--option", []string{"hello"}, errcode.NameInvalid},
		{"../etc", hostSystem, []string{"hello"}, errcode.TagInvalid},
		{"", hostSystem, []string{"hello"}, errcode.TagInvalid},
	}
	for _, tc := range tests {
		_, err := d.Resolve(context.Background(), tc.tag, tc.system, tc.names)
		wantCode(t, err, tc.code)
	}
	if n := d.ProcessCount(); n != 0 {
		t.Errorf("%d Nix processes started for invalid input", n)
	}
}

func TestUnsupportedSystemFailsClearly(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	_, err := d.Build(context.Background(), LatestTag, "aarch64-linux", []string{"hello"})
	e := wantCode(t, err, errcode.BuildFailed)
	if !strings.Contains(e.Message, "cannot build hello for aarch64-linux") || strings.Contains(e.Message, "\n") {
		t.Errorf("message %q", e.Message)
	}
}

func TestBuildHello(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	before := d.ProcessCount()
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	if n := d.ProcessCount() - before; n != 3 {
		t.Errorf("%d Nix processes, want 3", n)
	}
	hello := img.Resolution.Packages[0].Outputs[0].Path
	out, err := exec.Command(hello + "/bin/hello").Output()
	if err != nil || string(out) != "Hello, world!\n" {
		t.Errorf("bin/hello: %q, %v", out, err)
	}
	if !slices.Equal(img.Closure.Roots, []string{hello}) {
		t.Errorf("roots %v", img.Closure.Roots)
	}
	var names []string
	for _, p := range img.Closure.Paths {
		names = append(names, storeName(p.Path))
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"busybox", "greeting", "hello"}) {
		t.Errorf("closure %v", names)
	}
	// The GC roots exist while the image is held: its output, and the
	// resolution file that refers to its derivation.
	roots, _ := filepath.Glob(filepath.Join(d.rootsDir, "*", "*"))
	targets := map[string]string{}
	for _, r := range roots {
		targets[filepath.Base(r)], _ = os.Readlink(r)
	}
	if len(roots) != 2 || targets["r"] != hello || !strings.HasSuffix(targets["resolution"], "-nixport-resolution.json") {
		t.Errorf("GC roots %v -> %v", roots, targets)
	}
	if refs := references(t, targets["resolution"]); !slices.Equal(refs, []string{img.Resolution.Packages[0].DrvPath}) {
		t.Errorf("the resolution refers to %v, want hello's derivation", refs)
	}
	if err := img.Release(); err != nil {
		t.Fatal(err)
	}
	if roots, _ := filepath.Glob(filepath.Join(d.rootsDir, "*")); len(roots) != 0 {
		t.Errorf("roots left after Release: %v", roots)
	}
}

// storeName is a store path's name without the hash.
func storeName(p string) string {
	b := filepath.Base(p)
	if len(b) > 33 {
		return b[33:]
	}
	return b
}

func TestClosureOfDeepPackage(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"deep"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	c := img.Closure
	byName := map[string]PathInfo{}
	for i, p := range c.Paths {
		if i > 0 && c.Paths[i-1].Path >= p.Path {
			t.Errorf("paths not sorted at %s", p.Path)
		}
		byName[storeName(p.Path)] = p
		if p.NarSize <= 0 || !strings.HasPrefix(p.NarHash, "sha256") {
			t.Errorf("%s: size %d hash %q", p.Path, p.NarSize, p.NarHash)
		}
		if slices.Contains(p.References, p.Path) {
			t.Errorf("%s refers to itself", p.Path)
		}
		if c.Index(p.Path) != i {
			t.Errorf("Index(%s) = %d, want %d", p.Path, c.Index(p.Path), i)
		}
	}
	// deep -> chain-c3 -> chain-c2 -> chain-c1 -> busybox: depth 5.
	wantRefs := map[string][]string{
		"deep":     {"busybox", "chain-c3"},
		"chain-c3": {"busybox", "chain-c2"},
		"chain-c2": {"busybox", "chain-c1"},
		"chain-c1": {"busybox"},
		"busybox":  nil,
	}
	if len(byName) != len(wantRefs) {
		t.Errorf("closure has %d paths, want %d: %v", len(byName), len(wantRefs), c.Paths)
	}
	for name, want := range wantRefs {
		p, ok := byName[name]
		if !ok {
			t.Errorf("%s missing from the closure", name)
			continue
		}
		var got []string
		for _, r := range p.References {
			got = append(got, storeName(r))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s refers to %v, want %v", name, got, want)
		}
	}
	if byName["busybox"].NarSize < 1<<20 {
		t.Errorf("busybox NAR is %d bytes: not the static busybox?", byName["busybox"].NarSize)
	}
	if c.NarSize() <= byName["busybox"].NarSize {
		t.Errorf("NarSize %d", c.NarSize())
	}
}

func TestMultipleOutputs(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"multi"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	var names []string
	for _, p := range img.Closure.Paths {
		names = append(names, storeName(p.Path))
	}
	slices.Sort(names)
	// bin (outputsToInstall) refers to out; dev is not installed.
	if !slices.Equal(names, []string{"busybox", "multi", "multi-bin"}) {
		t.Errorf("closure %v", names)
	}
	bin := img.Resolution.Packages[0].Outputs[0].Path
	out, err := exec.Command(bin + "/bin/multi").Output()
	if err != nil || string(out) != "multi's data\n" {
		t.Errorf("bin/multi: %q, %v", out, err)
	}

	img2, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"multi.dev", "multi.bin"})
	if err != nil {
		t.Fatal(err)
	}
	defer img2.Release()
	if n := len(img2.Closure.Roots); n != 2 {
		t.Errorf("roots %v", img2.Closure.Roots)
	}
}

func TestShellAndBasePackages(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	img, err := d.Build(context.Background(), LatestTag, hostSystem,
		[]string{"bashInteractive", "cacert", "coreutils", "iana-etc", "moreutils", "nano"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	want := map[string][]string{
		"bashInteractive": {"bin/bash", "bin/sh"},
		"coreutils":       {"bin/ls", "bin/cat", "bin/cp"},
		"moreutils":       {"bin/sponge", "bin/ts"},
		"nano":            {"bin/nano"},
		"cacert":          {"etc/ssl/certs/ca-bundle.crt", "etc/ssl/certs/ca-certificates.crt"},
		"iana-etc":        {"etc/protocols", "etc/services"},
	}
	for _, p := range img.Resolution.Packages {
		for _, f := range want[p.Name] {
			if _, err := os.Stat(filepath.Join(p.Outputs[0].Path, f)); err != nil {
				t.Errorf("%s: %v", p.Name, err)
			}
		}
	}
	bash := img.Resolution.Packages[0].Outputs[0].Path + "/bin/bash"
	out, err := exec.Command(bash, "-c", "echo shell works").Output()
	if err != nil || string(out) != "shell works\n" {
		t.Errorf("bin/bash: %q, %v", out, err)
	}
}

func TestBrokenPackage(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	_, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello", "broken"})
	e := wantCode(t, err, errcode.BuildFailed)
	if !strings.Contains(e.Message, "package broken (/nix/store/") || !strings.Contains(e.Message, "-broken.drv) failed with exit code 1") {
		t.Errorf("message %q", e.Message)
	}
	// The client is told why: the builder's last words.
	if !strings.Contains(e.Message, "; the last lines of the build output:\n") ||
		!strings.Contains(e.Message, "\nnixport test package: this build fails on purpose\n") ||
		strings.Contains(e.Message, "--add-root") {
		t.Errorf("message %q: want the end of the build output", e.Message)
	}
	if !strings.Contains(e.Err.Error(), "this build fails on purpose") {
		t.Errorf("the log does not get the builder's output: %v", e.Err)
	}
	if roots, _ := filepath.Glob(filepath.Join(d.rootsDir, "*")); len(roots) != 0 {
		t.Errorf("roots left after a failed build: %v", roots)
	}
}

// TestRefusedPackages: a package the package set refuses to evaluate (as
// nixpkgs refuses unfree and broken ones) is one clear line, before
// anything is built.
func TestRefusedPackages(t *testing.T) {
	d, procs := newDriver(t, Options{Source: builtin()})
	tests := []struct {
		name string
		want string
	}{
		{"unfree", "the package set refuses to build a package: Package ‘unfree-1.0’ in testpkgs/default.nix:1 has an unfree license (‘unfree’), refusing to evaluate. Choose another package: "},
		{"markedBroken", "the package set refuses to build a package: Package ‘marked-broken-1.0’ in testpkgs/default.nix:1 is marked as broken, refusing to evaluate. Choose another package: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello", tc.name})
			e := wantCode(t, err, errcode.BuildFailed)
			if !strings.HasPrefix(e.Message, tc.want) || strings.Contains(e.Message, "\n") {
				t.Errorf("message\n %q, want it to start with\n %q", e.Message, tc.want)
			}
		})
	}
	argvs, _ := procs.all()
	for _, argv := range argvs {
		if argv[0] != "nix-instantiate" {
			t.Errorf("%s ran for a refused package", argv[0])
		}
	}
}

// slowBuild starts the slow package and returns the error and every
// process the Nix process had as children (the builders) while it ran.
// running, if set, is called once the slow builder (its shell and sleep)
// has been seen.
func slowBuild(t *testing.T, timeout time.Duration, ctx context.Context, running func()) (error, []int, map[int]string, time.Duration) {
	var (
		mu       sync.Mutex
		builders = map[int]string{}
		shell    bool
		sleep    bool
		slowSeen sync.Once
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	pl := &procLog{}
	pl.onPid = func(pid int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Follow the Nix process's descendants until it ends.
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				queue := []int{pid}
				for len(queue) > 0 {
					p := queue[0]
					queue = queue[1:]
					for _, c := range children(p) {
						queue = append(queue, c)
						// A child seen between fork and exec still has
						// its parent's command line: keep every one a
						// pid shows, so the builder's is not missed.
						cmd := cmdline(c)
						mu.Lock()
						seen, known := builders[c]
						switch {
						case !known:
							builders[c] = cmd
						case cmd != "" && !strings.Contains(seen, cmd):
							builders[c] = seen + " | " + cmd
						default:
							mu.Unlock()
							continue
						}
						t.Logf("process %d: %s", c, cmd)
						shell = shell || strings.Contains(builders[c], "nixport-slow-build")
						sleep = sleep || strings.Contains(builders[c], "/bin/sleep 600")
						both := shell && sleep
						mu.Unlock()
						if both && running != nil {
							slowSeen.Do(running)
						}
					}
				}
			}
		}()
	}
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: testkit.FreshPackageSet(t)}, Timeout: timeout, OnProcess: pl.record})
	start := time.Now()
	_, err := d.Build(ctx, LatestTag, hostSystem, []string{"slow"})
	took := time.Since(start)
	close(done)
	wg.Wait()
	_, pids := pl.all()
	return err, pids, builders, took
}

func checkAllGone(t *testing.T, nixPids []int, builders map[int]string) {
	t.Helper()
	var shell, sleep bool
	all := append([]int(nil), nixPids...)
	for pid, cmd := range builders {
		shell = shell || strings.Contains(cmd, "nixport-slow-build")
		sleep = sleep || strings.Contains(cmd, "/bin/sleep 600")
		all = append(all, pid)
	}
	if !shell || !sleep {
		t.Fatalf("never saw the slow builder (its shell and sleep) among %v", builders)
	}
	// A bound on failing only: a loaded machine takes its time.
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range all {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("process %d (%s) still running", p, cmdline(p))
		}
	}
	for _, p := range nixPids {
		if err := syscall.Kill(-p, 0); err != syscall.ESRCH {
			t.Errorf("process group %d still exists (kill: %v)", p, err)
		}
	}
}

func TestTimeoutKillsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	needNix(t)
	const timeout = 3 * time.Second
	err, nixPids, builders, took := slowBuild(t, timeout, context.Background(), nil)
	e := wantCode(t, err, errcode.BuildFailed)
	if !strings.HasPrefix(e.Message, "building the packages took longer than 3s, the limit NIX_TIMEOUT sets on a build, and was stopped") ||
		!strings.Contains(e.Message, "raises NIX_TIMEOUT; the last lines of its output:\n") || !strings.HasSuffix(e.Message, "-slow.drv'...") {
		t.Errorf("message %q", e.Message)
	}
	if took < timeout || took > timeout+killGrace {
		t.Errorf("the build took %s with a %s timeout", took, timeout)
	}
	checkAllGone(t, nixPids, builders)
}

func TestCancelKillsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	needNix(t)
	// Cancelled once the slow builder runs: what a client that goes away
	// mid-build does.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err, nixPids, builders, _ := slowBuild(t, time.Minute, ctx, cancel)
	if !isErr(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, ok := errcode.As(err); ok {
		t.Errorf("a cancelled request is no client error: %v", err)
	}
	checkAllGone(t, nixPids, builders)
}

func TestNoRequestTextOnCommandLine(t *testing.T) {
	d, pl := newDriver(t, Options{Source: builtin()})
	names := []string{"hello", "haskellpackages.pandoc", "xorg.xev", "multi", "small.s07"}
	img, err := d.Build(context.Background(), LatestTag, hostSystem, names)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	_, err = d.Resolve(context.Background(), LatestTag, hostSystem, []string{"nosuchpkg", "alsonotthere"})
	wantCode(t, err, errcode.ManifestUnknown)
	names = append(names, "nosuchpkg", "alsonotthere")

	// Every argument is a fixed flag, a driver file, a store path Nix
	// itself returned, or the JSON data of --argstr.
	known := map[string]bool{d.resolveFile: true}
	for _, p := range img.Resolution.Packages {
		known[p.DrvPath] = true
		for _, o := range p.Outputs {
			known[o.Path] = true
		}
	}
	flags := map[string]bool{"--eval": true, "--strict": true, "--json": true, "--read-write-mode": true,
		"--argstr": true, "names": true, "source": true, "system": true, hostSystem: true,
		"--realise": true, "--add-root": true, "path-info": true, "--recursive": true, "--": true}
	argvs, _ := pl.all()
	if len(argvs) != 4 {
		t.Fatalf("%d processes, want 4", len(argvs))
	}
	for _, argv := range argvs {
		for i, a := range argv[1:] {
			prev := argv[i]
			switch {
			case prev == "names":
				var got []string
				if err := json.Unmarshal([]byte(a), &got); err != nil {
					t.Errorf("names argument %q is not JSON: %v", a, err)
				}
				continue
			case prev == "source":
				var s sourceSpec
				if err := json.Unmarshal([]byte(a), &s); err != nil {
					t.Errorf("source argument %q is not JSON: %v", a, err)
				}
				continue
			case prev == "--add-root" && strings.HasPrefix(a, d.rootsDir+"/"):
				continue
			case flags[a] || known[a]:
				continue
			}
			drv, _, _ := strings.Cut(a, "!")
			if known[drv] {
				continue
			}
			t.Errorf("%s: unexpected argument %q", argv[0], a)
			for _, n := range names {
				if strings.Contains(a, n) {
					t.Errorf("%s: request text %q in argument %q", argv[0], n, a)
				}
			}
		}
	}
}

func TestProcessesPerImage(t *testing.T) {
	d, _ := newDriver(t, Options{Source: builtin()})
	for _, n := range []int{1, 10, 40} {
		names := smallNames(n)
		before := d.ProcessCount()
		img, err := d.Build(context.Background(), LatestTag, hostSystem, names)
		if err != nil {
			t.Fatal(err)
		}
		img.Release()
		if got := d.ProcessCount() - before; got != 3 {
			t.Errorf("%d packages: %d Nix processes, want 3", n, got)
		}
		if got := len(img.Closure.Paths); got != n+1 {
			t.Errorf("%d packages: closure of %d paths, want %d", n, got, n+1)
		}
	}
	before := d.ProcessCount()
	if img, err := d.Build(context.Background(), LatestTag, hostSystem, nil); err != nil || len(img.Closure.Paths) != 0 {
		t.Errorf("empty image: %v", err)
	}
	if d.ProcessCount() != before {
		t.Errorf("an empty image started Nix")
	}
}

func smallNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("small.s%02d", i+1)
	}
	return names
}

// TestEvaluationFailureIsOneLine: nixpkgs' abort on too old a Nix, from a
// package set that keeps its minimum in default.nix (as nixpkgs did before
// lib/minver.nix), is recognised on stderr and told as one message naming
// both versions.
func TestEvaluationFailureIsOneLine(t *testing.T) {
	dir := t.TempDir()
	expr := `let requiredVersion = "99.1"; in
if builtins.compareVersions requiredVersion builtins.nixVersion == 1 then
  abort ''
    This version of Nixpkgs requires Nix >= ${requiredVersion}, please upgrade:

    - If you are running NixOS, ` + "`nixos-rebuild'" + ` can be used to upgrade your system.
  ''
else { }
`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: dir}})
	_, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello"})
	e := wantCode(t, err, errcode.BuildFailed)
	want := "the package set needs Nix 99.1 or newer; this server runs Nix " + d.NixVersion() +
		": ask the registry's operator to run a newer Nix, or to point the registry at an older package set"
	if e.Message != want {
		t.Errorf("message\n %q, want\n %q", e.Message, want)
	}
}

func TestPathSource(t *testing.T) {
	// DESIGN.md's testdata/pkgs: a symlink to the embedded set.
	d, _ := newDriver(t, Options{Source: config.PackageSource{Kind: config.SourcePath, Value: "../testdata/pkgs"}})
	if d.Pinned(LatestTag) || d.Pinned("0123456789abcdef0123456789abcdef01234567") {
		t.Error("a path source that is no git checkout is never pinned")
	}
	// It has one version: any other tag names nothing, without running Nix.
	before := d.ProcessCount()
	_, err := d.Build(context.Background(), "anything", hostSystem, []string{"hello"})
	if e := wantCode(t, err, errcode.ManifestUnknown); !strings.Contains(e.Message, `"latest"`) {
		t.Errorf("message %q does not name the tag that works", e.Message)
	}
	if d.ProcessCount() != before {
		t.Error("an unknown tag ran Nix")
	}
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello", "xorg.xev"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	b, _ := newDriver(t, Options{Source: builtin()})
	res, err := b.Resolve(context.Background(), LatestTag, hostSystem, []string{"hello", "xorg.xev"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Key() != img.Resolution.Key() {
		t.Error("the path source and the builtin set resolve differently")
	}
}

func TestBigClosure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 111 MB of test packages the first time")
	}
	d, _ := newDriver(t, Options{Source: builtin()})
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"bigclosure"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	c := img.Closure
	if len(c.Paths) != 42 || c.NarSize() < 100<<20 {
		t.Errorf("bigclosure: %d paths, %d bytes; want 42 paths, 100+ MB", len(c.Paths), c.NarSize())
	}
	// One generated package alone adds one path to an image.
	one, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"big.p05"})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Release()
	if len(one.Closure.Paths) != 2 {
		t.Errorf("big.p05: closure %v", one.Closure.Paths)
	}
	// Its content compresses like binaries do.
	data, err := os.ReadFile(one.Resolution.Packages[0].Outputs[0].Path + "/lib/big-p05/data.bin")
	if err != nil {
		t.Fatal(err)
	}
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(data)
	zw.Close()
	if ratio := float64(len(data)) / float64(zbuf.Len()); ratio < 2.5 || ratio > 4 {
		t.Errorf("big.p05 (%d bytes) compresses %.2fx, want 2.5-4x", len(data), ratio)
	} else {
		t.Logf("big.p05: %d bytes, gzip ratio %.2f", len(data), ratio)
	}
}

// TestHelloRunsInChroot checks that the test packages make runnable images:
// the closure of hello alone, in an empty root, prints its line.
func TestHelloRunsInChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	d, _ := newDriver(t, Options{Source: builtin()})
	img, err := d.Build(context.Background(), LatestTag, hostSystem, []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Release()
	root := t.TempDir()
	store := filepath.Join(root, filepath.Dir(img.Closure.Paths[0].Path))
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range img.Closure.Paths {
		if out, err := exec.Command("cp", "-a", p.Path, store).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", p.Path, err, out)
		}
	}
	hello := img.Resolution.Packages[0].Outputs[0].Path
	out, err := exec.Command("chroot", root, hello+"/bin/hello").CombinedOutput()
	if err != nil || string(out) != "Hello, world!\n" {
		t.Errorf("chroot hello: %q, %v", out, err)
	}
	// cp -a keeps the store's read-only modes: let TempDir clean up.
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
