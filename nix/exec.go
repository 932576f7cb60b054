package nix

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/procrun"
)

// run starts one Nix process under the driver's deadline and waits for it.
// A non-zero exit is not an error here (callers know what it means); an
// error is a failure to start, the deadline (BUILD_FAILED naming
// NIX_TIMEOUT) or the caller's context ending (wrapping ctx.Err()). The
// result's Tail is the end of stderr.
func (d *Driver) run(ctx context.Context, log logrus.FieldLogger, name string, args ...string) (procrun.Result, error) {
	return d.exec(ctx, log, "nix", d.dir, name, args...)
}

// runGit runs git in the checkout of a path source, like run (git is not
// counted among the Nix processes).
func (d *Driver) runGit(ctx context.Context, log logrus.FieldLogger, args ...string) (procrun.Result, error) {
	return d.exec(ctx, log, "git", d.checkout, "git", args...)
}

// exec runs one process in dir under the driver's deadline (see procrun:
// a process group of its own, SIGTERM, on which Nix kills its builders
// (they run in sessions of their own as nixbld users, where a group kill
// cannot reach them) and exits, then the kill after killGrace); kind names
// it in the log ("nix", "git"), and only Nix processes count in
// ProcessCount.
func (d *Driver) exec(ctx context.Context, log logrus.FieldLogger, kind, dir, name string, args ...string) (procrun.Result, error) {
	return d.execCmd(ctx, log, kind, procrun.Cmd{Argv: append([]string{name}, args...), Dir: dir})
}

// execCmd is exec for a command that needs more of procrun.Cmd (its
// stdout streamed): cmd's Argv, and Dir and Stdout if set, are kept; the
// rest is the driver's.
func (d *Driver) execCmd(ctx context.Context, log logrus.FieldLogger, kind string, cmd procrun.Cmd) (procrun.Result, error) {
	name, args := cmd.Argv[0], cmd.Argv[1:]
	if cmd.Dir == "" {
		cmd.Dir = d.dir
	}
	cmd.Env = d.env
	cmd.Timeout = d.opts.Timeout
	cmd.Grace = killGrace
	// The end of stderr is kept (procrun.DefaultTailSize), where Nix
	// prints its errors.
	if ob := observationOf(ctx); ob != nil && kind == "nix" {
		cmd.Output = &logWriter{ob: ob}
	}
	p, err := procrun.Start(ctx, cmd)
	if err != nil {
		return procrun.Result{}, fmt.Errorf("nix: starting %s: %w", name, err)
	}
	if kind == "nix" {
		d.procs.Add(1)
	}
	pid := p.Pid()
	if d.opts.OnProcess != nil {
		d.opts.OnProcess(append([]string{name}, args...), pid)
	}
	log = log.WithFields(logrus.Fields{"cmd": name, "pid": pid})
	log.Debug(kind + " process started")

	res, err := p.Wait()
	log = log.WithFields(logrus.Fields{"exit_code": res.ExitCode, "duration_ms": res.Duration.Milliseconds()})
	switch {
	case res.CtxErr != nil:
		// The caller's deadline (it names its own limit) or nobody waits
		// for the build any more: no fault of the server's.
		log = log.WithField("stderr_tail", stderrTail(res.Tail, 20))
		if errors.Is(res.CtxErr, context.DeadlineExceeded) {
			log.Warn(kind + " process stopped: the build's deadline passed")
		} else {
			log.Info(kind + " process stopped: nobody waits for the build any more")
		}
		return res, fmt.Errorf("nix: %s stopped: %w", name, res.CtxErr)
	case res.TimedOut:
		log.WithField("stderr_tail", stderrTail(res.Tail, 20)).Warn(kind + " process timed out")
		return res, errcode.Wrap(errcode.BuildFailed, fmt.Errorf("%s ran longer than %s", name, d.opts.Timeout),
			"%s took longer than %s, the limit NIX_TIMEOUT sets on a build, and was stopped: "+
				"asking again will not help unless the registry's operator raises NIX_TIMEOUT%s",
			stepOf(name), d.opts.Timeout, clientTail.Suffix("its output", res.Tail))
	case err != nil:
		// exec.ErrWaitDelay or an I/O error: the output may be cut.
		log.WithError(err).Error(kind + " process: waiting failed")
		return res, fmt.Errorf("nix: waiting for %s: %w", name, err)
	}
	switch {
	case res.ExitCode != 0 && kind == "git":
		// git answers questions ("is there such a branch?") with its exit
		// code: the caller judges it.
		log.WithField("stderr_tail", stderrTail(res.Tail, 5)).Debug("git process exited non-zero")
	case res.ExitCode != 0:
		log.WithField("stderr_tail", stderrTail(res.Tail, 20)).Warn(kind + " process failed")
	default:
		log.Debug(kind + " process done")
	}
	return res, nil
}

var (
	// Nix's complaint when nix-store --realise runs without --add-root;
	// the driver always adds roots, but older paths may still print it.
	addRootWarning = regexp.MustCompile(`^warning: you did not specify '--add-root'`)
	programFailed  = regexp.MustCompile(`^program '[^']*' failed with exit code`)
)

// nixNoise says whether a line of Nix's stderr says nothing: the
// --add-root warning.
func nixNoise(line string) bool { return addRootWarning.MatchString(strings.TrimSpace(line)) }

// stderrLines is Nix's stderr without colour codes, blank lines and the
// --add-root warning.
func stderrLines(stderr string) []string { return procrun.Lines(stderr, nixNoise) }

// stderrTail is the last n meaningful lines of stderr, for the log.
func stderrTail(stderr string, n int) string { return procrun.LastLines(stderr, n, nixNoise) }

// maxMessage bounds the Nix error text a client sees.
const maxMessage = 300

// firstError is the first meaningful error line of Nix's stderr, without
// the "error: " prefix: what a client is told. nixpkgs' abort on too old a
// Nix ("evaluation aborted with the following error message: 'This version
// of Nixpkgs requires Nix >= 2.18, please upgrade:") becomes its first
// line. A git failure is told by git's own "fatal:" line.
func firstError(stderr string) string {
	lines := stderrLines(stderr)
	var fatal string
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if fatal == "" && strings.HasPrefix(t, "fatal: ") {
			fatal = t
		}
		if !strings.HasPrefix(t, "error: ") {
			continue
		}
		msg := strings.TrimSpace(strings.TrimPrefix(t, "error: "))
		if programFailed.MatchString(msg) && fatal != "" {
			msg = fatal
		}
		if rest, ok := strings.CutPrefix(msg, "evaluation aborted with the following error message: '"); ok {
			msg = strings.TrimSuffix(rest, "'")
			// A message that starts on a line of its own (nixpkgs'
			// indented strings): its first line.
			if msg == "" && i+1 < len(lines) {
				msg = strings.TrimSuffix(strings.TrimSpace(lines[i+1]), "'")
			}
		}
		return clip(strings.TrimRight(msg, ": "))
	}
	if fatal != "" {
		return clip(fatal)
	}
	// No "error:" line: the last line Nix printed.
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); !strings.HasPrefix(t, "warning: ") {
			return clip(t)
		}
	}
	return ""
}

func clip(s string) string {
	if r := []rune(s); len(r) > maxMessage {
		return string(r[:maxMessage-1]) + "…"
	}
	return s
}

// stepOf names what a Nix command does, for messages.
func stepOf(name string) string {
	switch name {
	case "nix-instantiate":
		return "evaluating the package set"
	case "nix-store":
		return "building the packages"
	case "nix":
		return "reading the packages' closure"
	}
	return name
}

// interrupted is what Nix prints when it is stopped by a signal: ours,
// at the deadline; to a client it would only suggest someone else did.
const interrupted = "error: interrupted by the user"

// clientTail is what a client is shown of a Nix process's stderr: its
// last lines (procrun.DefaultClientTail's bounds), without the --add-root
// warning or Nix's note that it was interrupted.
var clientTail = procrun.DefaultClientTail.WithDrop(func(line string) bool {
	return nixNoise(line) || strings.TrimSpace(line) == interrupted
})

// refusedPackage matches nixpkgs' refusal to evaluate a package its
// configuration does not allow (check-meta.nix: "Package ‘hello-1.0’ in
// …: has an unfree license (‘unfree’), refusing to evaluate.", likewise
// for broken, insecure and unsupported packages).
var refusedPackage = regexp.MustCompile(`refusing to evaluate|is not available on the requested hostPlatform`)

// failure turns a failed Nix process into an error: BUILD_FAILED with
// Nix's first error line for the client, the stderr tail for the log.
func failure(what, name string, res procrun.Result) error {
	msg := firstError(res.Tail)
	if msg == "" {
		msg = fmt.Sprintf("%s exited with code %d", name, res.ExitCode)
	}
	cause := fmt.Errorf("%s exited with code %d: %s", name, res.ExitCode, stderrTail(res.Tail, 20))
	if refusedPackage.MatchString(msg) {
		return errcode.Wrap(errcode.BuildFailed, cause,
			"the package set refuses to build a package: %s. Choose another package: "+
				"this registry uses the package set's default configuration, which allows no unfree, broken or insecure packages",
			strings.TrimSuffix(msg, "."))
	}
	return errcode.Wrap(errcode.BuildFailed, cause, "%s: %s", what, msg)
}
