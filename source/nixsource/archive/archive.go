// Package archive writes image layers: deterministic, gzip-compressed tar
// archives of Nix store paths, streamed in one pass.
//
// It exists because a layer's digest is its identity: clients and storage
// share a layer between images only when the same store paths give the same
// bytes on any machine, at any time. So an archive here holds nothing of the
// host: entries are sorted, every mtime is fixed (epoch + 1 s), owners are
// uid/gid 0 without names, and store paths are named by their place in the
// image store (/nix/store/<base name>) whatever directory they are read
// from. A layer can be large, so it is never held in memory: the tar is
// written, hashed (diff_id), compressed, hashed again (digest) and counted
// while it streams to its destination.
//
// The customisation layer (WriteCustomisation) is the small layer on top
// that makes an image usable: the packages' top-level directories linked at
// the image root, merged as Nix's buildEnv/symlinkJoin merge them, plus /tmp
// and the entries the image asks for of its own (Entry: the nonroot user's
// /etc/passwd and home directory, the one place an owner other than root
// appears).
package archive

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// StoreDir is the Nix store directory inside images.
const StoreDir = "/nix/store"

// ModTime is the modification time of every entry: fixed, so that layers
// are reproducible. One second after the epoch, because some tools treat a
// zero time as unset.
var ModTime = time.Unix(1, 0).UTC()

// Result describes a written layer.
type Result struct {
	// Digest and Size are those of the compressed blob, as written to w.
	Digest digest.Digest
	Size   int64
	// DiffID and UncompressedSize are those of the tar inside.
	DiffID           digest.Digest
	UncompressedSize int64
}

// Options tune how layers are written.
type Options struct {
	// Level is the gzip compression level, from 1 (fastest) to 9 (smallest);
	// 0 means DefaultLevel. The level is part of a layer's identity: the same
	// paths at another level give another digest.
	Level int

	// compressor replaces the default gzip implementation (benchmarks).
	compressor compressor
}

func (o Options) level() (int, error) {
	switch {
	case o.Level == 0:
		return DefaultLevel, nil
	case o.Level < 1 || o.Level > 9:
		return 0, fmt.Errorf("gzip level %d: want 1 to 9", o.Level)
	}
	return o.Level, nil
}

// Format names how layers are written with these options: compressor,
// version and level. A cache of built layers keyed by store paths should
// include it, so that a change of compressor or level does not mix digests.
func (o Options) Format() string {
	l, err := o.level()
	if err != nil {
		return fmt.Sprintf("invalid-level-%d", o.Level)
	}
	return fmt.Sprintf("tar+%s-%d", compressorName, l)
}

// WriteLayer writes to w the layer of storePaths: a gzip-compressed tar
// holding the /nix and /nix/store directories, then each store path (as
// /nix/store/<base name of the path>) with everything under it. Each path
// is read from the host path given, so a store copied elsewhere gives the
// same layer. Entries come depth first, names in byte order; regular files,
// directories and symlinks keep their permission bits (setuid, setgid and
// sticky bits are dropped: the Nix store never has them); a file that
// shares its inode with an earlier file of the layer is a hard link to it.
// Devices, fifos and sockets, which no store holds, are an error.
func WriteLayer(w io.Writer, storePaths []string, opts Options) (Result, error) {
	type root struct{ host, name string }
	roots := make([]root, 0, len(storePaths))
	for _, p := range storePaths {
		base := filepath.Base(filepath.Clean(p))
		if p == "" || base == "/" || base == "." || base == ".." {
			return Result{}, fmt.Errorf("archiving %q: not a store path", p)
		}
		roots = append(roots, root{host: filepath.Clean(p), name: path.Join(StoreDir, base)})
	}
	slices.SortFunc(roots, func(a, b root) int { return strings.Compare(a.name, b.name) })
	roots = slices.CompactFunc(roots, func(a, b root) bool { return a == b }) // a path given twice
	for i := 1; i < len(roots); i++ {
		if roots[i].name == roots[i-1].name {
			return Result{}, fmt.Errorf("archiving %s and %s: both are %s in the image", roots[i-1].host, roots[i].host, roots[i].name)
		}
	}

	lw, err := newLayerWriter(w, opts)
	if err != nil {
		return Result{}, err
	}
	err = lw.dir("/nix", 0o755)
	if err == nil {
		err = lw.dir(StoreDir, 0o755)
	}
	for _, r := range roots {
		if err != nil {
			break
		}
		var fi fs.FileInfo
		if fi, err = os.Lstat(r.host); err != nil {
			err = fmt.Errorf("archiving %s: %w", r.host, err)
			break
		}
		err = lw.tree(r.host, r.name, fi)
	}
	return lw.close(err)
}

// layerWriter is the one-pass pipeline: tar → sha256 (diff_id) → gzip →
// sha256 (digest) → w.
type layerWriter struct {
	tw       *tar.Writer
	gz       io.WriteCloser
	raw, out *hashCounter
	inodes   map[inode]string // first name of a multiply linked file
	buf      []byte
}

func newLayerWriter(w io.Writer, opts Options) (*layerWriter, error) {
	level, err := opts.level()
	if err != nil {
		return nil, err
	}
	newGzip := opts.compressor
	if newGzip == nil {
		newGzip = defaultCompressor
	}
	out := &hashCounter{w: w, h: sha256.New()}
	gz, err := newGzip(out, level)
	if err != nil {
		return nil, fmt.Errorf("starting gzip: %w", err)
	}
	raw := &hashCounter{w: gz, h: sha256.New()}
	return &layerWriter{
		tw:     tar.NewWriter(raw),
		gz:     gz,
		raw:    raw,
		out:    out,
		inodes: make(map[inode]string),
		buf:    make([]byte, 256<<10),
	}, nil
}

// close finishes the archive, or, when err is not nil, releases the
// compressor and returns err.
func (lw *layerWriter) close(err error) (Result, error) {
	if err != nil {
		lw.gz.Close() // stop the compressor's goroutines; err is what matters
		return Result{}, err
	}
	if err := lw.tw.Close(); err != nil {
		lw.gz.Close()
		return Result{}, fmt.Errorf("finishing tar: %w", err)
	}
	if err := lw.gz.Close(); err != nil {
		return Result{}, fmt.Errorf("finishing gzip: %w", err)
	}
	return Result{
		Digest:           digest.NewDigest(digest.SHA256, lw.out.h),
		Size:             lw.out.n,
		DiffID:           digest.NewDigest(digest.SHA256, lw.raw.h),
		UncompressedSize: lw.raw.n,
	}, nil
}

// header returns the fixed part of every header. name is an absolute image
// path; the tar holds it relative, as layers conventionally do.
func header(typ byte, name string, mode int64) *tar.Header {
	name = strings.TrimPrefix(name, "/")
	if typ == tar.TypeDir {
		name += "/"
	}
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		ModTime:  ModTime,
		Format:   tar.FormatPAX, // USTAR headers, PAX records only for long names
	}
}

func (lw *layerWriter) dir(name string, mode int64) error {
	if err := lw.tw.WriteHeader(header(tar.TypeDir, name, mode)); err != nil {
		return fmt.Errorf("archiving %s: %w", name, err)
	}
	return nil
}

// ownDir writes a directory of the customisation layer's own, with its
// owner.
func (lw *layerWriter) ownDir(e Entry) error {
	h := header(tar.TypeDir, e.Path, e.Mode)
	h.Uid, h.Gid = e.UID, e.GID
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("archiving %s: %w", e.Path, err)
	}
	return nil
}

// ownFile writes a file of the customisation layer's own.
func (lw *layerWriter) ownFile(e Entry) error {
	h := header(tar.TypeReg, e.Path, e.Mode)
	h.Uid, h.Gid = e.UID, e.GID
	h.Size = int64(len(e.Content))
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("archiving %s: %w", e.Path, err)
	}
	if _, err := lw.tw.Write(e.Content); err != nil {
		return fmt.Errorf("archiving %s: %w", e.Path, err)
	}
	return nil
}

func (lw *layerWriter) symlink(name, target string) error {
	h := header(tar.TypeSymlink, name, 0o777)
	h.Linkname = target
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("archiving %s: %w", name, err)
	}
	return nil
}

// tree archives host (whose Lstat is fi) as name, and everything under it
// in sorted order.
func (lw *layerWriter) tree(host, name string, fi fs.FileInfo) error {
	mode := int64(fi.Mode().Perm())
	switch fi.Mode().Type() {
	case fs.ModeDir:
		if err := lw.dir(name, mode); err != nil {
			return err
		}
		entries, err := os.ReadDir(host) // sorted by name
		if err != nil {
			return fmt.Errorf("archiving %s: %w", host, err)
		}
		for _, e := range entries {
			child := filepath.Join(host, e.Name())
			cfi, err := e.Info()
			if err != nil {
				return fmt.Errorf("archiving %s: %w", child, err)
			}
			if err := lw.tree(child, name+"/"+e.Name(), cfi); err != nil {
				return err
			}
		}
		return nil
	case fs.ModeSymlink:
		target, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("archiving %s: %w", host, err)
		}
		return lw.symlink(name, target)
	case 0:
		return lw.file(host, name, fi, mode)
	}
	return fmt.Errorf("archiving %s: unsupported file type %v (a store holds only files, directories and symlinks)", host, fi.Mode().Type())
}

func (lw *layerWriter) file(host, name string, fi fs.FileInfo, mode int64) error {
	if ino, ok := inodeOf(fi); ok {
		if first, seen := lw.inodes[ino]; seen {
			h := header(tar.TypeLink, name, mode)
			h.Linkname = strings.TrimPrefix(first, "/")
			if err := lw.tw.WriteHeader(h); err != nil {
				return fmt.Errorf("archiving %s: %w", host, err)
			}
			return nil
		}
		lw.inodes[ino] = name
	}
	f, err := os.Open(host)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", host, err)
	}
	defer f.Close()
	h := header(tar.TypeReg, name, mode)
	h.Size = fi.Size()
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("archiving %s: %w", host, err)
	}
	// Copy exactly the size announced; a file that changed size while being
	// read is an error, never a corrupt archive.
	n, err := io.CopyBuffer(onlyWriter{lw.tw}, io.LimitReader(f, fi.Size()), lw.buf)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", host, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("archiving %s: file shrank from %d to %d bytes while being read", host, fi.Size(), n)
	}
	if extra, _ := f.Read(lw.buf[:1]); extra > 0 {
		return fmt.Errorf("archiving %s: file grew while being read", host)
	}
	return nil
}

// onlyWriter hides every method but Write, so that io.CopyBuffer uses its
// buffer instead of a ReadFrom of the tar writer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// hashCounter passes writes on to w, hashing and counting them.
type hashCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hc *hashCounter) Write(p []byte) (int, error) {
	n, err := hc.w.Write(p)
	hc.h.Write(p[:n])
	hc.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}
