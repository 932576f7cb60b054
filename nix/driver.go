// Package nix is nixport's only contact with Nix: the .nix files it
// evaluates (embedded in the binary) and a driver of the Nix command-line
// tools that turns package names into a realised runtime closure.
//
// It exists so that the rest of nixport never runs or parses Nix. An image
// costs exactly three Nix processes whatever the number of packages:
//
//	Resolve  nix-instantiate --eval: every name to a derivation and the
//	         outputs to install; every missing name reported together
//	Realise  nix-store --realise: build or substitute them all, with GC
//	         roots so a garbage collection cannot race the image build
//	         (Resolve roots the derivations likewise; see gcroots.go)
//	Closure  nix path-info --json --recursive: the runtime closure as a
//	         plain Go graph (paths, references, NAR sizes and hashes)
//
// Build does all three. Names, a fourth (nix show-derivation), names every
// path of a closure for an image's SBOM: it runs once per image rendered,
// never for an image found in the caches.
//
// Request text reaches Nix only as data: names and
// tag are JSON inside --argstr arguments, never part of an expression, and
// the driver checks them against a strict pattern first (ValidName).
//
// Every process runs in a process group of its own under a deadline
// (Options.Timeout, NIX_TIMEOUT): when it passes, or the caller's context
// ends, the group gets SIGTERM, on which Nix stops its builders (they run
// as nixbld users in sessions of their own, beyond a group kill) and exits;
// SIGKILL follows after a grace period. Nix is configured through
// NIX_CONFIG, never through /etc/nix: no substituter unless configured (so
// it works offline), no sandbox (Debian's Nix cannot use one), and a
// one-second lock poll for concurrent builds of one derivation.
//
// Errors meant for a registry client are *errcode.Error: MANIFEST_UNKNOWN
// for missing packages; BUILD_FAILED (a 4xx, so that clients show the
// message) when the package set fails to evaluate or refuses a package
// (Nix's first meaningful error line), when a package fails to build (the
// packages that failed and the last lines of the build output) and when a
// Nix step runs past NIX_TIMEOUT (the message names the limit), and when
// the package set needs a newer Nix than the one running (its
// lib/minver.nix; the message names both versions: minver.go). The log
// gets the tail of Nix's stderr. A step stopped because its caller's
// context ended returns an error wrapping ctx.Err(): the caller knows why.
//
// The package set comes from config.PackageSource: the offline test set
// embedded here (testpkgs/, SourceBuiltin), a local directory, a git
// repository or a nixpkgs channel; see CheckTag for which tags can name a
// version of each, and Pinned for which tags are fixed.
package nix

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/procrun"
)

// The resolver evaluated for every image, and the offline test package set
// (SourceBuiltin). testdata/pkgs in the repository is a symlink to
// testpkgs/: Go cannot embed from outside the package directory.
//
//go:embed resolve.nix
var resolveNix []byte

//go:embed testpkgs
var testPkgs embed.FS

// DefaultTimeout is the deadline of one Nix process when Options.Timeout
// is zero: NIX_TIMEOUT's default.
const DefaultTimeout = 60 * time.Second

// killGrace is how long a process may take to exit after SIGTERM (Nix
// stops its builders first) before it is killed.
const killGrace = procrun.DefaultGrace

// Options configure a Driver.
type Options struct {
	// Source is the package set. The zero value is SourceBuiltin.
	Source config.PackageSource
	// Timeout bounds every Nix process (NIX_TIMEOUT); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Substituters are binary caches to use; nil or empty means none:
	// Nix never touches the network except to fetch a git or channel
	// source.
	Substituters []string
	// NixConfig holds extra nix.conf lines (e.g. trusted-public-keys for
	// the substituters, max-jobs), appended to the driver's own settings.
	NixConfig string
	// Log receives one entry per Nix process; nil means logrus's standard
	// logger.
	Log logrus.FieldLogger
	// OnProcess, if set, is called with the command line and process id of
	// every process right after it starts (Nix, and git for a path source
	// that is a git checkout). Tests use it to check what reaches Nix and
	// git and to find process groups.
	OnProcess func(argv []string, pid int)
}

// Driver runs Nix for nixport. It is safe for concurrent use; each call
// starts its own Nix processes. Close removes its private files.
type Driver struct {
	opts        Options
	log         logrus.FieldLogger
	env         []string
	dir         string // private temporary directory
	resolveFile string // dir/resolve.nix
	pkgsDir     string // the package set directory, for builtin and path sources
	checkout    string // a path source that is a git checkout: its directory
	rootsDir    string // GC roots of plans and images being built
	procs       atomic.Int64
	rootSeq     atomic.Int64
	minver      minverState // the Nix version and what package sets need of it (minver.go)
}

// New checks the options, finds the Nix tools on PATH and unpacks the
// embedded .nix files (and, for SourceBuiltin, the test package set) into a
// private temporary directory.
func New(opts Options) (*Driver, error) {
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("nix: negative timeout %s", opts.Timeout)
	}
	if opts.Source.Kind == "" {
		opts.Source.Kind = config.SourceBuiltin
	}
	log := opts.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	for _, tool := range []string{"nix-instantiate", "nix-store", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("nix: %s is not on PATH (install Nix, e.g. Debian's nix-bin): %w", tool, err)
		}
	}
	for _, s := range opts.Substituters {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("nix: invalid substituter %q", s)
		}
	}
	d := &Driver{opts: opts, log: log.WithField("component", "nix")}
	d.env = nixEnv(os.Environ(), opts)

	switch opts.Source.Kind {
	case config.SourceBuiltin:
	case config.SourcePath:
		abs, err := filepath.Abs(opts.Source.Value)
		if err != nil {
			return nil, fmt.Errorf("nix: package set path %q: %w", opts.Source.Value, err)
		}
		if _, err := os.Stat(filepath.Join(abs, "default.nix")); err != nil {
			return nil, fmt.Errorf("nix: package set path %q holds no default.nix: %w", abs, err)
		}
		d.pkgsDir = abs
		d.checkout = findCheckout(abs, d.log)
	case config.SourceGit, config.SourceChannel:
		if opts.Source.Value == "" {
			return nil, fmt.Errorf("nix: the %s source needs a value", opts.Source.Kind)
		}
	default:
		return nil, fmt.Errorf("nix: unknown package source kind %q", opts.Source.Kind)
	}

	// The directory names its owner, so that a later driver can tell
	// whether it is dead and remove the GC roots it left (see gcroots.go).
	dir, err := os.MkdirTemp("", procalive.NamePrefix(driverDirPrefix)+"*")
	if err != nil {
		return nil, fmt.Errorf("nix: creating the driver's directory: %w", err)
	}
	removeDeadOwners(filepath.Dir(dir), d.log)
	d.dir = dir
	d.resolveFile = filepath.Join(dir, "resolve.nix")
	d.rootsDir = filepath.Join(dir, "gcroots")
	if err := d.unpack(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return d, nil
}

func (d *Driver) unpack() error {
	if err := os.WriteFile(d.resolveFile, resolveNix, 0o444); err != nil {
		return fmt.Errorf("nix: writing resolve.nix: %w", err)
	}
	if err := os.Mkdir(d.rootsDir, 0o755); err != nil {
		return fmt.Errorf("nix: creating the GC roots directory: %w", err)
	}
	if d.opts.Source.Kind != config.SourceBuiltin {
		return nil
	}
	d.pkgsDir = filepath.Join(d.dir, "testpkgs")
	err := fs.WalkDir(testPkgs, "testpkgs", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(d.dir, filepath.FromSlash(p))
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := testPkgs.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o444)
	})
	if err != nil {
		return fmt.Errorf("nix: unpacking the builtin package set: %w", err)
	}
	return nil
}

// Close removes the driver's private directory, including the GC roots of
// images not yet released. Calls in flight fail.
func (d *Driver) Close() error {
	if d.dir == "" {
		return nil
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("nix: removing %s: %w", d.dir, err)
	}
	return nil
}

// ProcessCount is the number of Nix processes the driver has started.
func (d *Driver) ProcessCount() int64 { return d.procs.Load() }

// Source is the configured package set.
func (d *Driver) Source() config.PackageSource { return d.opts.Source }

// nixEnv is the environment of every Nix process: the server's, with
// NIX_CONFIG replaced by the driver's settings.
func nixEnv(environ []string, opts Options) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "NIX_CONFIG=") {
			env = append(env, kv)
		}
	}
	conf := []string{
		// Empty: offline, unless caches are configured.
		"substituters = " + strings.Join(opts.Substituters, " "),
		// Debian's Nix cannot sandbox; the built-in default (true) makes
		// every /bin/sh builder fail.
		"sandbox = false",
		"experimental-features = nix-command",
		// A second build of a derivation being built waits on its lock,
		// polling it this often (default 5 s).
		"build-poll-interval = 1",
	}
	if extra := strings.TrimSpace(opts.NixConfig); extra != "" {
		conf = append(conf, extra)
	}
	return append(env, "NIX_CONFIG="+strings.Join(conf, "\n"))
}

// Version runs nix-store --version and returns what it prints ("nix-store
// (Nix) 2.8.0"): that Nix runs at all, for readiness checks. It is not
// counted among the builds' Nix processes.
func (d *Driver) Version(ctx context.Context) (string, error) {
	res, err := d.exec(ctx, d.log, "check", d.dir, "nix-store", "--version")
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("nix-store --version exited with %d: %s", res.ExitCode, strings.TrimSpace(res.Tail))
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}
