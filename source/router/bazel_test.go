package router

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixport/nixport/source/command"
	"github.com/nixport/nixport/testkit"
)

// bazelStartup are the start-up flags of Debian's bazel-bootstrap that
// testdata/bazel/wrapper.sh uses too (see DESIGN.md).
func bazelStartup(outputUserRoot string) []string {
	return []string{"--ignore_all_rc_files", "--install_base=/usr/share/bazel", "--trust_install_base",
		"--output_user_root=" + outputUserRoot, "--max_idle_secs=300"}
}

// TestBazelImagePullsAndRuns builds an image with real Bazel through a
// command route (testdata/bazel: a genrule writes the layout tarball,
// wrapper.sh builds it and extracts it into {out}), pulls it with skopeo
// through the registry API and runs it.
func TestBazelImagePullsAndRuns(t *testing.T) {
	if _, err := exec.LookPath("bazel"); err != nil {
		t.Skip("bazel is not installed: apt-get install bazel-bootstrap (Debian's Bazel 4.2.3) to run the Bazel end-to-end test")
	}
	if _, err := os.Stat("/usr/share/bazel/A-server.jar"); err != nil {
		t.Skip("bazel is not Debian's bazel-bootstrap (no install base at /usr/share/bazel): the wrapper's start-up flags are for it")
	}
	testkit.RequireTools(t, "skopeo", "chroot", "tar", "gzip", "sha256sum")
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no static busybox at /bin/busybox (Debian busybox-static)")
	}

	// Bazel leaves read-only outputs, which t.TempDir's cleanup cannot
	// remove: the output root is removed by removeTree, after the server
	// is shut down.
	outputRoot, err := os.MkdirTemp("", "nixport-bazel-")
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(t.TempDir(), "ws")
	if err := os.CopyFS(ws, os.DirFS("testdata/bazel")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"wrapper.sh", "tools/mklayout.sh"} {
		if err := os.Chmod(filepath.Join(ws, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		cmd := exec.Command("bazel", append(bazelStartup(outputRoot), "shutdown")...)
		cmd.Dir = ws
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bazel shutdown: %v\n%s", err, out)
		}
		command.RemoveTree(outputRoot, testkit.QuietLog())
	})

	store, _ := testkit.NewFSStore(t)
	routes := writeRoutes(t, t.TempDir(), map[string]any{
		"match": "bazel/", "type": "command",
		"argv":    []string{filepath.Join(ws, "wrapper.sh"), "{name}", "{tag}", "{out}"},
		"timeout": "2m",
		"env":     map[string]string{"BAZEL_WORKSPACE": ws, "BAZEL_OUTPUT_USER_ROOT": outputRoot},
	})
	outs := t.TempDir()
	router, err := Load(routes, nil, Options{Storage: store, Log: testkit.QuietLog(), CommandTimeout: time.Minute, TempDir: outs})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveRegistry(t, store, router, testkit.QuietLog())
	for _, tag := range []string{"v1", "v2"} { // a cold server, then a warm one
		start := time.Now()
		p := skopeoPull(t, addr, "bazel/hello:"+tag)
		t.Logf("bazel/hello:%s built and pulled in %s", tag, time.Since(start).Round(time.Millisecond))
		if len(p.manifest.Layers) != 2 {
			t.Errorf("%d layers, want 2", len(p.manifest.Layers))
		}
		if got, want := p.run(t, "/bin/hello"), "hello from bazel: bazel/hello:"+tag+"\n"; got != want {
			t.Errorf("ran %q, want %q", got, want)
		}
	}
	testkit.WantEmptyDir(t, outs)
}
