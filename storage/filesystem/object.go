package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/nixport/nixport/storage"
)

// validateObjectName is storage.ValidObjectName, shared by every backend so
// that a name one accepts, all accept. Such a name is its own clean relative
// path, so it can only name something under the objects directory. Errors
// wrap storage.ErrInvalidName.
func validateObjectName(name string) error { return storage.ValidObjectName(name) }

// maxObjectNameLen bounds object names (see storage.MaxObjectNameLen).
const maxObjectNameLen = storage.MaxObjectNameLen

// objectPath returns the path, relative to the root, of a valid object name.
func objectPath(name string) string { return objectDir + "/" + name }

// PutObject implements storage.Backend. The new value replaces the old one
// with a rename, so a reader sees either the old or the new value, whole.
func (b *Backend) PutObject(ctx context.Context, name string, data []byte) error {
	if err := validateObjectName(name); err != nil {
		return err
	}
	if err := b.placeObject(ctx, name, data, b.root.Rename); err != nil {
		return fmt.Errorf("storing object %s: %w", name, err)
	}
	return nil
}

// CreateObject implements storage.Backend. The object is created with a hard
// link, which fails if the name exists; of several concurrent creators,
// exactly one succeeds.
func (b *Backend) CreateObject(ctx context.Context, name string, data []byte) error {
	if err := validateObjectName(name); err != nil {
		return err
	}
	err := b.placeObject(ctx, name, data, b.root.Link)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating object %s: %w", name, storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("creating object %s: %w", name, err)
	}
	return nil
}

// placeObject writes data to a temporary file and gives it the object's name
// with place (rename or link), creating parent directories as needed.
func (b *Backend) placeObject(ctx context.Context, name string, data []byte, place func(oldname, newname string) error) error {
	temp, err := b.writeTemp(ctx, "object", data)
	if err != nil {
		return err
	}
	// The temporary file is not needed once it has the object's name (after
	// a link) or has been moved (after a rename: then it is already gone).
	defer b.removeQuietly(temp)

	final := objectPath(name)
	parent := path.Dir(final)
	// A concurrent DeleteObject may remove a parent directory it just
	// emptied between our MkdirAll and place: then recreate it and retry.
	const attempts = 5
	for attempt := 1; ; attempt++ {
		if err = b.root.MkdirAll(parent, dirPerm); err == nil {
			err = place(temp, final)
		}
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == attempts {
			break
		}
	}
	if err != nil {
		if conflict := b.nameConflict(name); conflict != nil {
			return conflict
		}
		return err
	}
	return b.syncDir(parent)
}

// nameConflict explains a failure to place an object that comes from the
// tree itself: a directory cannot hold an object and other objects under
// one name ("a" and "a/b"), which a flat store such as GCS could. The error
// deliberately does not wrap fs.ErrExist, so CreateObject does not report
// storage.ErrExists for an object that does not exist.
func (b *Backend) nameConflict(name string) error {
	if fi, err := b.root.Lstat(objectPath(name)); err == nil && fi.IsDir() {
		return fmt.Errorf("other objects are stored under %s/, so it cannot be an object itself", name)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if fi, err := b.root.Lstat(objectPath(dir)); err == nil && fi.Mode().IsRegular() {
			return fmt.Errorf("%s is an object, so no object can be stored under %s/", dir, dir)
		}
	}
	return nil
}

// GetObject implements storage.Backend.
func (b *Backend) GetObject(ctx context.Context, name string) ([]byte, error) {
	if err := validateObjectName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := b.root.Open(objectPath(name))
	if err != nil {
		return nil, objectError("reading", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, objectError("reading", name, err)
	}
	if fi.IsDir() {
		// Only a prefix of other objects, not an object itself.
		return nil, fmt.Errorf("reading object %s: %w", name, storage.ErrNotFound)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, objectError("reading", name, err)
	}
	return data, nil
}

// DeleteObject implements storage.Backend. It also removes the parent
// directories the deletion leaves empty, so a deleted object leaves no trace
// that could stop its prefix from later being used as an object name.
func (b *Backend) DeleteObject(ctx context.Context, name string) error {
	if err := validateObjectName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := objectPath(name)
	fi, err := b.root.Lstat(final)
	switch {
	case isMissing(err):
		return nil
	case err != nil:
		return fmt.Errorf("deleting object %s: %w", name, err)
	case fi.IsDir():
		return nil // a prefix of other objects, not an object
	}
	if err := b.root.Remove(final); err != nil && !isMissing(err) {
		return fmt.Errorf("deleting object %s: %w", name, err)
	}
	parent := path.Dir(final)
	if err := b.syncDir(parent); err != nil && !isMissing(err) {
		return fmt.Errorf("deleting object %s: %w", name, err)
	}
	// Remove fails on a directory that is not empty, which ends the climb.
	for dir := parent; dir != objectDir; dir = path.Dir(dir) {
		if b.root.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// ListObjects implements storage.Backend. prefix is "" for every object, or
// a valid object name followed by "/".
func (b *Backend) ListObjects(ctx context.Context, prefix string) ([]string, error) {
	if err := storage.ValidObjectPrefix(prefix); err != nil {
		return nil, err
	}
	dir := objectDir
	if prefix != "" {
		dir = objectPath(strings.TrimSuffix(prefix, "/"))
	}
	var names []string
	err := fs.WalkDir(b.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if isMissing(err) {
				return nil // no such prefix, or removed while we walk
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case p == dir && !d.IsDir():
			return fs.SkipAll // the prefix names an object, not a directory
		case d.Type().IsRegular():
			names = append(names, strings.TrimPrefix(p, objectDir+"/"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing objects under %q: %w", prefix, err)
	}
	// The walk is sorted per directory, which is not the same as sorted
	// names: "a.b" sorts before "a/c", but the walk visits "a/" first.
	slices.Sort(names)
	return names, nil
}

// isMissing reports whether err means the path does not exist, including
// ENOTDIR: a component of the path is a file, so nothing can be beneath it.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// objectError wraps a failed file operation on an object, mapping "no such
// file" to storage.ErrNotFound.
func objectError(op, name string, err error) error {
	if isMissing(err) {
		return fmt.Errorf("%s object %s: %w", op, name, storage.ErrNotFound)
	}
	return fmt.Errorf("%s object %s: %w", op, name, err)
}
