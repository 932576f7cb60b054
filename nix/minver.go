package nix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
)

// The Nix a package set needs. nixpkgs names the oldest Nix that can
// evaluate it in lib/minver.nix (a Nix string such as "2.18"), and its
// default.nix aborts on an older Nix with a long message that says nothing
// of the Nix actually running. nixport answers such a pull with one
// BUILD_FAILED naming both versions and the revision, and answers it fast:
//
//   - The running Nix's version is learnt once, when the driver starts.
//   - A path source's lib/minver.nix is read (in Go, no Nix process) when
//     the driver starts, where a package set too new is logged once as a
//     warning, and again at each pull of "latest", which it then fails at
//     once.
//   - Every evaluation checks lib/minver.nix first, as nixpkgs does
//     (resolve.nix), and stops there when it is too new.
//   - A revision found too new is remembered by its commit: a pull of a
//     pinned revision (a commit hash tag, or a tag of a path checkout) is
//     answered without running Nix again.
//   - nixpkgs' own abort message on stderr is recognised too (an old
//     nixpkgs kept the minimum in default.nix itself).

// maxTooNewRevisions bounds the commits remembered as too new for this Nix.
const maxTooNewRevisions = 256

// minverState is what the driver knows of the running Nix and of what
// package sets need of it, and the package source's last seen revision.
type minverState struct {
	// nixVersion is the running Nix's version ("2.8.0"), learnt at start.
	nixVersion string
	// tooNew maps a commit to the Nix version it needs, for commits whose
	// lib/minver.nix demands a newer Nix than nixVersion.
	tooNew *lru.Cache[string, string]

	mu sync.Mutex
	// revision is the source's revision at "latest" as last seen: the
	// commit of a git or channel source's last evaluation at latest, of a
	// path checkout's HEAD.
	revision string
}

// start learns what the driver needs to know before it serves: the
// version of the Nix on PATH, a path checkout's revision, and whether a
// path source needs a newer Nix, which it logs once. Nix that does not run
// is said loudly but does not stop the server: images already built are
// served from storage alone, builds fail with the reason, and /readyz says
// the instance is not ready.
func (d *Driver) start() error {
	var err error
	d.minver.tooNew, err = lru.New[string, string](maxTooNewRevisions)
	if err != nil {
		return fmt.Errorf("nix: %w", err)
	}
	out, err := d.Version(context.Background())
	if err != nil {
		d.log.WithError(err).Error("Nix does not run: images already built are served, builds fail until it does")
		return nil
	}
	v, err := parseNixVersion(out)
	if err != nil {
		d.log.WithError(err).Warn("cannot tell the Nix version: package sets' lib/minver.nix is checked when they are evaluated")
		return nil
	}
	d.minver.nixVersion = v
	if d.checkout != "" {
		d.refreshCheckoutRevision(context.Background())
	}
	if d.opts.Source.Kind != config.SourcePath {
		return nil
	}
	required, err := readMinVer(d.pkgsDir)
	if err != nil {
		d.log.WithError(err).Warn("cannot read the package set's lib/minver.nix: its Nix version is checked when it is evaluated")
		return nil
	}
	if required != "" && CompareVersions(required, v) > 0 {
		d.log.WithFields(logrus.Fields{
			"path":         d.pkgsDir,
			"required_nix": required,
			"nix_version":  v,
		}).Warnf("the package set needs Nix %s or newer (its lib/minver.nix) and this server runs Nix %s: "+
			"every pull of it fails until the server runs a newer Nix, or NIXERY_PKGS_PATH names an older package set (e.g. a nixpkgs checkout of an older release)",
			required, v)
	}
	return nil
}

// NixVersion is the version of the Nix the driver runs ("2.8.0"), as
// nix-store --version said when the driver started.
func (d *Driver) NixVersion() string { return d.minver.nixVersion }

// Revision is the package source's revision at "latest", as far as it is
// known without fetching anything: "builtin" for the builtin set, the
// commit of HEAD for a path that is a git checkout, the commit of the last
// evaluation at latest for a git source (and a channel whose tarball says
// it), else "".
func (d *Driver) Revision() string {
	if d.opts.Source.Kind == config.SourceBuiltin {
		return "builtin"
	}
	d.minver.mu.Lock()
	defer d.minver.mu.Unlock()
	return d.minver.revision
}

// noteRevision records rev as the source's revision at latest, logging it
// when it changes (the first evaluation of a git or channel source says
// which commit it serves).
func (d *Driver) noteRevision(rev string) {
	if rev == "" {
		return
	}
	d.minver.mu.Lock()
	old := d.minver.revision
	d.minver.revision = rev
	d.minver.mu.Unlock()
	if old != rev {
		d.log.WithFields(logrus.Fields{
			"source":          string(d.opts.Source.Kind),
			"source_revision": rev,
			"nix_version":     d.minver.nixVersion,
		}).Info("package source at latest")
	}
}

// refreshCheckoutRevision notes the commit of a path checkout's HEAD.
func (d *Driver) refreshCheckoutRevision(ctx context.Context) {
	log := d.log.WithField("op", "git")
	res, err := d.runGit(ctx, log, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if err != nil || res.ExitCode != 0 {
		return // a repository with no commit yet: no revision
	}
	if rev := strings.TrimSpace(string(res.Stdout)); commitHash.MatchString(rev) {
		d.noteRevision(rev)
	}
}

// CheckSource evaluates the package set at "latest" (one Nix process, no
// package named), as a readiness check: nil when it evaluates, else the
// client's message of why not (the package set needs a newer Nix, fails to
// evaluate, cannot be fetched). It notes the source's revision. Like
// Version, its Nix process is not counted in ProcessCount.
func (d *Driver) CheckSource(ctx context.Context) error {
	log := d.log.WithField("op", "check-source")
	spec, err := d.spec(ctx, log, LatestTag)
	if err == nil {
		// The answer is rooted like a build's, and let go at once.
		var roots *Roots
		if roots, err = d.newRoots(); err == nil {
			_, err = d.evaluate(ctx, log, "check", spec, LatestTag, "", nil, filepath.Join(roots.dir, "resolution"))
			roots.Release()
		}
	}
	if err == nil && d.checkout != "" {
		d.refreshCheckoutRevision(ctx)
	}
	if e, ok := errcode.As(err); ok {
		return errors.New(e.Message)
	}
	return err
}

// knownTooOld is the error of a pull that needs no Nix to fail: a path
// source at latest whose lib/minver.nix demands a newer Nix, or a commit
// already found to.
func (d *Driver) knownTooOld(spec sourceSpec, tag string) error {
	if d.minver.nixVersion == "" {
		return nil // unknown: the evaluation's own check decides
	}
	if spec.Kind == "path" && d.opts.Source.Kind == config.SourcePath {
		// Read again at every pull: the directory may change, both ways.
		required, err := readMinVer(spec.Path)
		if err == nil && required != "" && CompareVersions(required, d.minver.nixVersion) > 0 {
			return d.nixTooOld(spec, tag, "", required, d.minver.nixVersion)
		}
		return nil
	}
	if rev := pinnedRev(spec, tag); rev != "" {
		if required, ok := d.minver.tooNew.Get(rev); ok {
			return d.nixTooOld(spec, tag, rev, required, d.minver.nixVersion)
		}
	}
	return nil
}

// pinnedRev is the commit spec names before anything is fetched: a git
// rev, or a channel tag that is a commit hash; else "".
func pinnedRev(spec sourceSpec, tag string) string {
	switch {
	case spec.Kind == "git" && spec.Git.Rev != "":
		return spec.Git.Rev
	case spec.Kind == "channel" && commitHash.MatchString(tag):
		return tag
	}
	return ""
}

// tooOld turns an evaluation that stopped at lib/minver.nix into the
// client's error, remembering the commit.
func (d *Driver) tooOld(spec sourceSpec, tag string, ev *evaluation) error {
	rev := ev.Rev
	if !commitHash.MatchString(rev) {
		rev = pinnedRev(spec, tag)
	}
	running := ev.NixVersion
	if running == "" {
		running = d.minver.nixVersion
	}
	if rev != "" {
		d.minver.tooNew.Add(rev, ev.Required)
	}
	return d.nixTooOld(spec, tag, rev, ev.Required, running)
}

// nixTooOld is the error of a pull from a package set that needs Nix
// required or newer while this server runs Nix running: BUILD_FAILED, a
// 4xx so that clients print it, naming both versions, the package set
// (the commit, where there is one) and what to do.
func (d *Driver) nixTooOld(spec sourceSpec, tag, rev, required, running string) error {
	advice := "ask the registry's operator to run a newer Nix, or to point the registry at an older package set"
	if d.opts.Source.Kind == config.SourceGit || d.opts.Source.Kind == config.SourceChannel || d.checkout != "" {
		advice = "pull a tag that names an older revision of the package set (a commit hash), or ask the registry's operator to run a newer Nix"
	}
	required, running = shownVersion(required), shownVersion(running)
	what := "the package set"
	if at := describe(spec, tag, rev); at != "" {
		what += " at " + at
	}
	where := what
	if spec.Kind == "path" {
		where += " in " + spec.Path // for the log; a client has no use for the server's directories
	}
	return errcode.Wrap(errcode.BuildFailed,
		fmt.Errorf("lib/minver.nix of %s requires Nix %s; running Nix %s", where, required, running),
		"%s needs Nix %s or newer; this server runs Nix %s: %s", what, required, running, advice)
}

// describe names the version of the package set a spec stands for, for
// messages: its commit (short) and the tag that named it, or the channel;
// "" for a directory.
func describe(spec sourceSpec, tag, rev string) string {
	short := rev
	if len(short) > 12 {
		short = short[:12]
	}
	switch {
	case spec.Kind == "path":
		return ""
	case short != "" && commitHash.MatchString(tag):
		return short
	case short != "":
		return fmt.Sprintf("%s (tag %q)", short, tag)
	case spec.Kind == "channel":
		return fmt.Sprintf("%s (tag %q)", strings.TrimSuffix(strings.TrimPrefix(spec.URL, channelArchive), ".tar.gz"), tag)
	}
	return fmt.Sprintf("tag %q", tag)
}

// versionPattern is a version as the messages show it; anything else a
// package set claims is shown quoted and clipped.
var versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$`)

func shownVersion(v string) string {
	if versionPattern.MatchString(v) {
		return v
	}
	return strconv.Quote(clip(v))
}

// nixpkgsAbort matches nixpkgs' abort on too old a Nix ("This version of
// Nixpkgs requires Nix >= 2.18, please upgrade:"), the fallback for a
// package set whose minimum is not in lib/minver.nix.
var nixpkgsAbort = regexp.MustCompile(`requires Nix >= ?([0-9][0-9A-Za-z.+_-]*)`)

// abortedForNix finds nixpkgs' abort on too old a Nix in stderr, and the
// version it asks for.
func abortedForNix(stderr string) (string, bool) {
	m := nixpkgsAbort.FindStringSubmatch(stderr)
	if m == nil {
		return "", false
	}
	return strings.TrimRight(m[1], ".-"), true
}

// CompareVersions compares two version strings the way Nix's
// builtins.compareVersions (and nix-env -u) does: -1 if a is older than b,
// 0 if they are the same, 1 if a is newer. A version is a sequence of
// components separated by "." or "-": runs of digits compare as numbers,
// a missing component is older than a number, "pre" is older than
// anything else, letters are older than a number ("2.3a" < "2.3.1"), and
// other components compare as strings.
func CompareVersions(a, b string) int {
	for a != "" || b != "" {
		var ca, cb string
		ca, a = nextComponent(a)
		cb, b = nextComponent(b)
		switch {
		case componentLess(ca, cb):
			return -1
		case componentLess(cb, ca):
			return 1
		}
	}
	return 0
}

// nextComponent splits off v's first component: separators skipped, then
// the longest run of digits, or of characters that are neither digits nor
// separators.
func nextComponent(v string) (component, rest string) {
	v = strings.TrimLeft(v, ".-")
	if v == "" {
		return "", ""
	}
	digits := isDigit(v[0])
	i := 0
	for i < len(v) && isDigit(v[i]) == digits && (digits || (v[i] != '.' && v[i] != '-')) {
		i++
	}
	return v[:i], v[i:]
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// componentLess is Nix's order of version components. A run of digits too
// long for a C int is no number to Nix, and neither is it here.
func componentLess(a, b string) bool {
	na, aNum := componentNumber(a)
	nb, bNum := componentNumber(b)
	switch {
	case aNum && bNum:
		return na < nb
	case a == "" && bNum:
		return true
	case a == "pre" && b != "pre":
		return true
	case b == "pre":
		return false
	case bNum:
		return true
	case aNum:
		return false
	}
	return a < b
}

func componentNumber(c string) (int64, bool) {
	if c == "" || !isDigit(c[0]) {
		return 0, false
	}
	n, err := strconv.ParseInt(c, 10, 32)
	return n, err == nil
}

// parseNixVersion reads the version from what nix-store --version prints
// ("nix-store (Nix) 2.8.0"; forks print their own name in the parentheses
// and the version of Nix they follow last).
func parseNixVersion(out string) (string, error) {
	fields := strings.Fields(out)
	if len(fields) < 2 || !strings.HasSuffix(strings.Join(fields[:len(fields)-1], " "), ")") {
		return "", fmt.Errorf("nix-store --version printed %q, not \"nix-store (Nix) VERSION\"", clip(out))
	}
	v := fields[len(fields)-1]
	if !versionPattern.MatchString(v) || !isDigit(v[0]) {
		return "", fmt.Errorf("nix-store --version printed %q: %q is no version", clip(out), clip(v))
	}
	return v, nil
}

// maxMinVerSize bounds lib/minver.nix as read here: nixpkgs' is a comment
// and a short string.
const maxMinVerSize = 4 << 10

// readMinVer reads dir/lib/minver.nix: the Nix version it demands, or ""
// when there is no such file (no demand) or it is not a plain string with
// comments, which only Nix can read (the evaluation checks it then).
func readMinVer(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "lib", "minver.nix"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMinVerSize+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxMinVerSize {
		return "", nil
	}
	v, _ := parseMinVer(data)
	return v, nil
}

// parseMinVer reads the Nix expression of lib/minver.nix when it is the
// form nixpkgs uses: comments ("# …" lines, "/* … */") around one double-
// quoted string without escapes or interpolation. ok is false for any
// other expression.
func parseMinVer(data []byte) (version string, ok bool) {
	s := skipNixSpace(string(data))
	if !strings.HasPrefix(s, `"`) {
		return "", false
	}
	end := strings.IndexAny(s[1:], "\"\\$")
	if end < 0 || s[1+end] != '"' {
		return "", false
	}
	version, s = s[1:1+end], s[2+end:]
	if skipNixSpace(s) != "" || !versionPattern.MatchString(version) {
		return "", false
	}
	return version, true
}

// skipNixSpace drops leading white space and comments. An unterminated
// block comment leaves "/*…", which is no string.
func skipNixSpace(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		switch {
		case strings.HasPrefix(s, "#"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s[2:], "*/")
			if i < 0 {
				return s
			}
			s = s[2+i+2:]
		default:
			return s
		}
	}
}
