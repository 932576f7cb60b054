package nix

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
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
// behind. The directory's name says whose it is (host, pid and the
// process's start time, as a pid alone can be reused), and every driver
// that starts removes those of owners that are dead on its host: Nix then
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

// owner is the process that owns a driver directory.
type owner struct {
	host  string // the host name, with any character but [A-Za-z0-9.] as _
	pid   int
	start uint64 // the process's start time, /proc/PID/stat field 22
}

// dirPattern is the os.MkdirTemp pattern of o's driver directories:
// nixport-nix-PID-START-HOST-RANDOM.
func (o owner) dirPattern() string {
	return fmt.Sprintf("%s%d-%d-%s-*", driverDirPrefix, o.pid, o.start, o.host)
}

// ownerOf reads the owner from a driver directory's name; false for a
// name of another form (an older nixport's, which named no owner).
func ownerOf(name string) (owner, bool) {
	rest, ok := strings.CutPrefix(name, driverDirPrefix)
	if !ok {
		return owner{}, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 4 || f[2] == "" || f[3] == "" {
		return owner{}, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return owner{}, false
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return owner{}, false
	}
	return owner{host: f[2], pid: pid, start: start}, true
}

// thisProcess is the owner of the directories this process makes.
func thisProcess() (owner, error) {
	host, err := os.Hostname()
	if err != nil {
		return owner{}, fmt.Errorf("reading the host name: %w", err)
	}
	pid := os.Getpid()
	start, _, err := processStart(pid)
	if err != nil {
		return owner{}, err
	}
	return owner{host: hostLabel(host), pid: pid, start: start}, nil
}

// hostLabel is a host name as a directory name holds it: only letters,
// digits and dots, so that "-" separates the name's fields.
func hostLabel(host string) string {
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// processStart reads a process's start time (clock ticks after boot,
// field 22 of /proc/PID/stat) and whether it is a zombie (dead, not yet
// reaped). A process that does not exist is an error wrapping
// fs.ErrNotExist.
//
// A minimal "is this owner alive" helper: the build leases have their own
// beside it, to be made one.
func processStart(pid int) (start uint64, zombie bool, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses: count fields after the last ")".
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22; f[0] is field 3
	if err != nil {
		return 0, false, fmt.Errorf("/proc/%d/stat: start time %q: %w", pid, f[19], err)
	}
	return start, f[0] == "Z", nil
}

// dead says whether o is known to be dead: o is a process of this host
// that no longer runs (no such process, a zombie, or another process that
// has since taken its pid). A process of another host, or one whose state
// cannot be read, is not known to be dead.
func (o owner) dead(host string) bool {
	if o.host != host {
		return false
	}
	start, zombie, err := processStart(o.pid)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	return zombie || start != o.start
}

// removeDeadOwners removes the driver directories in dir whose owners are
// dead processes of host self.host, and with them the GC roots those
// processes held. Directories of live processes, of other hosts, and of
// older nixports (which named no owner) are left alone. It returns how
// many it removed; a failure to remove one is logged.
func removeDeadOwners(dir string, self owner, log logrus.FieldLogger) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.WithError(err).WithField("dir", dir).Warn("listing the temporary directory for the GC roots of dead servers")
		return 0
	}
	removed := 0
	for _, e := range entries {
		o, ok := ownerOf(e.Name())
		if !ok || !e.IsDir() || o == self || !o.dead(self.host) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			log.WithError(err).WithField("dir", path).Warn("removing the GC roots of a dead server")
			continue
		}
		removed++
		log.WithFields(logrus.Fields{"dir": path, "pid": o.pid}).Info("removed the GC roots of a server that is no longer running")
	}
	return removed
}
