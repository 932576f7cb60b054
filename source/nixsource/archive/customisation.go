package archive

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
)

// maxMergeDepth bounds how deep directories are merged: deeper than that is
// a symlink loop, and the first package's entry is linked as it is.
const maxMergeDepth = 64

// candidate is one package's entry at some path of the image root.
type candidate struct {
	host  string // where it is read
	image string // where it is in the image: /nix/store/<base>/…
}

// Entry is a file or directory the customisation layer holds of its own,
// not from a package (the nonroot meta-package's /etc/passwd and home
// directory). Its parent directories are the layer's own too: they are
// written as real directories (mode 0755, owned by root) unless listed.
type Entry struct {
	// Path is the absolute path in the image.
	Path string
	// Dir: a directory; else a regular file holding Content.
	Dir      bool
	Mode     int64
	UID, GID int
	Content  []byte
}

// WriteCustomisation writes to w the customisation layer of an image: at the
// image root, the union of the packages' top-level directories (bin, lib,
// share, etc, …) as symlinks into the store, plus /tmp (mode 1777) and the
// layer's own entries (own).
//
// packageOutputs holds, per requested package, its output paths in order.
// Directories merge as Nix's buildEnv and symlinkJoin merge them: an entry
// only one package has becomes a symlink to it; a directory several
// packages have becomes a real directory whose children merge the same way.
// Packages are taken in sorted order (comparing their output path lists),
// so the request order does not change the layer; within a package, its
// outputs in the order given. On a conflict (two entries that are not both
// directories) the first one wins and the others are logged as a warning,
// naming both paths; entries that are the same file (or equal symlinks) are
// no conflict. Outputs that are not directories have nothing to link and are
// skipped (logged). A package's /tmp loses to the layer's own. An own
// entry wins over the packages' entries at its path (a conflict, logged)
// except that an own directory merges with the packages' directories
// there: /etc stays a real directory holding both the packages' etc
// entries and the layer's /etc/passwd.
func WriteCustomisation(w io.Writer, packageOutputs [][]string, own []Entry, opts Options, log logrus.FieldLogger) (Result, error) {
	if log == nil {
		log = logrus.StandardLogger()
	}
	ownEntries, ownChildren, err := ownTree(own)
	if err != nil {
		return Result{}, err
	}
	pkgs := slices.Clone(packageOutputs)
	slices.SortStableFunc(pkgs, slices.Compare)
	var roots []candidate
	seen := map[string]bool{}
	for _, outs := range pkgs {
		for _, out := range outs {
			base := filepath.Base(filepath.Clean(out))
			if out == "" || base == "/" || base == "." || base == ".." {
				return Result{}, fmt.Errorf("customisation layer: %q is not a store path", out)
			}
			if seen[out] {
				continue
			}
			seen[out] = true
			fi, err := os.Stat(out)
			if err != nil {
				return Result{}, fmt.Errorf("customisation layer: %w", err)
			}
			if !fi.IsDir() {
				log.WithField("path", out).Info("customisation layer: package output is not a directory, nothing to link")
				continue
			}
			roots = append(roots, candidate{host: out, image: path.Join(StoreDir, base)})
		}
	}

	lw, err := newLayerWriter(w, opts)
	if err != nil {
		return Result{}, err
	}
	m := merger{lw: lw, log: log, own: ownEntries, ownChildren: ownChildren}
	return lw.close(m.merge("", roots, 0))
}

// ownTree indexes the layer's own entries by path, adding their missing
// parent directories, and lists each directory's own children.
func ownTree(own []Entry) (map[string]Entry, map[string][]string, error) {
	entries := map[string]Entry{}
	children := map[string][]string{}
	add := func(e Entry) {
		entries[e.Path] = e
		parent, name := path.Split(e.Path)
		parent = strings.TrimSuffix(parent, "/")
		children[parent] = append(children[parent], name)
	}
	for _, e := range own {
		p := path.Clean(e.Path)
		if !path.IsAbs(p) || p == "/" || p != e.Path {
			return nil, nil, fmt.Errorf("customisation layer: own entry %q: want a clean absolute path", e.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, nil, fmt.Errorf("customisation layer: own entry %s given twice", p)
		}
		add(e)
	}
	for _, e := range own {
		for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
			if d, ok := entries[dir]; ok {
				if !d.Dir {
					return nil, nil, fmt.Errorf("customisation layer: own entry %s is inside the file %s", e.Path, dir)
				}
				break
			}
			add(Entry{Path: dir, Dir: true, Mode: 0o755})
		}
	}
	return entries, children, nil
}

type merger struct {
	lw  *layerWriter
	log logrus.FieldLogger
	// own are the layer's own entries by image path, ownChildren the
	// names of each directory's own children ("" is the root).
	own         map[string]Entry
	ownChildren map[string][]string
}

// merge writes the merged children of the directories sources at the image
// directory dir ("" for the root).
func (m *merger) merge(dir string, sources []candidate, depth int) error {
	byName := map[string][]candidate{}
	var names []string
	for _, s := range sources {
		entries, err := os.ReadDir(s.host)
		if err != nil {
			return fmt.Errorf("customisation layer: %w", err)
		}
		for _, e := range entries {
			n := e.Name()
			if _, ok := byName[n]; !ok {
				names = append(names, n)
			}
			byName[n] = append(byName[n], candidate{
				host:  filepath.Join(s.host, n),
				image: s.image + "/" + n,
			})
		}
	}
	if dir == "" {
		if _, ok := byName["tmp"]; !ok {
			names = append(names, "tmp")
		}
	}
	for _, n := range m.ownChildren[dir] {
		if _, ok := byName[n]; !ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)

	for _, n := range names {
		target := dir + "/" + n
		cands := byName[n]
		if dir == "" && n == "tmp" {
			for _, c := range cands {
				m.conflict(target, "the layer's own /tmp", c.image)
			}
			if err := m.lw.dir("/tmp", 0o1777); err != nil {
				return err
			}
			continue
		}
		if e, ok := m.own[target]; ok {
			if err := m.writeOwn(e, cands, depth); err != nil {
				return err
			}
			continue
		}
		first := cands[0]
		if len(cands) == 1 {
			if err := m.lw.symlink(target, first.image); err != nil {
				return err
			}
			continue
		}
		if !isDir(first.host) || depth >= maxMergeDepth {
			for _, c := range cands[1:] {
				if !sameEntry(first.host, c.host) {
					m.conflict(target, first.image, c.image)
				}
			}
			if err := m.lw.symlink(target, first.image); err != nil {
				return err
			}
			continue
		}
		var dirs []candidate
		for _, c := range cands {
			if isDir(c.host) {
				dirs = append(dirs, c)
			} else {
				m.conflict(target, first.image, c.image)
			}
		}
		if len(dirs) == 1 {
			if err := m.lw.symlink(target, first.image); err != nil {
				return err
			}
			continue
		}
		if err := m.lw.dir(target, 0o755); err != nil {
			return err
		}
		if err := m.merge(target, dirs, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// writeOwn writes the layer's own entry e, where the packages have
// cands: a file wins over them; a directory merges their directories.
func (m *merger) writeOwn(e Entry, cands []candidate, depth int) error {
	if !e.Dir {
		for _, c := range cands {
			m.conflict(e.Path, "the layer's own "+e.Path, c.image)
		}
		return m.lw.ownFile(e)
	}
	var dirs []candidate
	for _, c := range cands {
		if isDir(c.host) {
			dirs = append(dirs, c)
		} else {
			m.conflict(e.Path, "the layer's own directory "+e.Path, c.image)
		}
	}
	if err := m.lw.ownDir(e); err != nil {
		return err
	}
	if depth >= maxMergeDepth {
		return fmt.Errorf("customisation layer: %s is nested more than %d deep", e.Path, maxMergeDepth)
	}
	return m.merge(e.Path, dirs, depth+1)
}

func (m *merger) conflict(target, chosen, ignored string) {
	m.log.WithFields(logrus.Fields{
		"path":    target,
		"chosen":  chosen,
		"ignored": ignored,
	}).Warn("customisation layer: conflicting package entries, the first package's wins")
}

// isDir reports whether p is a directory or a symlink to one, as buildEnv
// sees it.
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// sameEntry reports whether a and b are no real conflict: the same file, or
// symlinks with the same target.
func sameEntry(a, b string) bool {
	if fa, err := os.Stat(a); err == nil {
		if fb, err := os.Stat(b); err == nil && os.SameFile(fa, fb) {
			return true
		}
	}
	ta, errA := os.Readlink(a)
	tb, errB := os.Readlink(b)
	return errA == nil && errB == nil && ta == tb
}
