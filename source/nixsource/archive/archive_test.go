package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// spec describes one host entry to create under a store directory:
// "d" directory, "f" file (content), "l" symlink (target), "h" hard link
// (target: another entry's path, relative to the store directory).
type spec struct {
	path string
	kind string
	data string
	mode os.FileMode
}

// mkstore creates the entries under dir, then applies modes (directories
// last, deepest first, so read-only ones do not block their children), and
// sets scattered mtimes so that host times cannot leak into a layer.
func mkstore(t testing.TB, dir string, specs []spec) {
	t.Helper()
	for _, s := range specs {
		p := filepath.Join(dir, s.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch s.kind {
		case "d":
			err = os.Mkdir(p, 0o755)
		case "f":
			err = os.WriteFile(p, []byte(s.data), 0o644)
		case "l":
			err = os.Symlink(s.data, p)
		case "h":
			err = os.Link(filepath.Join(dir, s.data), p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Now()
	for i := len(specs) - 1; i >= 0; i-- {
		s := specs[i]
		p := filepath.Join(dir, s.path)
		if s.kind == "l" || s.kind == "h" {
			continue
		}
		mode := s.mode
		if mode == 0 {
			mode = 0o555
			if s.kind == "f" {
				mode = 0o444
			}
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(-time.Duration(i+1) * time.Hour)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	// t.TempDir removes its tree last; make it writable again first.
	t.Cleanup(func() {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// entry is what a test checks of a tar entry.
type entry struct {
	name string
	typ  byte
	mode int64
	link string
	data string
	// owner is "uid:gid" when not root's ("" for 0:0): only the
	// customisation layer's own entries have another.
	owner string
}

func (e entry) String() string {
	return fmt.Sprintf("%c %s %o %q %q %s", e.typ, e.name, e.mode, e.link, e.data, e.owner)
}

// readLayer verifies data against r independently of the writer (sha256 of
// the bytes, gunzip and sha256 of the tar), checks the fixed header fields of
// every entry and returns the entries.
func readLayer(t testing.TB, data []byte, r Result) []entry {
	t.Helper()
	if got := digest.FromBytes(data); got != r.Digest {
		t.Fatalf("digest %s, bytes hash to %s", r.Digest, got)
	}
	if int64(len(data)) != r.Size {
		t.Fatalf("size %d, wrote %d bytes", r.Size, len(data))
	}
	br := bytes.NewReader(data)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if br.Len() != 0 {
		t.Fatalf("%d bytes after the gzip member", br.Len())
	}
	if got := digest.FromBytes(raw); got != r.DiffID {
		t.Fatalf("diff_id %s, tar hashes to %s", r.DiffID, got)
	}
	if int64(len(raw)) != r.UncompressedSize {
		t.Fatalf("uncompressed size %d, tar is %d bytes", r.UncompressedSize, len(raw))
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q:%q", h.Name, h.Uname, h.Gname)
		}
		owner := ""
		if h.Uid != 0 || h.Gid != 0 {
			owner = fmt.Sprintf("%d:%d", h.Uid, h.Gid)
		}
		if !h.ModTime.Equal(time.Unix(1, 0)) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v", h.Name, h.ModTime, h.AccessTime, h.ChangeTime)
		}
		if len(h.PAXRecords) > 0 && len(h.Name) <= 100 {
			t.Errorf("%s: PAX records %v for a short name", h.Name, h.PAXRecords)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{name: h.Name, typ: h.Typeflag, mode: h.Mode, link: h.Linkname, data: string(b), owner: owner})
	}
	return out
}

func write(t testing.TB, paths []string, opts Options) ([]byte, Result) {
	t.Helper()
	var buf bytes.Buffer
	r, err := WriteLayer(&buf, paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), r
}

const (
	hashA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hashB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	hashC = "cccccccccccccccccccccccccccccccc"
)

// sampleStore builds three store paths under dir and returns them (in an
// unsorted order).
func sampleStore(t testing.TB, dir string) []string {
	long := strings.Repeat("x", 120)
	mkstore(t, dir, []spec{
		{path: hashB + "-tool-1.0", kind: "d"},
		{path: hashB + "-tool-1.0/bin", kind: "d"},
		{path: hashB + "-tool-1.0/bin/tool", kind: "f", data: "#!tool", mode: 0o555},
		{path: hashB + "-tool-1.0/bin/tool-alias", kind: "l", data: "tool"},
		{path: hashB + "-tool-1.0/lib", kind: "d"},
		{path: hashB + "-tool-1.0/lib/libt.so", kind: "f", data: "ELF"},
		{path: hashB + "-tool-1.0/lib/libt.so.1", kind: "h", data: hashB + "-tool-1.0/lib/libt.so"},
		{path: hashB + "-tool-1.0/lib/" + long, kind: "f", data: "long"},
		{path: hashB + "-tool-1.0/lib.a", kind: "f", data: "after lib/ in walk order"},
		{path: hashA + "-dep-2.0", kind: "d"},
		{path: hashA + "-dep-2.0/share", kind: "d"},
		{path: hashA + "-dep-2.0/share/empty", kind: "d"},
		{path: hashA + "-dep-2.0/share/shared", kind: "h", data: hashB + "-tool-1.0/lib/libt.so"},
		{path: hashA + "-dep-2.0/share/abs", kind: "l", data: "/nix/store/" + hashB + "-tool-1.0/bin/tool"},
		{path: hashC + "-script.sh", kind: "f", data: "echo hi", mode: 0o555},
	})
	return []string{
		filepath.Join(dir, hashC+"-script.sh"),
		filepath.Join(dir, hashB+"-tool-1.0"),
		filepath.Join(dir, hashA+"-dep-2.0"),
	}
}

func TestWriteLayerEntries(t *testing.T) {
	dir := t.TempDir()
	paths := sampleStore(t, dir)
	data, r := write(t, paths, Options{})
	got := readLayer(t, data, r)
	a, b, c := "nix/store/"+hashA+"-dep-2.0", "nix/store/"+hashB+"-tool-1.0", "nix/store/"+hashC+"-script.sh"
	want := []entry{
		{name: "nix/", typ: tar.TypeDir, mode: 0o755},
		{name: "nix/store/", typ: tar.TypeDir, mode: 0o755},
		{name: a + "/", typ: tar.TypeDir, mode: 0o555},
		{name: a + "/share/", typ: tar.TypeDir, mode: 0o555},
		{name: a + "/share/abs", typ: tar.TypeSymlink, mode: 0o777, link: "/nix/store/" + hashB + "-tool-1.0/bin/tool"},
		{name: a + "/share/empty/", typ: tar.TypeDir, mode: 0o555},
		// The first name of a multiply linked file holds the data...
		{name: a + "/share/shared", typ: tar.TypeReg, mode: 0o444, data: "ELF"},
		{name: b + "/", typ: tar.TypeDir, mode: 0o555},
		{name: b + "/bin/", typ: tar.TypeDir, mode: 0o555},
		{name: b + "/bin/tool", typ: tar.TypeReg, mode: 0o555, data: "#!tool"},
		{name: b + "/bin/tool-alias", typ: tar.TypeSymlink, mode: 0o777, link: "tool"},
		{name: b + "/lib/", typ: tar.TypeDir, mode: 0o555},
		// ...the others, in this path or another, link to it.
		{name: b + "/lib/libt.so", typ: tar.TypeLink, mode: 0o444, link: a + "/share/shared"},
		{name: b + "/lib/libt.so.1", typ: tar.TypeLink, mode: 0o444, link: a + "/share/shared"},
		{name: b + "/lib/" + strings.Repeat("x", 120), typ: tar.TypeReg, mode: 0o444, data: "long"},
		{name: b + "/lib.a", typ: tar.TypeReg, mode: 0o444, data: "after lib/ in walk order"},
		{name: c, typ: tar.TypeReg, mode: 0o555, data: "echo hi"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", fmtEntries(got), fmtEntries(want))
	}
}

func fmtEntries(es []entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintln(&b, "  ", e)
	}
	return b.String()
}

func TestWriteLayerDeterministic(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	p1 := sampleStore(t, d1)
	p2 := sampleStore(t, d2) // other directory, other mtimes and inodes
	data1, r1 := write(t, p1, Options{})
	data1b, r1b := write(t, p1, Options{})
	if !bytes.Equal(data1, data1b) || r1 != r1b {
		t.Fatal("same paths twice gave different layers")
	}
	_, r2 := write(t, []string{p2[2], p2[0], p2[1], p2[0] + "/"}, Options{}) // a path twice is once
	if r1 != r2 {
		t.Fatalf("identical content in another directory, other order: %+v vs %+v", r1, r2)
	}
	// The level is part of the identity; the compressor's output does not
	// depend on the number of cores (block boundaries are fixed).
	_, r3 := write(t, p1, Options{Level: 1})
	if r3.Digest == r1.Digest || r3.DiffID != r1.DiffID {
		t.Fatalf("level 1: %+v, level 6: %+v", r3, r1)
	}
}

// TestWriteLayerLarge crosses several compressor blocks and checks the
// output against external gunzip too.
func TestWriteLayerLarge(t *testing.T) {
	dir := t.TempDir()
	var specs []spec
	specs = append(specs, spec{path: hashA + "-big", kind: "d"})
	chunk := bytes.Repeat([]byte("nixport layer data "), 1<<14)
	for i := 0; i < 12; i++ {
		specs = append(specs, spec{path: fmt.Sprintf("%s-big/f%02d", hashA, i), kind: "f", data: fmt.Sprint(i) + string(chunk)})
	}
	mkstore(t, dir, specs)
	paths := []string{filepath.Join(dir, hashA+"-big")}
	data, r := write(t, paths, Options{})
	entries := readLayer(t, data, r)
	if len(entries) != 15 || r.UncompressedSize < 3*blockSize {
		t.Fatalf("%d entries, %d bytes", len(entries), r.UncompressedSize)
	}
	// The compressed bytes do not depend on the number of cores.
	procs := runtime.GOMAXPROCS(1)
	_, r1 := write(t, paths, Options{})
	runtime.GOMAXPROCS(procs)
	if r1 != r {
		t.Fatalf("GOMAXPROCS=1 gave %+v, GOMAXPROCS=%d %+v", r1, procs, r)
	}
	// Golden digests: a layer's digest is its identity in every cache and
	// registry. If this fails after a dependency bump (pgzip, compress) or a
	// Go upgrade (archive/tar), every layer ever built changes digest:
	// decide knowingly, and change Format with it.
	const (
		goldenDigest = "sha256:8da7a0de804bdcfc0c5ad4ca81e2ea1be524ebcf11a4bd0c904fb83e8ace6684"
		goldenDiffID = "sha256:616bd1c73529d2f9d97ef7cffe97145296548781be19219d7e5f55265476b35d"
	)
	if r.Digest != goldenDigest || r.DiffID != goldenDiffID {
		t.Errorf("digest %s diff_id %s, golden %s %s", r.Digest, r.DiffID, goldenDigest, goldenDiffID)
	}
	gz, err := exec.LookPath("gzip")
	if err != nil {
		t.Skip("no gzip on PATH")
	}
	cmd := exec.Command(gz, "-dc")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip -dc: %v", err)
	}
	if sum := sha256.Sum256(out); digest.NewDigestFromBytes(digest.SHA256, sum[:]) != r.DiffID {
		t.Fatal("gzip -dc output does not match diff_id")
	}
}

func TestWriteLayerEmpty(t *testing.T) {
	data, r := write(t, nil, Options{})
	got := readLayer(t, data, r)
	want := []entry{{name: "nix/", typ: tar.TypeDir, mode: 0o755}, {name: "nix/store/", typ: tar.TypeDir, mode: 0o755}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n%s", fmtEntries(got))
	}
}

// failWriter fails once more than n bytes were written.
type failWriter struct{ n int }

var errFull = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteLayerErrors(t *testing.T) {
	dir := t.TempDir()
	paths := sampleStore(t, dir)
	fifo := filepath.Join(dir, hashA+"-fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	mkstore(t, other, []spec{{path: hashC + "-script.sh", kind: "f", data: "other"}})
	tests := []struct {
		name  string
		w     io.Writer
		paths []string
		opts  Options
		want  string
		is    error
	}{
		{name: "missing path", w: io.Discard, paths: []string{filepath.Join(dir, hashA+"-nope")}, want: "archiving " + filepath.Join(dir, hashA+"-nope"), is: os.ErrNotExist},
		{name: "same base name twice", w: io.Discard, paths: []string{paths[0], filepath.Join(other, hashC+"-script.sh")}, want: "both are /nix/store/" + hashC + "-script.sh"},
		{name: "empty path", w: io.Discard, paths: []string{""}, want: "not a store path"},
		{name: "root", w: io.Discard, paths: []string{"/"}, want: "not a store path"},
		{name: "fifo", w: io.Discard, paths: []string{fifo}, want: "unsupported file type"},
		{name: "bad level", w: io.Discard, paths: paths, opts: Options{Level: 10}, want: "gzip level 10"},
		{name: "writer fails early", w: &failWriter{n: 5}, paths: paths, is: errFull},
		{name: "writer fails late", w: &failWriter{n: 100}, paths: paths, is: errFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteLayer(tt.w, tt.paths, tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one containing %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
		})
	}
}

func TestWriteLayerFileChanged(t *testing.T) {
	// A file whose size differs from its Lstat: simulated through the
	// internal writer with a stale FileInfo.
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o444); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		content, want string
	}{{"short", "shrank"}, {"0123456789 and more", "grew"}} {
		if err := os.WriteFile(p, []byte(tc.content), 0o444); err != nil {
			t.Fatal(err)
		}
		lw, err := newLayerWriter(io.Discard, Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = lw.file(p, "/nix/store/x-f", fi, 0o444)
		lw.close(errFull)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.content, err, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	if got := (Options{}).Format(); got != "tar+pgzip1-b1m-6" {
		t.Errorf("Format() = %q", got)
	}
	if (Options{Level: 1}).Format() == (Options{}).Format() {
		t.Error("level not in Format")
	}
	if (Options{}).Format() != (Options{Level: DefaultLevel}).Format() {
		t.Error("0 and DefaultLevel differ")
	}
}

func TestWriteLayerParallel(t *testing.T) {
	paths := sampleStore(t, t.TempDir())
	_, want := write(t, paths, Options{})
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			var buf bytes.Buffer
			r, err := WriteLayer(&buf, paths, Options{})
			if err == nil && r != want {
				err = fmt.Errorf("got %+v, want %+v", r, want)
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
