package filesystem_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
	"github.com/nixport/nixport/storage/storagetest"
)

func newBackend(t testing.TB, dir string) *filesystem.Backend {
	t.Helper()
	b, err := filesystem.New(dir, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return newBackend(t, t.TempDir())
	})
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	content := []byte("layout")
	info, err := storage.PutBlob(t.Context(), b, "text/plain", "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject(t.Context(), "tags/x/latest", []byte("o")); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"blobs/sha256/" + info.Digest.Encoded():           string(content),
		"blobs/sha256/" + info.Digest.Encoded() + ".type": "text/plain",
		"objects/tags/x/latest":                           "o",
	} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("reading %s: %v", file, err)
		} else if string(got) != want {
			t.Errorf("%s holds %q, want %q", file, got, want)
		}
	}
	// Nothing is left behind in tmp/.
	if entries, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("tmp/ holds %v (error %v), want nothing", entries, err)
	}
}

func TestNewCreatesMissingRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "does", "not", "exist")
	b := newBackend(t, dir)
	if b.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", b.Dir(), dir)
	}
	for _, sub := range []string{"blobs/sha256", "objects", "tmp"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s: not a directory (%v)", sub, err)
		}
	}
}

func TestNewRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	newBackend(t, dir).Close()

	tmp := filepath.Join(dir, "tmp")
	stale := filepath.Join(tmp, "blob-crashed")
	fresh := filepath.Join(tmp, "blob-in-progress")
	for _, name := range []string{stale, fresh} {
		if err := os.WriteFile(name, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	newBackend(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file still there (stat error %v)", err)
	}
	// A younger file may belong to a writer in another process.
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}

// TestNewRemovesDeadWritersTemps: a server killed while it writes a blob
// leaves its temporary file; the next New removes it at once, and leaves
// those of live writers (this process's, another machine's) alone.
func TestNewRemovesDeadWritersTemps(t *testing.T) {
	if dir := os.Getenv("NIXPORT_FS_TEST_WRITER"); dir != "" {
		writeForever(dir)
		return
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	// This process writes a blob of its own meanwhile; a writer of
	// another machine has just written to its file.
	live, err := newBackend(t, dir).NewBlobWriter(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Cancel()
	live.Write([]byte("partial"))
	other := mustSelf(t)
	other.Space = strings.Repeat("0", len(other.Space))
	otherName := "blob-" + other.String() + "-ABCDEFGH"
	if err := os.WriteFile(filepath.Join(tmp, otherName), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}

	helper := exec.Command(os.Args[0], "-test.run=^TestNewRemovesDeadWritersTemps$")
	helper.Env = append(os.Environ(), "NIXPORT_FS_TEST_WRITER="+dir)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Wait()
	defer helper.Process.Kill()
	helperID, err := procalive.Of(helper.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "writing\n" {
		t.Fatalf("the writer said %q (%v)", line, err)
	}
	helper.Process.Kill()
	helper.Wait()
	var dead []string
	for _, name := range listDir(t, tmp) {
		if strings.Contains(name, helperID.String()) {
			dead = append(dead, name)
		}
	}
	if len(dead) == 0 {
		t.Fatalf("the killed writer left nothing in tmp/ (%v): nothing to test", listDir(t, tmp))
	}

	before := listDir(t, tmp)

	newBackend(t, dir)
	after := listDir(t, tmp)
	for _, name := range dead {
		if slices.Contains(after, name) {
			t.Errorf("the dead writer's %s is still there", name)
		}
	}
	for _, name := range before {
		if !slices.Contains(dead, name) && !slices.Contains(after, name) {
			t.Errorf("%s, a live writer's, was removed", name)
		}
	}
	if !slices.Contains(after, otherName) || len(after) != len(before)-len(dead) {
		t.Errorf("tmp/ holds %v after New, was %v", after, before)
	}
}

// writeForever is the writer of TestNewRemovesDeadWritersTemps: it writes
// part of a blob under dir, says so, and waits to be killed.
func writeForever(dir string) {
	b, err := filesystem.New(dir, nil)
	if err != nil {
		os.Exit(3)
	}
	w, err := b.NewBlobWriter(context.Background(), "")
	if err != nil {
		os.Exit(3)
	}
	w.Write(bytes.Repeat([]byte("x"), 1<<20))
	os.Stdout.WriteString("writing\n")
	select {}
}

func mustSelf(t *testing.T) procalive.ID {
	t.Helper()
	me, err := procalive.Self()
	if err != nil {
		t.Fatal(err)
	}
	return me
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestObjectNamesStayInsideRoot(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	b := newBackend(t, dir)
	for _, name := range []string{
		"../escaped", "../../escaped", "/escaped", "a/../../escaped", "..", "a/../..",
		filepath.Join(parent, "escaped"), "objects/../../escaped", `..\escaped`,
	} {
		if err := b.PutObject(t.Context(), name, []byte("x")); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("PutObject(%q) error = %v, want ErrInvalidName", name, err)
		}
		if err := b.CreateObject(t.Context(), name, []byte("x")); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("CreateObject(%q) error = %v, want ErrInvalidName", name, err)
		}
	}
	requireOnlyRoot(t, parent, "root")
}

// Not required of the name validation, but the os.Root underneath refuses to
// follow a symbolic link planted in the tree to somewhere outside it.
func TestPlantedSymlinkDoesNotEscape(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, dir)
	if err := os.Symlink(outside, filepath.Join(dir, "objects", "link")); err != nil {
		t.Fatal(err)
	}

	if err := b.PutObject(t.Context(), "link/planted", []byte("x")); err == nil {
		t.Error("PutObject through a symlink out of the root succeeded")
	}
	if err := b.CreateObject(t.Context(), "link/planted", []byte("x")); err == nil {
		t.Error("CreateObject through a symlink out of the root succeeded")
	}
	if data, err := b.GetObject(t.Context(), "link/secret"); err == nil {
		t.Errorf("GetObject through a symlink out of the root read %q", data)
	}
	if err := b.DeleteObject(t.Context(), "link/secret"); err == nil {
		t.Error("DeleteObject through a symlink out of the root succeeded")
	}
	if names, err := b.ListObjects(t.Context(), "link/"); err == nil && len(names) > 0 {
		t.Errorf("ListObjects through a symlink out of the root = %q", names)
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "secret" {
		t.Errorf("directory outside the root now holds %v, want only secret", entries)
	}
}

func TestPermissions(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	if _, err := storage.PutBlob(t.Context(), b, "text/plain", "", -1, strings.NewReader("perm")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject(t.Context(), "p/put", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateObject(t.Context(), "p/created", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// World-readable (a separate process may serve or back up the store),
	// writable only by the owner, nothing executable; the umask may take
	// away more.
	mask := umask()
	wantDir, wantFile := 0o755&^mask, 0o644&^mask
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir { // the root itself is t.TempDir's
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := wantFile
		if d.IsDir() {
			want = wantDir
		}
		if got := fi.Mode().Perm(); got != want {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s has mode %v, want %v", rel, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// umask reads the process umask without changing it (syscall.Umask can only
// set it, which would race with other tests creating files).
func umask() fs.FileMode {
	name := filepath.Join(os.TempDir(), "umask-probe-"+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o777)
	if err != nil {
		return 0o022
	}
	defer os.Remove(name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0o022
	}
	return 0o777 &^ fi.Mode().Perm()
}

func TestBlobWriterRefusesBadMediaType(t *testing.T) {
	b := newBackend(t, t.TempDir())
	for _, mediaType := range []string{"text/plain\r\nX-Injected: 1", "not a type", "/"} {
		if w, err := b.NewBlobWriter(t.Context(), mediaType); err == nil {
			w.Cancel()
			t.Errorf("NewBlobWriter(%q) succeeded", mediaType)
		}
	}
}

// A reader never sees a blob's bytes under a name until they are complete.
func TestNoPartialBlobVisible(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	content := bytes.Repeat([]byte("partial"), 10_000)
	w, err := b.NewBlobWriter(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content[:1000]); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(content)
	if _, err := b.StatBlob(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("StatBlob during the write: %v, want ErrNotFound", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("blobs/sha256 holds %d entries during the write, want none", len(entries))
	}
	if _, err := w.Write(content[1000:]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context(), dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.OpenBlob(t.Context(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, content) {
		t.Error("blob content differs")
	}
}

// requireOnlyRoot checks that parent holds nothing but the root directory.
func requireOnlyRoot(t *testing.T, parent, root string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != root {
			t.Errorf("%s appeared beside the root", e.Name())
		}
	}
}

// A directory tree cannot hold "a" and "a/b" as objects at once; the error
// says so, and is not ErrExists (nothing of that name exists).
func TestObjectNameConflicts(t *testing.T) {
	b := newBackend(t, t.TempDir())
	for _, name := range []string{"file", "dir/object"} {
		if err := b.PutObject(t.Context(), name, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, wantInError string
	}{
		{"file/child", "file is an object"},
		{"file/deeper/child", "file is an object"},
		{"dir", "other objects are stored under dir/"},
	}
	for _, tt := range tests {
		for op, call := range map[string]func(string) error{
			"PutObject":    func(n string) error { return b.PutObject(t.Context(), n, []byte("y")) },
			"CreateObject": func(n string) error { return b.CreateObject(t.Context(), n, []byte("y")) },
		} {
			err := call(tt.name)
			if err == nil || errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), tt.wantInError) {
				t.Errorf("%s(%q) error = %v, want one saying %q and not wrapping ErrExists", op, tt.name, err, tt.wantInError)
			}
		}
	}
}
