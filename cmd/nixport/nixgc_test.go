package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/testkit"
)

// gatedPackageSet is the offline test package set (a fresh copy) plus
// "gated", whose build waits until the test writes to a FIFO: it returns
// the set's directory and the FIFO. Opening the FIFO for writing returns
// once the build is running; closing it lets the build finish.
func gatedPackageSet(t *testing.T) (dir, fifo string) {
	t.Helper()
	fresh := testkit.FreshPackageSet(t)
	// The builder runs as a nixbld user: the FIFO must be reachable and
	// open to it.
	gate, err := os.MkdirTemp("", "nixport-gate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(gate) })
	if err := os.Chmod(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo = filepath.Join(gate, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "default.nix"), []byte(fmt.Sprintf(`args:
let pkgs = import %s/default.nix args; bb = "${pkgs.busybox}/bin"; in
pkgs // {
  gated = derivation {
    name = "gated";
    system = builtins.currentSystem;
    builder = "${bb}/sh";
    args = [ "-c" "${bb}/cat %s > /dev/null && ${bb}/mkdir -p $out/bin && ${bb}/echo '#!${bb}/sh' > $out/bin/gated" ];
  };
}
`, fresh, fifo)))
	return dir, fifo
}

// TestNixStoreCollection: with a small budget above the store's size, a
// big image fills the store past it while another build is running; the
// store is collected below the low mark, the running build and the big
// one succeed, every root is released once the builds end, and an image
// built before, whose paths are no longer in the store, still pulls.
func TestNixStoreCollection(t *testing.T) {
	requireTools(t, "nix-store", "nix")
	pkgs, fifo := gatedPackageSet(t)
	measurer, err := nix.New(nix.Options{Log: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer measurer.Close()
	ctx := context.Background()
	start, err := measurer.StoreSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The store is shared with other builds: the budget is relative to
	// its size now. bigclosure adds about 111 MiB.
	max, low := start.Bytes+64<<20, start.Bytes+16<<20
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+pkgs, "NIX_TIMEOUT=600", "NIXPORT_MAX_BUILDS=4",
		"NIXPORT_NIX_STORE_MAX="+strconv.FormatInt(max, 10), "NIXPORT_NIX_STORE_LOW="+strconv.FormatInt(low, 10))
	base := "http://" + s.addr
	// Whatever happens, the gated build ends (Nix builders outlive a
	// killed server): a writer that comes and goes lets it read EOF.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	})

	// An image built first: its store paths are garbage once it is built.
	earlier, err := pullAll(http.DefaultClient, base, "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}

	// A build that runs (blocked on the FIFO) all through the collection.
	gatedDone := make(chan error, 1)
	go func() {
		_, err := pullAll(http.DefaultClient, base, "gated", "latest")
		gatedDone <- err
	}()
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once the builder reads
		if err == nil {
			opened <- f
		}
	}()
	var gate *os.File
	select {
	case gate = <-opened:
	case err := <-gatedDone:
		t.Fatalf("the gated build ended before its builder ran: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the gated build's builder did not start within 2 minutes")
	}
	running := time.Now()

	bigDone := make(chan error, 1)
	go func() {
		_, err := pullAll(http.DefaultClient, base, "bigclosure", "latest")
		bigDone <- err
	}()

	// The first collection that started while the gated build was running.
	var gc map[string]any
	deadline := time.After(10 * time.Minute) // bigclosure takes a while on a busy machine
	var bigErr error
	big := bigDone
	for gc == nil {
		select {
		case line := <-s.logs:
			if line["msg"] != "Nix store garbage collected" {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, line["time"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if at.Add(-time.Duration(line["duration_ms"].(float64)) * time.Millisecond).After(running) {
				gc = line
			}
		case bigErr = <-big:
			if bigErr != nil {
				t.Fatalf("pulling bigclosure: %v", bigErr)
			}
			big = nil // pulled: wait on the log alone
		case <-deadline:
			t.Fatal("no collection within 10 minutes")
		}
	}
	t.Logf("collection: %v", gc)
	families := scrape(t, base+"/metrics")
	if v := sample(families, "nixport_nix_gc_freed_bytes_total"); v <= 0 {
		t.Errorf("nixport_nix_gc_freed_bytes_total = %v after a collection", v)
	}
	if v := sample(families, "nixport_nix_store_bytes"); v <= 0 {
		t.Errorf("nixport_nix_store_bytes = %v", v)
	}
	before, freed, after := int64(gc["store_bytes"].(float64)), int64(gc["freed_bytes"].(float64)), int64(gc["store_bytes_after"].(float64))
	// Nix reports what it freed in hundredths of a MiB. The store is
	// shared with whatever else builds on this machine (other tests run
	// at the same time), which may add paths while the collection runs:
	// what the collector owes is to free down to the low mark from the
	// size it measured, and the store measured after it to be that, plus
	// what others added meanwhile.
	if before <= max || freed < before-low-10<<10 {
		t.Errorf("collected %d bytes of a store of %d: want it over %d, then collected down to %d", freed, before, max, low)
	}
	if added := after - (before - freed); after >= before || added > 0 {
		t.Logf("the store measured %d after the collection: %d bytes added meanwhile by other builds", after, added)
		if after >= before {
			t.Errorf("the store did not shrink: %d before, %d after", before, after)
		}
	}
	select {
	case err := <-gatedDone:
		t.Fatalf("the gated build ended before the test let it: %v", err)
	default:
	}

	// The gated build holds roots (its plan's) while it runs.
	rootsGlob := filepath.Join(os.TempDir(), fmt.Sprintf("nixport-nix-%d.*", s.cmd.Process.Pid), "gcroots", "*")
	if roots, _ := filepath.Glob(rootsGlob); len(roots) == 0 {
		t.Errorf("no GC roots in %s while a build runs", rootsGlob)
	}

	gate.Close()
	if big == nil {
		bigDone <- bigErr
	}
	for name, done := range map[string]chan error{"gated": gatedDone, "bigclosure": bigDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pulling %s: %v", name, err)
			}
		case <-time.After(5 * time.Minute):
			t.Fatalf("%s was not pulled within 5 minutes", name)
		}
	}

	// Every root is released once the builds end: the plans' and the
	// images'.
	if roots, _ := filepath.Glob(rootsGlob); len(roots) != 0 {
		t.Errorf("GC roots held after every build ended: %v", roots)
	}

	// The image built first: its paths are out of the store (collected,
	// or deleted now: nothing roots them), and it still pulls.
	out, err := exec.Command("nix-instantiate", "--eval", "-E", fmt.Sprintf("(import %s/default.nix {}).hello.outPath", pkgs)).Output()
	if err != nil {
		t.Fatal(err)
	}
	hello := strings.Trim(strings.TrimSpace(string(out)), `"`)
	if _, err := os.Lstat(hello); err == nil {
		if out, err := exec.Command("nix-store", "--delete", hello).CombinedOutput(); err != nil {
			t.Fatalf("deleting %s, which nothing should root: %v %s", hello, err, out)
		}
	}
	if _, err := os.Lstat(hello); err == nil {
		t.Fatalf("%s is still in the store", hello)
	}
	again, err := pullAll(http.DefaultClient, base, "hello", "latest")
	if err != nil || again != earlier {
		t.Fatalf("pulling the collected image: %s %v, want %s", again, err, earlier)
	}
	s.stop(t)
}

// TestDeadServersRootsRemoved: a server killed mid-build leaves its GC
// roots (its plan's); the next server to start on this host removes them,
// so Nix no longer keeps what the dead server's builds needed.
func TestDeadServersRootsRemoved(t *testing.T) {
	requireTools(t, "nix-store")
	pkgs, fifo := gatedPackageSet(t)
	env := []string{"STORAGE_PATH=" + t.TempDir(), "NIXERY_PKGS_PATH=" + pkgs}
	s1 := startServer(t, env...)
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	})
	go http.Get("http://" + s1.addr + "/v2/gated/manifests/latest")
	opened := make(chan *os.File, 1)
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			opened <- f
		}
	}()
	var gate *os.File
	select {
	case gate = <-opened:
	case <-time.After(2 * time.Minute):
		t.Fatal("the gated build's builder did not start within 2 minutes")
	}
	defer gate.Close()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("nixport-nix-%d.*", s1.cmd.Process.Pid)))
	if len(dirs) != 1 {
		t.Fatalf("the server's directories: %v", dirs)
	}
	if roots, _ := filepath.Glob(filepath.Join(dirs[0], "gcroots", "*", "*")); len(roots) == 0 {
		t.Fatalf("no GC roots in %s while a build runs", dirs[0])
	}
	s1.cmd.Process.Kill()
	<-s1.done

	s2 := startServer(t, env...)
	// Other dead servers' directories may go too: the line for this one.
	for {
		line := s2.awaitLog(t, "removed the GC roots of a server that is no longer running", "", nil)
		if line["dir"] == dirs[0] {
			if line["pid"] != float64(s1.cmd.Process.Pid) {
				t.Errorf("removed %s of pid %v, want %d", dirs[0], line["pid"], s1.cmd.Process.Pid)
			}
			break
		}
	}
	if _, err := os.Lstat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dirs[0], err)
	}
	s2.stop(t)
}
