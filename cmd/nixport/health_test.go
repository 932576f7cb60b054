package main

// Readiness and the Nix version against the package set, through the real
// binary: what depends on the process (its PATH, its storage directory,
// the package set it was started with) is tested here; what depends on
// the handler alone is in web's tests.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/testkit"
)

// readiness is what /readyz answered.
type readiness struct {
	code int
	body struct {
		Status, Version, Reason string
		NixVersion              string `json:"nix_version"`
		Source                  string
		SourceRevision          string `json:"source_revision"`
		Checks                  map[string]string
	}
}

func readyz(t *testing.T, addr string) readiness {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := readiness{code: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&r.body); err != nil {
		t.Fatalf("/readyz: %d, body: %v", resp.StatusCode, err)
	}
	return r
}

// TestReadinessNamesNixAndSource: the start-up line and /readyz name the
// version, the Nix version, the package source and its revision.
func TestReadinessNamesNixAndSource(t *testing.T) {
	requireTools(t, "nix-store")
	out, err := exec.Command("nix-store", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	nixVersion := strings.Fields(string(out))[2]
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	line := s.awaitLog(t, "nixport listening", "", nil)
	if line["nix_version"] != nixVersion || line["source"] != "builtin" || line["source_revision"] != "builtin" || line["version"] == "" {
		t.Errorf("start-up line %v, want nix_version %s, source and source_revision builtin", line, nixVersion)
	}
	r := readyz(t, s.addr)
	if r.code != 200 || r.body.NixVersion != nixVersion || r.body.Source != "builtin" || r.body.SourceRevision != "builtin" ||
		r.body.Checks["source"] != "ok" {
		t.Errorf("/readyz: %d %+v", r.code, r.body)
	}
	s.stop(t)
}

// TestReadinessWithUnwritableStorage: /readyz turns 503, naming storage,
// while storage cannot be written, and 200 again when it can. Tests may
// run as root, whom permissions do not stop, so storage's tmp/ directory
// (where every write begins) is replaced by a file: writing there fails
// for anyone.
func TestReadinessWithUnwritableStorage(t *testing.T) {
	requireTools(t, "nix-store")
	store := t.TempDir()
	s := startServer(t, "STORAGE_PATH="+store)
	if r := readyz(t, s.addr); r.code != 200 {
		t.Fatalf("/readyz at start: %d %+v", r.code, r.body)
	}
	tmp := filepath.Join(store, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, tmp, []byte("not a directory"))
	r := readyz(t, s.addr)
	if r.code != 503 || r.body.Status != "unavailable" || !strings.HasPrefix(r.body.Reason, "storage: ") ||
		r.body.Checks["storage"] == "ok" || r.body.Checks["nix"] != "ok" {
		t.Errorf("/readyz with storage unwritable: %d %+v", r.code, r.body)
	}
	t.Logf("reason: %s", r.body.Reason)
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := readyz(t, s.addr); r.code != 200 {
		t.Errorf("/readyz with storage writable again: %d %+v", r.code, r.body)
	}
	s.stop(t)
}

// TestReadinessWithoutNix: the server's PATH is a directory of links to
// the Nix tools; once they are gone, Nix no longer runs and /readyz turns
// 503 naming Nix.
func TestReadinessWithoutNix(t *testing.T) {
	requireTools(t, "nix-store")
	bin := t.TempDir()
	for _, tool := range []string{"nix", "nix-store", "nix-instantiate"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "PATH="+bin)
	if r := readyz(t, s.addr); r.code != 200 {
		t.Fatalf("/readyz at start: %d %+v", r.code, r.body)
	}
	for _, tool := range []string{"nix", "nix-store", "nix-instantiate"} {
		if err := os.Remove(filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	r := readyz(t, s.addr)
	if r.code != 503 || !strings.HasPrefix(r.body.Reason, "nix: ") || !strings.Contains(r.body.Reason, "nix-store") ||
		r.body.Checks["storage"] != "ok" {
		t.Errorf("/readyz without Nix: %d %+v", r.code, r.body)
	}
	t.Logf("reason: %s", r.body.Reason)
	s.stop(t)
}

// TestNixTooOldForPackageSet: a package set whose lib/minver.nix demands
// a newer Nix than the host's, as nixpkgs since 2025 does of Debian's Nix
// 2.8: one warning at start-up naming both versions, and every pull a 422
// naming both, answered at once; /readyz says so; skopeo shows the
// message.
func TestNixTooOldForPackageSet(t *testing.T) {
	requireTools(t, "nix-store")
	dir := testkit.FreshPackageSet(t)
	testkit.DemandNix(t, dir, "99.0")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+dir)

	warnings := 0
	listening := s.awaitLog(t, "nixport listening", "", func(line map[string]any) {
		if line["level"] == "warning" && line["required_nix"] != nil {
			warnings++
			if line["required_nix"] != "99.0" || line["nix_version"] == nil || !strings.Contains(fmt.Sprint(line["msg"]), "99.0") {
				t.Errorf("start-up warning %v", line)
			}
		}
	})
	if warnings != 1 {
		t.Errorf("%d start-up warnings naming the Nix the package set needs, want 1", warnings)
	}
	nixVersion, _ := listening["nix_version"].(string)
	want := "the package set needs Nix 99.0 or newer; this server runs Nix " + nixVersion +
		": ask the registry's operator to run a newer Nix, or to point the registry at an older package set"

	for _, name := range []string{"hello", "shell/hello", "hello"} {
		start := time.Now()
		status, _, code, message := getManifest(t, "http://"+s.addr, name, "latest")
		took := time.Since(start)
		if status != http.StatusUnprocessableEntity || code != "BUILD_FAILED" || message != want {
			t.Errorf("%s: %d %s %q, want 422 BUILD_FAILED %q", name, status, code, message, want)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%s: answered in %s, want well under a second", name, took)
		}
		t.Logf("%s: %s", name, took)
	}
	r := readyz(t, s.addr)
	if r.code != 503 || r.body.Reason != "source: "+want {
		t.Errorf("/readyz: %d %+v", r.code, r.body)
	}

	if _, err := exec.LookPath("skopeo"); err == nil {
		err := skopeoCopy(s.addr, "hello:latest", filepath.Join(t.TempDir(), "layout"), "--src-tls-verify=false")
		if err == nil || !strings.Contains(err.Error(), "needs Nix 99.0 or newer; this server runs Nix "+nixVersion) {
			t.Errorf("skopeo copy: %v, want the message", err)
		}
		t.Logf("%v", err)
	}
	s.stop(t)
}

// TestReadinessObjectRemovedAtStop: the object /readyz writes and reads
// back is this process's, and goes when the process stops.
func TestReadinessObjectRemovedAtStop(t *testing.T) {
	store := t.TempDir()
	s := startServer(t, "STORAGE_PATH="+store)
	if resp, body := get(t, "http://"+s.addr+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("/readyz: %s %s", resp.Status, body)
	}
	objects := filepath.Join(store, "objects", "health")
	if entries, err := os.ReadDir(objects); err != nil || len(entries) != 1 {
		t.Fatalf("health objects while serving: %v, %v; want one", entries, err)
	}
	s.stop(t)
	if entries, _ := os.ReadDir(objects); len(entries) != 0 {
		t.Errorf("health objects after the stop: %v, want none", entries)
	}
}
