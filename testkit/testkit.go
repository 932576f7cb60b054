// Package testkit holds what the tests of the builder, the image sources
// and OCI-layout ingest share: real filesystem storage in a temporary
// directory, the stand-in external build (layoutgen) that writes OCI
// layouts, and checks of errors and of what was stored. It is imported by
// tests only.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

// RequireTools skips the test unless every tool is on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/setup.sh installs it): %v", tool, err)
		}
	}
}

// NewFSStore returns filesystem storage in a temporary directory, and the
// directory.
func NewFSStore(t testing.TB) (storage.Backend, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// QuietLog discards everything.
func QuietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// ReadBlob reads a whole blob from storage.
func ReadBlob(t testing.TB, store storage.Backend, info storage.BlobInfo) []byte {
	t.Helper()
	r, _, err := store.OpenBlob(context.Background(), info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// WantCode checks that err is an *errcode.Error with code and a message
// holding every part.
func WantCode(t testing.TB, err error, code errcode.Code, parts ...string) *errcode.Error {
	t.Helper()
	e, ok := errcode.As(err)
	if !ok {
		t.Fatalf("error %v is not an *errcode.Error", err)
	}
	if e.Code != code {
		t.Fatalf("error %v: code %s, want %s", err, e.Code, code)
	}
	for _, p := range parts {
		if !strings.Contains(e.Message, p) {
			t.Errorf("message %q does not hold %q", e.Message, p)
		}
	}
	return e
}

// WriteFile writes data to path.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Rewrite replaces a file the way editors and build tools do: a new file
// renamed over the old (a new inode, whatever the size and time).
func Rewrite(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	WriteFile(t, tmp, []byte(content))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// CopyDir replaces the directory to with a copy of from.
func CopyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.RemoveAll(to); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// ReadJSON decodes the JSON file at path into v.
func ReadJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// WantEmptyDir checks that dir holds nothing: the output directories of
// build commands must be removed.
func WantEmptyDir(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s holds %d entries, want none (output directories must be removed)", dir, len(entries))
	}
}

// Running says whether process pid runs: it exists and is no zombie
// (one that nobody has reaped yet runs nothing).
func Running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the ")" that ends the command name.
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || !strings.HasPrefix(string(data[i+1:]), " Z")
}

// WaitGone waits until none of pids runs: a process killed has gone once
// the kernel is done with it. One still running after 30 s (a bound on
// failing only: a loaded machine takes its time) fails the test (and is
// killed).
func WaitGone(t testing.TB, pids ...int) {
	t.Helper()
	if len(pids) == 0 {
		t.Fatal("no process to wait for")
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for Running(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("process %d still runs", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// ListTree lists every file under dir with its size: what "storage
// unchanged" is checked against.
func ListTree(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, fmt.Sprintf("%s %d", rel, info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// BuildLayoutgen builds ocilayout/testdata/layoutgen, the stand-in
// external build that writes OCI layouts of busybox images.
func BuildLayoutgen(t testing.TB) string {
	t.Helper()
	RequireTools(t, "go")
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no static busybox at /bin/busybox (Debian busybox-static; scripts/setup.sh installs it)")
	}
	_, here, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(here), "..", "ocilayout", "testdata", "layoutgen")
	bin := filepath.Join(t.TempDir(), "layoutgen")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building layoutgen: %v\n%s", err, out)
	}
	return bin
}

// GenLayout writes a layout with layoutgen and returns its directory.
func GenLayout(t testing.TB, bin string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	argv := append(args, "img/x", "latest", dir)
	if out, err := exec.Command(bin, argv...).CombinedOutput(); err != nil {
		t.Fatalf("layoutgen %v: %v\n%s", argv, err, out)
	}
	return dir
}

// CheckStored checks that every blob the manifest at info references
// (through nested indexes) is in storage, and returns the architectures it
// serves.
func CheckStored(t testing.TB, store storage.Backend, info storage.BlobInfo) []string {
	t.Helper()
	data := ReadBlob(t, store, info)
	switch info.MediaType {
	case v1.MediaTypeImageIndex:
		var idx v1.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, d := range idx.Manifests {
			if d.Annotations["org.opencontainers.image.ref.name"] != "" {
				t.Errorf("served index keeps the layout's ref.name annotation")
			}
			CheckStored(t, store, storage.BlobInfo{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType})
			platforms = append(platforms, d.Platform.Architecture)
		}
		return platforms
	case v1.MediaTypeImageManifest:
		var m v1.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			got, err := store.StatBlob(context.Background(), d.Digest)
			if err != nil || got.Size != d.Size {
				t.Fatalf("blob %s: %v, size %d want %d", d.Digest, err, got.Size, d.Size)
			}
		}
		var cfg v1.Image
		if err := json.Unmarshal(ReadBlob(t, store, storage.BlobInfo{Digest: m.Config.Digest}), &cfg); err != nil {
			t.Fatal(err)
		}
		return []string{cfg.Architecture}
	}
	t.Fatalf("served media type %q", info.MediaType)
	return nil
}

// FreshPackageSet writes a copy of the offline test package set
// (nix/testpkgs) into a directory of the test's own, with a nonce in its
// busybox, which every package depends on: every derivation of the copy is
// new to the Nix store, so its builds really run whatever earlier tests
// built, and never wait on another test's build of the same derivation.
// It returns the directory, for a path package source.
func FreshPackageSet(t testing.TB) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "nix", "testpkgs", "default.nix"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = `name = "busybox";`
	if !bytes.Contains(src, []byte(anchor)) {
		t.Fatalf("the package set lost %q", anchor)
	}
	nonce := fmt.Sprintf(`%s env.nixportTestNonce = "%d-%d";`, anchor, os.Getpid(), time.Now().UnixNano())
	dir := t.TempDir()
	WriteFile(t, filepath.Join(dir, "default.nix"), bytes.Replace(src, []byte(anchor), []byte(nonce), 1))
	return dir
}

// DemandNix makes the package set in dir (a FreshPackageSet) state the Nix
// it needs the way nixpkgs does: lib/minver.nix holds required, and
// default.nix aborts with nixpkgs' message on an older Nix before it
// imports the packages (moved to pkgs.nix). With a required version newer
// than the host's Nix ("99.0"), every evaluation of it fails as current
// nixpkgs fails on Debian's Nix 2.8.
func DemandNix(t testing.TB, dir, required string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, "default.nix"), filepath.Join(dir, "pkgs.nix")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, filepath.Join(dir, "lib", "minver.nix"),
		[]byte("# Expose the minimum required version for evaluating this package set\n\""+required+"\"\n"))
	WriteFile(t, filepath.Join(dir, "default.nix"), []byte(`let requiredVersion = import ./lib/minver.nix; in

if ! builtins ? nixVersion || builtins.compareVersions requiredVersion builtins.nixVersion == 1 then

  abort ''

    This version of Nixpkgs requires Nix >= ${requiredVersion}, please upgrade:

    - If you are running NixOS, `+"`nixos-rebuild'"+` can be used to upgrade your system.

    - Alternatively, with Nix > 2.0 `+"`nix upgrade-nix'"+` can be used to imperatively
      upgrade Nix. You may use `+"`nix-env --version'"+` to check which version you have.
  ''

else

  import ./pkgs.nix
`))
}
