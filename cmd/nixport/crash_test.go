package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/testkit"
)

// TestCrashLeavesNothingBehind: the server is killed (SIGKILL) while Nix
// builds an image. The build's processes die with it (the builder would
// otherwise run on and finish); a server restarted on the same storage
// builds the image at once, taking over the dead server's build lease
// instead of waiting for its expiry, removes the dead server's temporary
// files, and no partial blob is ever visible.
func TestCrashLeavesNothingBehind(t *testing.T) {
	testkit.RequireTools(t, "nix-instantiate", "nix-store")
	storageDir, pkgs := t.TempDir(), testkit.FreshPackageSet(t)
	drv, out := derivationOf(t, pkgs, "pause")
	env := []string{"STORAGE_PATH=" + storageDir, "NIXERY_PKGS_PATH=" + pkgs}

	first := startServer(t, env...)
	firstID, err := procalive.Of(first.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pulled := make(chan struct{})
	go func() {
		defer close(pulled)
		if resp, err := http.Get("http://" + first.addr + "/v2/pause/manifests/latest"); err == nil {
			resp.Body.Close()
		}
	}()
	first.awaitLog(t, "build started", "pause", nil)
	// The builder itself (it sleeps 4 s), not just Nix: then there is
	// something that could outlive the server. Processes have no event
	// to wait on.
	waitFor(t, "pause's builder to start", func() bool { return len(buildProcesses(drv, out, true)) > 0 })

	killed := time.Now()
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.done
	<-pulled
	waitFor(t, "the build's processes to end", func() bool { return len(buildProcesses(drv, out, false)) == 0 })
	t.Logf("the build's processes ended %s after the server was killed", time.Since(killed).Round(time.Millisecond))
	// A builder that had run on would have finished its output.
	if err := exec.Command("nix-store", "--check-validity", out).Run(); err == nil {
		t.Fatalf("%s was built after the server died: its builder ran on", out)
	}
	checkBlobs(t, storageDir)

	// What a blob write cut short by the kill leaves in tmp/: a file
	// named for its writer (see storage/filesystem).
	tmp := filepath.Join(storageDir, "tmp")
	deadTemp := filepath.Join(tmp, "blob-"+firstID.String()+"-CUTSHORT")
	testkit.WriteFile(t, deadTemp, bytes.Repeat([]byte("partial"), 1<<10))

	second := startServer(t, env...)
	restarted := time.Now()
	pullManifest(t, second.addr, "pause")
	t.Logf("the pull after the restart took %s", time.Since(restarted).Round(time.Millisecond))
	var tookOver, waited, removedTemp bool
	second.awaitLog(t, "image ready", "pause", func(line map[string]any) {
		switch line["msg"] {
		case "taking over lease":
			prev, _ := line["previous_holder"].(string)
			tookOver = tookOver || line["reason"] == "holder gone" && strings.Contains(prev, "/"+firstID.String()+"/")
		case "another instance is building this image: waiting for it":
			waited = true
		case "removed stale temporary file":
			removedTemp = removedTemp || line["file"] == "tmp/"+filepath.Base(deadTemp) && line["writer_dead"] == true
		}
	})
	if !tookOver || waited {
		t.Errorf("the restarted server took over the dead one's lease: %v; waited for it: %v", tookOver, waited)
	}
	if _, err := os.Stat(deadTemp); !errors.Is(err, os.ErrNotExist) || !removedTemp {
		t.Errorf("the dead server's temporary file: removed %v, stat %v", removedTemp, err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), firstID.String()) {
			t.Errorf("tmp/%s of the dead server is still there", e.Name())
		}
	}
	if err := exec.Command("nix-store", "--check-validity", out).Run(); err != nil {
		t.Errorf("%s is not valid after the second build: %v", out, err)
	}
	checkBlobs(t, storageDir)
}

// derivationOf instantiates attr of the package set at pkgs as the server
// does (for the host's system) and returns its .drv and output paths.
func derivationOf(t *testing.T, pkgs, attr string) (drv, out string) {
	t.Helper()
	res, err := exec.Command("nix-instantiate", pkgs, "-A", attr, "--argstr", "system", "x86_64-linux").Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	drv = strings.TrimSpace(string(res))
	res, err = exec.Command("nix-store", "--query", "--outputs", drv).Output()
	if err != nil {
		t.Fatalf("nix-store --query --outputs: %v", err)
	}
	return drv, strings.TrimSpace(string(res))
}

// buildProcesses returns the running processes of the build of drv: those
// whose command line names it (Nix), and those whose environment names
// its output (the builder and what it runs); with builderOnly, only the
// latter.
func buildProcesses(drv, out string, builderOnly bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !testkit.Running(pid) {
			continue
		}
		dir := "/proc/" + e.Name()
		environ, _ := os.ReadFile(dir + "/environ")
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		if bytes.Contains(environ, []byte("out="+out+"\x00")) || !builderOnly && bytes.Contains(cmdline, []byte(drv)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFor polls cond until it holds; 60 s is a bound on failing only.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkBlobs checks that every blob in filesystem storage at dir hashes to
// its name: none is partial.
func checkBlobs(t *testing.T, dir string) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".type") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(blobs, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s holds %d bytes hashing to %x: partial", e.Name(), len(data), sum)
		}
	}
}
