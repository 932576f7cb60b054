package nix

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/procalive"
)

// GC roots. Every store path a build needs is rooted by the Nix process
// that creates it, before that process exits, so no garbage collection
// (nixport's own or anyone else's) can ever find it unrooted:
//
//   - Resolve: nix-instantiate writes the derivations and a small file in
//     the store that refers to all of them (the resolution, read back as
//     JSON), and --add-root roots that file. The derivations stay alive
//     until the Resolution (the build's plan) is released.
//   - Realise: nix-store --realise --add-root builds the outputs and roots
//     them; their runtime closure stays alive with them until the Image is
//     released, after its layers are archived.
//
// While a Nix process runs, its temporary roots protect what it creates
// and reads; its permanent root is in place before it exits. The roots
// are indirect: a symbolic link in the driver's directory, which Nix
// registers in /nix/var/nix/gcroots/auto. Removing the link (Release, or
// the whole directory when the driver closes) frees the paths.
//
// A server that dies without closing its driver leaves its directory
// behind. The directory's name says whose it is (procalive: pid space,
// pid and start time, as a pid alone can be reused), and every driver
// that starts removes those of owners known to be dead: Nix then
// finds their links in gcroots/auto dangling and ignores (and removes)
// them.

// Roots are GC roots held for a build: a directory of links to store
// paths, removed by Release.
type Roots struct {
	dir string
}

// Release removes the roots; the next garbage collection may delete the
// paths. Safe to call more than once and on nil.
func (r *Roots) Release() error {
	if r == nil || r.dir == "" {
		return nil
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("nix: releasing GC roots %s: %w", r.dir, err)
	}
	return nil
}

// newRoots makes an empty directory for a build's roots.
func (d *Driver) newRoots() (*Roots, error) {
	dir := filepath.Join(d.rootsDir, strconv.FormatInt(d.rootSeq.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nix: creating GC roots directory: %w", err)
	}
	return &Roots{dir: dir}, nil
}

// driverDirPrefix starts the name of every driver's private directory in
// the temporary directory.
const driverDirPrefix = "nixport-nix-"

// removeDeadOwners removes the driver directories in dir whose owners
// (named by procalive.NamePrefix) are known to be dead, and with them the
// GC roots those processes held. Directories of live processes, of other
// pid spaces (other hosts), and of older nixports (which named no owner)
// are left alone. It returns how many it removed; a failure to remove one
// is logged.
func removeDeadOwners(dir string, log logrus.FieldLogger) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.WithError(err).WithField("dir", dir).Warn("listing the temporary directory for the GC roots of dead servers")
		return 0
	}
	removed := 0
	for _, e := range entries {
		owner, ok := procalive.WriterOf(e.Name(), driverDirPrefix)
		if !ok || !e.IsDir() || !procalive.Dead(owner) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			log.WithError(err).WithField("dir", path).Warn("removing the GC roots of a dead server")
			continue
		}
		removed++
		log.WithFields(logrus.Fields{"dir": path, "pid": owner.PID}).Info("removed the GC roots of a server that is no longer running")
	}
	return removed
}
