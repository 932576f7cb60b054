package nix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
)

// stderrKeep bounds how much of a Nix process's stderr is kept: its end,
// where Nix prints its errors (build logs can be long).
const stderrKeep = 256 << 10

// result is what a finished Nix process left.
type result struct {
	stdout   []byte
	stderr   string // the last stderrKeep bytes
	exitCode int
}

// run starts one Nix process under the driver's deadline and waits for it.
// A non-zero exit is not an error here (callers know what it means); an
// error is a failure to start, the deadline (BUILD_FAILED naming
// NIX_TIMEOUT) or the caller's context ending (wrapping ctx.Err()).
func (d *Driver) run(ctx context.Context, log logrus.FieldLogger, name string, args ...string) (result, error) {
	return d.exec(ctx, log, "nix", d.dir, name, args...)
}

// runGit runs git in the checkout of a path source, like run (git is not
// counted among the Nix processes).
func (d *Driver) runGit(ctx context.Context, log logrus.FieldLogger, args ...string) (result, error) {
	return d.exec(ctx, log, "git", d.checkout, "git", args...)
}

// exec runs one process in dir under the driver's deadline, in a process
// group of its own; kind names it in the log ("nix", "git"), and only Nix
// processes count in ProcessCount.
func (d *Driver) exec(ctx context.Context, log logrus.FieldLogger, kind, dir, name string, args ...string) (result, error) {
	tctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()

	cmd := exec.CommandContext(tctx, name, args...)
	cmd.Env = d.env
	cmd.Dir = dir
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrKeep}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	// A group of its own: the deadline signals the whole group, never the
	// server's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM, not SIGKILL: on SIGTERM Nix kills its builders (which run
	// in sessions of their own as nixbld users) and exits; SIGKILL would
	// leave them running.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	// Then, if it is still there, Go kills it.
	cmd.WaitDelay = killGrace

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("nix: starting %s: %w", name, err)
	}
	if kind == "nix" {
		d.procs.Add(1)
	}
	pid := cmd.Process.Pid
	if d.opts.OnProcess != nil {
		d.opts.OnProcess(append([]string(nil), cmd.Args...), pid)
	}
	log = log.WithFields(logrus.Fields{"cmd": name, "pid": pid})
	log.Debug(kind + " process started")

	waitErr := cmd.Wait()
	elapsed := time.Since(start)
	res := result{stdout: stdout.Bytes(), stderr: stderr.String(), exitCode: cmd.ProcessState.ExitCode()}
	log = log.WithFields(logrus.Fields{"exit_code": res.exitCode, "duration_ms": elapsed.Milliseconds()})

	if tctx.Err() != nil {
		// Whatever is left of the group (a builder Nix did not wait for
		// is in a session of its own, out of reach and already signalled
		// by Nix).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		log = log.WithField("stderr_tail", stderrTail(res.stderr, 20))
		if err := ctx.Err(); err != nil {
			// The caller's deadline (it names its own limit) or nobody
			// waits for the build any more: no fault of the server's.
			if errors.Is(err, context.DeadlineExceeded) {
				log.Warn(kind + " process stopped: the build's deadline passed")
			} else {
				log.Info(kind + " process stopped: nobody waits for the build any more")
			}
			return res, fmt.Errorf("nix: %s stopped: %w", name, err)
		}
		log.Warn(kind + " process timed out")
		return res, errcode.Wrap(errcode.BuildFailed, fmt.Errorf("%s ran longer than %s", name, d.opts.Timeout),
			"%s took longer than %s, the limit NIX_TIMEOUT sets on each Nix step, and was stopped: "+
				"asking again will not help unless the registry's operator raises NIX_TIMEOUT%s",
			stepOf(name), d.opts.Timeout, withTail("its output", res.stderr))
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		// exec.ErrWaitDelay or an I/O error: the output may be cut.
		log.WithError(waitErr).Error(kind + " process: waiting failed")
		return res, fmt.Errorf("nix: waiting for %s: %w", name, waitErr)
	}
	switch {
	case res.exitCode != 0 && kind == "git":
		// git answers questions ("is there such a branch?") with its exit
		// code: the caller judges it.
		log.WithField("stderr_tail", stderrTail(res.stderr, 5)).Debug("git process exited non-zero")
	case res.exitCode != 0:
		log.WithField("stderr_tail", stderrTail(res.stderr, 20)).Warn(kind + " process failed")
	default:
		log.Debug(kind + " process done")
	}
	return res, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	b := t.buf
	if len(b) > t.max {
		b, t.cut = b[len(b)-t.max:], true
	}
	if t.cut {
		// Start at a line boundary.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

var (
	ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
	// Nix's complaint when nix-store --realise runs without --add-root;
	// the driver always adds roots, but older paths may still print it.
	addRootWarning = regexp.MustCompile(`^warning: you did not specify '--add-root'`)
	programFailed  = regexp.MustCompile(`^program '[^']*' failed with exit code`)
)

// stderrLines is Nix's stderr without colour codes, blank lines and the
// --add-root warning.
func stderrLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(ansiEscape.ReplaceAllString(stderr, ""), "\n") {
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) == "" || addRootWarning.MatchString(strings.TrimSpace(l)) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// stderrTail is the last n meaningful lines of stderr, for the log.
func stderrTail(stderr string, n int) string {
	lines := stderrLines(stderr)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

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
	for _, l := range lines {
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

// What a client is shown of a build's output: its last lines, bounded.
const (
	clientTailLines = 15
	clientTailBytes = 2000
)

// interrupted is what Nix prints when it is stopped by a signal: ours,
// at the deadline; to a client it would only suggest someone else did.
const interrupted = "error: interrupted by the user"

// outputTail is the end of a Nix process's stderr for a client: at most
// clientTailLines lines of at most maxMessage characters, clientTailBytes
// in all, without colour codes, blank lines, the --add-root warning or
// Nix's note that it was interrupted.
func outputTail(stderr string) string {
	lines := stderrLines(stderr)
	var keep []string
	size := 0
	for i := len(lines) - 1; i >= 0 && len(keep) < clientTailLines; i-- {
		if strings.TrimSpace(lines[i]) == interrupted {
			continue
		}
		l := clip(lines[i])
		if size+len(l)+1 > clientTailBytes {
			break
		}
		size += len(l) + 1
		keep = append(keep, l)
	}
	slices.Reverse(keep)
	return strings.Join(keep, "\n")
}

// withTail is "; the last lines of WHAT:" and the tail of stderr on lines
// of their own, or nothing when stderr holds nothing to show.
func withTail(what, stderr string) string {
	tail := outputTail(stderr)
	if tail == "" {
		return ""
	}
	return "; the last lines of " + what + ":\n" + tail
}

// refusedPackage matches nixpkgs' refusal to evaluate a package its
// configuration does not allow (check-meta.nix: "Package ‘hello-1.0’ in
// …: has an unfree license (‘unfree’), refusing to evaluate.", likewise
// for broken, insecure and unsupported packages).
var refusedPackage = regexp.MustCompile(`refusing to evaluate|is not available on the requested hostPlatform`)

// failure turns a failed Nix process into an error: BUILD_FAILED with
// Nix's first error line for the client, the stderr tail for the log.
func failure(what, name string, res result) error {
	msg := firstError(res.stderr)
	if msg == "" {
		msg = fmt.Sprintf("%s exited with code %d", name, res.exitCode)
	}
	cause := fmt.Errorf("%s exited with code %d: %s", name, res.exitCode, stderrTail(res.stderr, 20))
	if refusedPackage.MatchString(msg) {
		return errcode.Wrap(errcode.BuildFailed, cause,
			"the package set refuses to build a package: %s. Choose another package: "+
				"this registry uses the package set's default configuration, which allows no unfree, broken or insecure packages",
			strings.TrimSuffix(msg, "."))
	}
	return errcode.Wrap(errcode.BuildFailed, cause, "%s: %s", what, msg)
}
