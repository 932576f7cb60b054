// Package procrun runs one external process (Nix, git, a build command,
// a test's emulator) the one way nixport runs every external process.
//
// It exists because stopping a process well is easy to get subtly wrong,
// and the rules are the same for every caller:
//
//   - The process runs in a process group of its own, so that a signal
//     reaches what it started and never the server's own group.
//   - When its own Timeout passes or the caller's context ends, the group
//     gets SIGTERM, never SIGKILL first: Nix kills its builders (which run
//     as nixbld users in sessions of their own, out of the group's reach)
//     only when it is asked to stop; a killed nix-build leaves them running.
//   - If it is still there after the Grace, it is killed; a process it
//     left behind that holds its output open cannot hang Wait beyond the
//     Grace either (exec.Cmd.WaitDelay).
//   - Once it has ended, whatever is left of its group is killed: nothing
//     it started outlives it.
//   - It dies with the server: when the server dies, however (kill -9, a
//     crash), the kernel sends the process SIGTERM (Linux's parent death
//     signal), on which Nix stops its builders and exits. See fork.go for
//     why that holds in a Go program.
//   - Its output is bounded: stdout is captured up to a limit (or goes to
//     the caller's writer), stderr (or both, combined) is kept as a tail of
//     a bounded size, where programs print why they failed.
//
// A Result says how the process ended: exit code or signal, whether it was
// stopped because its Timeout passed or because the caller's context ended,
// how long it ran, and the tail of its output. A non-zero exit is no error
// here: the caller knows what an exit code means.
//
// The package also formats that tail, the same way for every caller:
// LastLines for a log, ClientTail for the message a registry client sees.
package procrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Defaults of a Cmd's zero fields.
const (
	// DefaultGrace is the time between SIGTERM and the hard kill.
	DefaultGrace = 10 * time.Second
	// DefaultTailSize bounds the output kept in Result.Tail: its end,
	// where programs print why they failed (build logs can be long).
	DefaultTailSize = 256 << 10
	// DefaultStdoutLimit bounds the stdout captured in Result.Stdout.
	DefaultStdoutLimit = 64 << 20
	// DefaultParentDeathSignal is what a process gets when the server
	// dies: SIGTERM, on which Nix kills its builders (which run in
	// sessions of their own) and exits; SIGKILL would leave them running.
	DefaultParentDeathSignal = syscall.SIGTERM
)

// ErrTimeout is wrapped by the error of a process stopped because its
// Cmd.Timeout passed.
var ErrTimeout = errors.New("stopped at its timeout")

// ErrStdoutLimit is wrapped by the error of a process that wrote more than
// Cmd.StdoutLimit bytes to stdout; Result.Stdout holds the first ones.
var ErrStdoutLimit = errors.New("stdout longer than its limit")

// Cmd describes one process to run.
type Cmd struct {
	// Argv is the program and its arguments. A program without a slash
	// is looked up in PATH.
	Argv []string
	// Dir is the working directory; empty: the caller's.
	Dir string
	// Env is the whole environment ("KEY=value"); nil: the caller's.
	Env []string
	// Timeout bounds the run; zero: only the context does.
	Timeout time.Duration
	// Grace is the time between SIGTERM to the group and the hard kill;
	// zero: DefaultGrace. It also bounds how long Wait waits, after the
	// process has exited, for a process it left behind that holds its
	// output open.
	Grace time.Duration
	// Stdout receives stdout; nil: it is captured in Result.Stdout, at
	// most StdoutLimit bytes.
	Stdout io.Writer
	// Output, if set, also receives what the tail keeps (stderr, or both
	// with Combined) as it is written: a build's log, shown live. Its
	// errors are ignored; it must not block for long.
	Output io.Writer
	// StdoutLimit bounds the captured stdout; zero: DefaultStdoutLimit.
	StdoutLimit int
	// Combined sends stdout to the tail with stderr, in the order they
	// were written (Stdout and StdoutLimit are then unused).
	Combined bool
	// TailSize bounds Result.Tail; zero: DefaultTailSize.
	TailSize int
	// ParentDeathSignal is sent to the process by the kernel when the
	// server dies (Linux's PR_SET_PDEATHSIG; see fork.go); zero:
	// DefaultParentDeathSignal. It reaches the process only, not its
	// group: what the process started is its own to stop (Nix stops its
	// builders on SIGTERM).
	ParentDeathSignal syscall.Signal
}

// Result is how a process ended.
type Result struct {
	// Pid is the process id, which is also its process group's id.
	Pid int
	// Stdout is what it wrote to stdout, unless Cmd.Stdout or
	// Cmd.Combined sent it elsewhere.
	Stdout []byte
	// Tail is the end of stderr (of stdout and stderr with
	// Cmd.Combined): at most Cmd.TailSize bytes, starting at the start of
	// a line when the output was longer.
	Tail string
	// ExitCode is its exit status, or -1 when a signal ended it.
	ExitCode int
	// Signal is the signal that ended it; zero when it exited.
	Signal syscall.Signal
	// Duration is how long it ran.
	Duration time.Duration
	// TimedOut says that Cmd.Timeout passed and the process was stopped.
	TimedOut bool
	// CtxErr is the caller's context's error when it ended before the
	// process did (the process was stopped); nil otherwise.
	CtxErr error
}

// Stopped says that the process was stopped by the runner: its Timeout
// passed or the caller's context ended.
func (r Result) Stopped() bool { return r.TimedOut || r.CtxErr != nil }

// Success says that the process ran to its end and exited with status 0.
func (r Result) Success() bool { return !r.Stopped() && r.Signal == 0 && r.ExitCode == 0 }

// How is how the process ended, for messages: "exit status 3" or "killed
// by signal killed".
func (r Result) How() string {
	if r.Signal != 0 {
		return "killed by signal " + r.Signal.String()
	}
	return fmt.Sprintf("exit status %d", r.ExitCode)
}

// Process is a started process.
type Process struct {
	cmd    *exec.Cmd
	ctx    context.Context // the caller's
	tctx   context.Context // with the Timeout
	cancel context.CancelFunc
	c      Cmd
	stdout *limitBuffer
	tail   *tailBuffer
	start  time.Time
	done   chan struct{}
	res    Result
	err    error
}

// Start starts c under ctx. Its error is exec.Cmd.Start's, unchanged (it
// names the program); it also fails when ctx has already ended. Once
// started, the process is waited for (and its group killed) whether or not
// anyone calls Wait.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("procrun: no program to run")
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.TailSize <= 0 {
		c.TailSize = DefaultTailSize
	}
	if c.StdoutLimit <= 0 {
		c.StdoutLimit = DefaultStdoutLimit
	}
	if c.ParentDeathSignal == 0 {
		c.ParentDeathSignal = DefaultParentDeathSignal
	}
	p := &Process{ctx: ctx, c: c, tail: &tailBuffer{max: c.TailSize}, done: make(chan struct{})}
	if c.Timeout > 0 {
		p.tctx, p.cancel = context.WithTimeout(ctx, c.Timeout)
	} else {
		p.tctx, p.cancel = context.WithCancel(ctx)
	}

	cmd := exec.CommandContext(p.tctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	var tail io.Writer = p.tail
	if c.Output != nil {
		tail = &tee{main: p.tail, also: c.Output}
	}
	switch {
	case c.Combined:
		cmd.Stdout = tail
	case c.Stdout != nil:
		cmd.Stdout = c.Stdout
	default:
		p.stdout = &limitBuffer{max: c.StdoutLimit}
		cmd.Stdout = p.stdout
	}
	cmd.Stderr = tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: c.ParentDeathSignal}
	// SIGTERM to the whole group: the process may stop what it started
	// (Nix its builders) and exit.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	// Then, if it is still there, exec kills it.
	cmd.WaitDelay = c.Grace
	p.cmd = cmd

	p.start = time.Now()
	if err := startOnForkThread(cmd); err != nil {
		p.cancel()
		return nil, err
	}
	go p.wait()
	return p, nil
}

// Run starts c under ctx and waits for it; see Start and Wait.
func Run(ctx context.Context, c Cmd) (Result, error) {
	p, err := Start(ctx, c)
	if err != nil {
		return Result{}, err
	}
	return p.Wait()
}

// Pid is the process id, which is also its process group's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has ended and Wait has its result.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end (see Done) and returns how it ended.
// The error is nil when it ran to its end, whatever its exit status.
// Otherwise it wraps ErrTimeout when Cmd.Timeout passed; the caller's
// context's error when that ended first; exec.ErrWaitDelay, unwrapped,
// when it exited with status 0 but a process it left behind held its
// output open past the Grace (that process is killed); ErrStdoutLimit; or
// an error copying its output. Wait may be called any number of times.
func (p *Process) Wait() (Result, error) {
	<-p.done
	return p.res, p.err
}

func (p *Process) wait() {
	defer close(p.done)
	defer p.cancel()
	cmd := p.cmd
	pid := cmd.Process.Pid
	waitErr := cmd.Wait()
	// Whatever is left of the group. (A Nix builder lives in a session of
	// its own, out of reach, and Nix has already signalled it.)
	_ = syscall.Kill(-pid, syscall.SIGKILL)

	state := cmd.ProcessState // nil only if waiting itself failed
	res := Result{Pid: pid, Tail: p.tail.String(), ExitCode: state.ExitCode(), Duration: time.Since(p.start)}
	if state != nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	}
	if p.stdout != nil {
		res.Stdout = p.stdout.buf
	}
	name := p.c.Argv[0]
	var err error
	switch {
	case p.tctx.Err() != nil && p.ctx.Err() != nil:
		res.CtxErr = p.ctx.Err()
		err = fmt.Errorf("%s stopped: %w", name, res.CtxErr)
	case p.tctx.Err() != nil:
		res.TimedOut = true
		err = fmt.Errorf("%s ran longer than %s: %w", name, p.c.Timeout, ErrTimeout)
	case waitErr != nil && !isExitError(waitErr):
		// exec.ErrWaitDelay (only when the process exited with status
		// 0), or an error of the caller's Stdout writer.
		err = waitErr
	case p.stdout != nil && p.stdout.over:
		err = fmt.Errorf("%s: %w (%d bytes)", name, ErrStdoutLimit, p.c.StdoutLimit)
	}
	p.res, p.err = res, err
}

func isExitError(err error) bool {
	var exitErr *exec.ExitError
	return errors.As(err, &exitErr)
}

// limitBuffer keeps the first max bytes written to it, and takes (and
// drops) the rest, so that the process never blocks on a full pipe.
type limitBuffer struct {
	max  int
	buf  []byte
	over bool
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - len(b.buf); len(p) > room {
		p, b.over = p[:max(room, 0)], true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// tee writes to main, and to also, whose errors do not stop the output.
type tee struct {
	main, also io.Writer
}

func (t *tee) Write(p []byte) (int, error) {
	t.also.Write(p)
	return t.main.Write(p)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte // up to 2*max bytes, so that trimming is rare
	cut bool   // bytes were dropped from the front
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

// String is the last max bytes, from the start of a line if anything was
// dropped (a partial first line is dropped with it).
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, cut := t.buf, t.cut
	if len(b) > t.max {
		b, cut = b[len(b)-t.max:], true
	}
	if cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
