package archive

import (
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

func stdGzip(w io.Writer, level int) (io.WriteCloser, error) {
	return gzip.NewWriterLevel(w, level)
}

func klauspostGzip(w io.Writer, level int) (io.WriteCloser, error) {
	return kgzip.NewWriterLevel(w, level)
}

// benchSource is where realistic binary data comes from.
const benchSource = "/usr/lib/x86_64-linux-gnu"

// benchStore copies about mb megabytes of shared libraries (files up to
// 8 MB, picked in a fixed pseudo-random order) from benchSource into store
// paths of 25 files each under dir. It returns the paths and the bytes
// copied.
func benchStore(b *testing.B, dir string, mb int) ([]string, int64) {
	b.Helper()
	type file struct {
		path string
		key  [32]byte
	}
	var files []file
	filepath.WalkDir(benchSource, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() <= 8<<20 {
			files = append(files, file{p, sha256.Sum256([]byte(p))})
		}
		return nil
	})
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(string(a.key[:]), string(b.key[:])) })
	var paths []string
	var total int64
	for i, f := range files {
		if total >= int64(mb)*1000*1000 {
			break
		}
		if i%25 == 0 {
			p := filepath.Join(dir, fmt.Sprintf("%032x-pkg%d-1.0", i, i/25))
			if err := os.MkdirAll(filepath.Join(p, "lib"), 0o755); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, p)
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(paths[len(paths)-1], "lib", filepath.Base(f.path)), data, 0o444); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	if total < int64(mb)*1000*1000/2 {
		b.Skipf("only %d bytes of data in %s", total, benchSource)
	}
	return paths, total
}

// BenchmarkWriteLayer archives ~100 MB of shared libraries (set
// NIXPORT_BENCH_MB for another size) with each gzip implementation at the
// default level, beside `tar -c PATHS | pigz -p 2` of the same paths.
// MB/s counts file bytes; ratio is compressed/uncompressed size.
func BenchmarkWriteLayer(b *testing.B) {
	mb := 100
	if v, err := strconv.Atoi(os.Getenv("NIXPORT_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	dir := b.TempDir()
	paths, total := benchStore(b, dir, mb)
	for _, c := range []struct {
		name string
		c    compressor
	}{
		{"pgzip", pgzipCompressor},
		{"klauspost-gzip", klauspostGzip},
		{"stdlib-gzip", stdGzip},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(total)
			var r Result
			for b.Loop() {
				var err error
				if r, err = WriteLayer(io.Discard, paths, Options{compressor: c.c}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.Size)/float64(r.UncompressedSize), "ratio")
		})
	}
	b.Run("tar|pigz-p2", func(b *testing.B) {
		if _, err := exec.LookPath("pigz"); err != nil {
			b.Skip("no pigz")
		}
		var names []string
		for _, p := range paths {
			names = append(names, filepath.Base(p))
		}
		b.SetBytes(total)
		for b.Loop() {
			cmd := exec.Command("sh", "-c", `tar -c "$@" | pigz -p 2 > /dev/null`, "sh")
			cmd.Args = append(cmd.Args, names...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

// BenchmarkWriteLayerSmall measures the fixed cost of a layer: one store
// path holding one small file, as most paths of a large closure are.
func BenchmarkWriteLayerSmall(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "00000000000000000000000000000000-small-1.0")
	if err := os.MkdirAll(filepath.Join(p, "lib"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "lib", "libsmall.so"), make([]byte, 16<<10), 0o444); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WriteLayer(io.Discard, []string{p}, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
