// Package command is the command source: an external build (a Bazel
// wrapper, a script) that writes an OCI image layout, which is then
// ingested (package ocilayout).
//
// Request text reaches the command only through the argv template, and
// only after validation: {name} is the repository name (the distribution
// spec's pattern: lower-case letters, digits and . _ - / separators, never
// starting with a separator), {tag} the tag ([A-Za-z0-9_][A-Za-z0-9_.-]*),
// {out} the fresh directory the layout must be written to. Placeholders
// may stand anywhere inside an element (//images/{name}:image,
// --tag={tag}); substitution always stays inside that one element: the
// program is started with exec, never through a shell, so no value can
// split an argument, add one or start an option (neither a name nor a tag
// can start with "-").
package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/ocilayout"
	"github.com/nixport/nixport/procalive"
	"github.com/nixport/nixport/procrun"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// DefaultKillGrace is how long a command has after SIGTERM before its
// process group is killed.
const DefaultKillGrace = procrun.DefaultGrace

// tailLines is how many lines of a failed command's output are logged.
const tailLines = 20

// placeholders are the names a template may use in braces.
var placeholders = map[string]bool{"name": true, "tag": true, "out": true}

// passedEnv are the variables of the server's environment a command gets
// by default: enough to find programs and a home, nothing that might hold
// the server's credentials.
var passedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Options configure a command source.
type Options struct {
	// Route names the route in keys and logs.
	Route string
	// Argv is the command template: Argv[0] the program, an absolute path
	// without placeholders; {name}, {tag} and {out} in the other elements
	// are substituted. Some element must hold {out}.
	Argv []string
	// Dir is the working directory. Empty: the server's.
	Dir string
	// Env is the command's whole environment ("KEY=value"). Nil: the
	// server's PATH, HOME, USER, LOGNAME, LANG, LC_ALL, TZ and TMPDIR.
	Env []string
	// Timeout bounds one run (NIX_TIMEOUT's value unless the route sets
	// its own). Required.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL to the command's
	// process group. Zero means DefaultKillGrace.
	KillGrace time.Duration
	// Pinned says the command's output is a pure function of name and
	// tag, so the Builder may cache it forever. Default: a moving tag,
	// cached for the Builder's MovingTagTTL.
	Pinned bool
	// TempDir is where {out} directories are made. Empty: os.TempDir().
	TempDir string
	Storage storage.Backend
	Log     logrus.FieldLogger
}

// Source builds images by running a command that writes an OCI
// image layout, then ingesting it.
type Source struct {
	opts Options
	argv []argTemplate
	id   string // identifies the configuration in every key
	log  logrus.FieldLogger
}

// New checks opts and returns the source.
func New(opts Options) (*Source, error) {
	if opts.Storage == nil {
		return nil, errors.New("command source: no storage")
	}
	if opts.Timeout <= 0 {
		return nil, errors.New("command source: no timeout")
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.Env == nil {
		opts.Env = DefaultEnv()
	}
	for _, kv := range opts.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || !ValidEnvName(k) || strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("command source: environment entry %q is not KEY=value", kv)
		}
	}
	argv, err := parseArgv(opts.Argv)
	if err != nil {
		return nil, err
	}
	id := strings.Join([]string{opts.Route, strings.Join(opts.Argv, "\x00"), opts.Dir, strings.Join(opts.Env, "\x00")}, "\x01")
	removeDeadOutputs(opts.TempDir, opts.Log.WithField("route", opts.Route))
	return &Source{
		opts: opts,
		argv: argv,
		id:   source.Hash(id),
		log:  opts.Log.WithField("route", opts.Route),
	}, nil
}

// DefaultEnv is the environment a command gets when none is
// configured: a few variables of the server's own.
func DefaultEnv() []string {
	env := []string{}
	for _, k := range passedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// ValidEnvName reports whether k may name an environment variable of a
// command.
func ValidEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// CheckArgv checks an argv template as a routes file gives it, before its
// program is resolved: the program may hold no placeholder and no NUL
// byte, and the rest must be valid templates.
func CheckArgv(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("name the program to run first")
	}
	if t, err := parseArgTemplate(argv[0]); err != nil || len(t.placeholders()) > 0 || strings.IndexByte(argv[0], 0) >= 0 {
		return fmt.Errorf("the program %.100q may not hold a placeholder or a NUL byte", argv[0])
	}
	// The template as it will be used, with a stand-in absolute program.
	_, err := parseArgv(append([]string{"/"}, argv[1:]...))
	return err
}

// parseArgv checks an argv template.
func parseArgv(argv []string) ([]argTemplate, error) {
	if len(argv) == 0 {
		return nil, errors.New("argv is empty: name the program to run")
	}
	if !filepath.IsAbs(argv[0]) {
		return nil, fmt.Errorf("argv[0] %q is not an absolute path", argv[0])
	}
	out := make([]argTemplate, len(argv))
	hasOut := false
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("argv[%d] holds a NUL byte", i)
		}
		t, err := parseArgTemplate(a)
		if err != nil {
			return nil, fmt.Errorf("argv[%d] %q: %w", i, a, err)
		}
		if i == 0 && len(t.placeholders()) > 0 {
			return nil, fmt.Errorf("argv[0] %q: the program may not hold a placeholder", a)
		}
		for _, p := range t.placeholders() {
			hasOut = hasOut || p == "out"
		}
		out[i] = t
	}
	if !hasOut {
		return nil, errors.New("no element of argv holds {out}: the command would not know where to write the layout")
	}
	return out, nil
}

// argTemplate is one argv element: literal text and placeholders.
type argTemplate []argPart

type argPart struct {
	literal     string
	placeholder string // "name", "tag" or "out"; empty for a literal
}

// parseArgTemplate splits s at its placeholders. A brace that does not
// open {word} (lower-case letters and _) is literal text; an unknown
// {word} is an error, so that a typo never reaches a command as text.
func parseArgTemplate(s string) (argTemplate, error) {
	var t argTemplate
	lit := 0 // start of the pending literal
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		end := strings.IndexByte(s[i+1:], '}')
		if end <= 0 {
			continue
		}
		word := s[i+1 : i+1+end]
		if !isPlaceholderWord(word) {
			continue
		}
		if !placeholders[word] {
			return nil, fmt.Errorf("unknown placeholder {%s}: use {name}, {tag} or {out}", word)
		}
		if lit < i {
			t = append(t, argPart{literal: s[lit:i]})
		}
		t = append(t, argPart{placeholder: word})
		i += end + 1
		lit = i + 1
	}
	if lit < len(s) {
		t = append(t, argPart{literal: s[lit:]})
	}
	return t, nil
}

func isPlaceholderWord(w string) bool {
	for i := 0; i < len(w); i++ {
		if !('a' <= w[i] && w[i] <= 'z' || w[i] == '_') {
			return false
		}
	}
	return w != ""
}

func (t argTemplate) placeholders() []string {
	var ps []string
	for _, p := range t {
		if p.placeholder != "" {
			ps = append(ps, p.placeholder)
		}
	}
	return ps
}

func (t argTemplate) expand(vars map[string]string) string {
	var b strings.Builder
	for _, p := range t {
		if p.placeholder != "" {
			b.WriteString(vars[p.placeholder])
		} else {
			b.WriteString(p.literal)
		}
	}
	return b.String()
}

// expandArgv returns the argv a request for name:tag runs with, out standing for
// the output directory. Name and tag must have been validated.
func (s *Source) expandArgv(name, tag, out string) []string {
	vars := map[string]string{"name": name, "tag": tag, "out": out}
	argv := make([]string, len(s.argv))
	for i, t := range s.argv {
		argv[i] = t.expand(vars)
	}
	return argv
}

// Identify validates name and tag. The key holds the route's whole
// configuration, so a changed command never serves a pinned record of the
// old one.
func (s *Source) Identify(name, tag string) (source.Request, error) {
	if err := source.CheckNameTag(name, tag); err != nil {
		return source.Request{}, err
	}
	return source.Request{Name: name, Tag: tag, Key: "command|" + s.id + "|" + name + "|" + tag, Pinned: s.opts.Pinned}, nil
}

// source.Plan has nothing to resolve: what a command makes is known once it has
// run. The plan is the command itself, which is no content address.
func (s *Source) Plan(_ context.Context, req source.Request) (source.Plan, error) {
	return source.Plan{Request: req, Key: req.Key}, nil
}

// Build runs the command for the plan's name:tag into a fresh directory
// and ingests the layout it wrote.
func (s *Source) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	name, tag := plan.Request.Name, plan.Request.Tag
	// Checked again: these go onto the command line.
	if err := source.CheckNameTag(name, tag); err != nil {
		return nil, err
	}
	log := requestid.Logger(ctx, s.log).WithFields(logrus.Fields{"image": name, "tag": tag})
	out, err := makeOutput(s.opts.TempDir)
	if err != nil {
		return nil, fmt.Errorf("making the output directory of a build command: %w", err)
	}
	defer RemoveTree(out, log)
	if err := s.run(ctx, log, name, tag, s.expandArgv(name, tag, out)); err != nil {
		return nil, err
	}
	// A layout that fails the checks is logged by the Builder, with the
	// error naming the bad blob.
	source.ProgressOf(ctx).Phase(source.Archiving)
	index, err := ocilayout.ReadIndex(out)
	if err != nil {
		return nil, err
	}
	return ocilayout.Ingest(ctx, s.opts.Storage, out, index, log)
}

// run runs the command under its deadline, in a process group of its own
// that is signalled (SIGTERM, then SIGKILL after the grace) when the
// deadline passes or nobody waits for the build any more. A command that
// fails or runs past its deadline is BUILD_FAILED: the client is told how
// it ended and the last lines of its output (bounded, see clientTail),
// where the reason is; the log gets a longer tail. A command that cannot
// start is a fault of the server's configuration, for the log only.
func (s *Source) run(ctx context.Context, log logrus.FieldLogger, name, tag string, argv []string) error {
	progress := source.ProgressOf(ctx)
	progress.Phase(source.Realising)
	p, err := procrun.Start(ctx, procrun.Cmd{
		Argv:     argv,
		Dir:      s.opts.Dir,
		Env:      s.opts.Env,
		Timeout:  s.opts.Timeout,
		Grace:    s.opts.KillGrace,
		Combined: true, // its end kept: procrun.DefaultTailSize
		Output:   progressWriter{progress},
	})
	if err != nil {
		log.WithError(err).Error("build command could not start")
		return fmt.Errorf("starting the build command for %s:%s: %w", name, tag, err)
	}
	log = log.WithField("pid", p.Pid())
	log.Debug("build command started")
	// When it returns, whatever was left of the group is gone: nothing
	// may go on writing into the output directory while it is ingested,
	// or outlive the build.
	res, err := p.Wait()
	log = log.WithFields(logrus.Fields{"exit_code": res.ExitCode, "duration_ms": res.Duration.Milliseconds()})
	tail := procrun.LastLines(res.Tail, tailLines, nil)

	switch {
	case res.TimedOut || errors.Is(res.CtxErr, context.DeadlineExceeded):
		log.WithField("output_tail", tail).Warn("build command timed out: its process group was killed")
		return errcode.Wrap(errcode.BuildFailed, fmt.Errorf("%s ran longer than its deadline", argv[0]),
			"the build command for %s:%s took longer than its limit of %s and was stopped: asking again will not help "+
				"unless the registry's operator raises the limit (the route's timeout, else NIX_TIMEOUT)%s",
			name, tag, s.opts.Timeout, clientTail.Suffix("its output", res.Tail))
	case res.CtxErr != nil:
		// No fault: the client went away (or the server is stopping).
		log.WithField("output_tail", tail).Info("build command stopped: nobody waits for the build any more")
		return fmt.Errorf("build command for %s:%s stopped: %w", name, tag, res.CtxErr)
	case errors.Is(err, exec.ErrWaitDelay):
		// It succeeded, but a process it left behind held its output
		// open past the grace; the group is killed now.
		log.Warn("build command left a process holding its output: killed")
	case err != nil:
		log.WithError(err).WithField("output_tail", tail).Error("build command: waiting failed")
		return fmt.Errorf("waiting for the build command for %s:%s: %w", name, tag, err)
	}
	if !res.Success() {
		log.WithField("output_tail", tail).Warn("build command failed")
		return errcode.Wrap(errcode.BuildFailed, fmt.Errorf("%s: %s: %s", argv[0], res.How(), tail),
			"the build command for %s:%s failed: %s%s", name, tag, res.How(), clientTail.Suffix("its output", res.Tail))
	}
	log.Debug("build command done")
	return nil
}

// outPrefix starts the names of output directories, which go on with the
// server's process (procalive.NamePrefix), so that removeDeadOutputs can
// tell a crashed server's.
const outPrefix = "nixport-out-"

// makeOutput makes a fresh output directory in tempDir (empty:
// os.TempDir()), named for this server.
func makeOutput(tempDir string) (string, error) {
	return os.MkdirTemp(tempDir, procalive.NamePrefix(outPrefix))
}

// removeDeadOutputs removes the output directories in tempDir (empty:
// os.TempDir()) whose server is known to have died while its command ran.
// The others are left alone: a live server's are in use, and those of
// other machines or of older servers cannot be judged.
func removeDeadOutputs(tempDir string, log logrus.FieldLogger) {
	if tempDir == "" {
		tempDir = os.TempDir()
	}
	entries, err := os.ReadDir(tempDir)
	if err != nil {
		log.WithError(err).WithField("dir", tempDir).Warn("listing the output directories of build commands")
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !procalive.DeadWriter(e.Name(), outPrefix) {
			continue
		}
		dir := filepath.Join(tempDir, e.Name())
		RemoveTree(dir, log)
		log.WithField("dir", dir).Info("removed the output directory of a crashed server's build command")
	}
}

// RemoveTree removes dir, making directories writable first if a command
// left them read-only (Bazel outputs are).
func RemoveTree(dir string, log logrus.FieldLogger) {
	if err := os.RemoveAll(dir); err == nil {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		log.WithError(err).WithField("dir", dir).Warn("removing a build command's output directory")
	}
}

// addRootWarning is Nix's complaint when nix-store --realise runs without
// --add-root: noise to a client, should a command run Nix.
var addRootWarning = regexp.MustCompile(`^\s*warning: you did not specify '--add-root'`)

// clientTail is what a client is told of a failed command's output: its
// last lines (procrun.DefaultClientTail's bounds), without Nix's
// --add-root warning.
var clientTail = procrun.DefaultClientTail.WithDrop(addRootWarning.MatchString)

// progressWriter passes a command's output to its build's progress, which
// keeps its end for the build status API.
type progressWriter struct{ p source.Progress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.Output(b)
	return len(b), nil
}
