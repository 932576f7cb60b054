// Package filesystem is nixport's default storage backend: blobs and named
// objects kept in a directory tree on a local (or mounted) filesystem.
//
// It exists so that a single machine can run the registry with nothing but a
// disk, and so that blob downloads cost the kernel a sendfile rather than the
// process a copy. The layout under the root is
//
//	blobs/sha256/<hex>        blob content, immutable once present
//	blobs/sha256/<hex>.type   the blob's media type, written before the blob
//	objects/<name>            small named objects (caches, tag index)
//	leases/                   lease records and their lock files (lease.go)
//	tmp/                      files being written, and blobs being deleted;
//	                          same filesystem as the rest
//
// A blob's modification time is when it was last written or refreshed
// (RefreshBlob sets it to now), which the garbage collector compares with
// its cutoff; DeleteBlob first renames the blob into tmp/ and only then
// looks at that time again, so a refresh either lands before the rename
// (and is seen) or finds no blob (and its writer stores the blob again).
//
// Every file is written under tmp/ first, fsynced, and only then given its
// final name with a single atomic step (link for create-if-absent, rename for
// replace), followed by an fsync of the directory. A reader therefore sees
// either nothing or the whole file, and a crash leaves at most stray files in
// tmp/. A temporary file's name holds its writer (procalive.NamePrefix): New
// removes at once those whose writer is known dead (a crashed server of this
// machine), and the others once they are an hour old (a writer of another
// machine sharing the directory, or a name of an older server).
//
// All file access goes through an os.Root opened on the root directory, so on
// top of the strict validation of object names, the kernel refuses any path
// that would resolve (through ".." or a planted symbolic link) outside it.
package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/storage"
)

// Directories under the root, as slash-separated paths relative to it (the
// form os.Root expects).
const (
	blobDir   = "blobs/sha256"
	objectDir = "objects"
	tempDir   = "tmp"
)

// Permissions of what the backend creates, before the umask. Files are
// world-readable so that a separate process (a sidecar web server, a backup
// job) may read the store; nothing is executable.
const (
	dirPerm  fs.FileMode = 0o755
	filePerm fs.FileMode = 0o644
)

// staleTempAge is how old a file in tmp/ whose writer is not known dead
// must be before New treats it as the leftover of a crashed writer. A live
// writer touches its file on every write, so only a writer idle for this
// long could lose its file.
const staleTempAge = time.Hour

// Backend stores blobs and objects under one directory. It is safe for
// concurrent use, including by several processes sharing the directory.
type Backend struct {
	dir  string   // absolute path of the root, for logs and errors
	root *os.Root // every file operation goes through this
	log  logrus.FieldLogger
}

var _ storage.Backend = (*Backend)(nil)

// New returns a backend storing under dir, creating the directory and its
// layout if missing, and removing temporary files that a crashed writer left
// behind. A nil log discards log output.
func New(dir string, log logrus.FieldLogger) (*Backend, error) {
	if log == nil {
		discard := logrus.New()
		discard.Out = io.Discard
		log = discard
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("filesystem storage: resolving %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("filesystem storage: creating root: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("filesystem storage: opening root: %w", err)
	}
	b := &Backend{
		dir:  abs,
		root: root,
		log:  log.WithFields(logrus.Fields{"backend": "filesystem", "root": abs}),
	}
	for _, sub := range []string{blobDir, objectDir, tempDir} {
		if err := root.MkdirAll(sub, dirPerm); err != nil {
			root.Close()
			return nil, fmt.Errorf("filesystem storage: creating %s: %w", filepath.Join(abs, sub), err)
		}
	}
	b.removeStaleTemps(time.Now())
	return b, nil
}

// Name implements storage.Backend.
func (b *Backend) Name() string { return "filesystem" }

// Dir returns the absolute path of the backend's root directory.
func (b *Backend) Dir() string { return b.dir }

// Close releases the root directory handle. The backend must not be used
// afterwards.
func (b *Backend) Close() error { return b.root.Close() }

// removeStaleTemps deletes the files in tmp/ whose writer is known dead,
// and the others last modified before now minus staleTempAge. Failures are
// logged, not returned: leftovers waste space but never affect
// correctness, so they must not stop the registry starting.
func (b *Backend) removeStaleTemps(now time.Time) {
	entries, err := fs.ReadDir(b.root.FS(), tempDir)
	if err != nil {
		b.log.WithError(err).Warn("listing temporary files")
		return
	}
	for _, entry := range entries {
		info, err := entry.Info()
		if err != nil {
			continue // removed meanwhile
		}
		age := now.Sub(info.ModTime())
		deadWriter := tempWriterDead(entry.Name())
		if !deadWriter && age < staleTempAge {
			continue
		}
		name := path.Join(tempDir, entry.Name())
		log := b.log.WithFields(logrus.Fields{"file": name, "age": age.Round(time.Second).String(), "writer_dead": deadWriter})
		if err := b.root.RemoveAll(name); err != nil {
			log.WithError(err).Warn("removing stale temporary file")
			continue
		}
		log.Info("removed stale temporary file")
	}
}

// tempWriterDead says whether the temporary file called name (createTemp's
// "kind-writer-random") was written by a process known to have died.
func tempWriterDead(name string) bool {
	kind, _, ok := strings.Cut(name, "-")
	return ok && procalive.DeadWriter(name, kind+"-")
}

// createTemp creates a new, empty file in tmp/ and returns it with its name
// relative to the root: "kind-writer-random", where writer is this process
// (procalive.NamePrefix), so that a later New can tell whether it died.
// os.CreateTemp is not used because it fixes the mode at 0600, and the file
// keeps its mode when it is published.
func (b *Backend) createTemp(kind string) (*os.File, string, error) {
	name := tempDir + "/" + procalive.NamePrefix(kind+"-") + rand.Text()
	f, err := b.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return nil, "", fmt.Errorf("creating temporary file: %w", err)
	}
	return f, name, nil
}

// writeTemp writes data to a new temporary file, fsyncs and closes it, and
// returns its name relative to the root.
func (b *Backend) writeTemp(ctx context.Context, kind string, data []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	f, name, err := b.createTemp(kind)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		b.removeQuietly(name)
		return "", fmt.Errorf("writing temporary file: %w", err)
	}
	return name, nil
}

// removeQuietly removes a file whose loss matters to nobody (a temporary
// file after failure, or after it was linked into place). A failure is only
// logged: the file is at worst collected by the next New.
func (b *Backend) removeQuietly(name string) {
	if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		b.log.WithError(err).WithField("file", name).Warn("removing temporary file")
	}
}

// syncDir fsyncs a directory so that names just created or renamed in it
// survive a crash.
func (b *Backend) syncDir(dir string) error {
	d, err := b.root.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		// EINVAL: the filesystem cannot sync directories (some network
		// filesystems); nothing more can be done there.
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
