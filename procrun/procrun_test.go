package procrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixport/nixport/testkit"
)

// watch is a Cmd.Stdout that lets a test wait until the process has
// printed some words (that it is ready, say) and read what it printed.
type watch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	words []string
	ready chan struct{}
	once  sync.Once
}

func newWatch(words ...string) *watch { return &watch{words: words, ready: make(chan struct{})} }

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for _, word := range w.words {
		if !strings.Contains(w.buf.String(), word) {
			return len(p), nil
		}
	}
	w.once.Do(func() { close(w.ready) })
	return len(p), nil
}

func (w *watch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// pids are the numbers among the words of s.
func pids(s string) []int {
	var out []int
	for _, f := range strings.Fields(s) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestRun(t *testing.T) {
	var lines strings.Builder
	for i := range 1000 {
		lines.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	type check func(t *testing.T, res Result, err error, out *watch)
	tests := []struct {
		name string
		cmd  Cmd
		// stop: "" lets the process end; "cancel" cancels the caller's
		// context once it printed every word of ready (Cmd.Stdout is then
		// a watch); "deadline" gives the caller's context a short
		// deadline; "writer" sends stdout to a watch.
		stop  string
		ready []string
		check check
	}{
		{name: "exit status, stdout and the stderr tail",
			cmd: Cmd{Argv: sh("echo out; echo err >&2; exit 3")},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || res.ExitCode != 3 || res.Signal != 0 || res.Success() || res.Stopped() ||
					string(res.Stdout) != "out\n" || res.Tail != "err\n" || res.How() != "exit status 3" || res.Pid == 0 {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "success, in Dir with Env",
			cmd: Cmd{Argv: sh(`pwd; echo "$X"`), Dir: "/usr", Env: []string{"X=y z"}},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || !res.Success() || string(res.Stdout) != "/usr\ny z\n" || res.How() != "exit status 0" {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "killed by a signal of its own",
			cmd: Cmd{Argv: sh("kill -KILL $$")},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || res.Signal != syscall.SIGKILL || res.ExitCode != -1 || res.Stopped() || res.How() != "killed by signal killed" {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "its timeout: SIGTERM ends it, before the grace",
			cmd: Cmd{Argv: []string{"sleep", "1000"}, Timeout: 50 * time.Millisecond, Grace: time.Minute},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || !res.TimedOut || res.CtxErr != nil ||
					res.Signal != syscall.SIGTERM || !res.Stopped() || res.Success() {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "the caller's deadline is not its timeout",
			cmd:  Cmd{Argv: []string{"sleep", "1000"}, Timeout: time.Hour, Grace: time.Minute},
			stop: "deadline",
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) || res.TimedOut ||
					!errors.Is(res.CtxErr, context.DeadlineExceeded) || res.Signal != syscall.SIGTERM {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "the caller cancels",
			cmd:  Cmd{Argv: sh("echo ready; exec sleep 1000"), Grace: time.Minute},
			stop: "cancel", ready: []string{"ready"},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, context.Canceled) || res.TimedOut || !errors.Is(res.CtxErr, context.Canceled) || res.Signal != syscall.SIGTERM {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "a process that ignores SIGTERM is killed after the grace",
			cmd:  Cmd{Argv: sh("trap '' TERM; echo ready; exec sleep 1000"), Grace: 200 * time.Millisecond},
			stop: "cancel", ready: []string{"ready"},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, context.Canceled) || res.Signal != syscall.SIGKILL || res.Duration < 200*time.Millisecond {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "a child that ignores SIGTERM is killed with the group",
			cmd: Cmd{Argv: sh("(trap '' TERM; echo child-ready; exec sleep 1000) & echo $! parent-ready; exec sleep 1000"),
				Grace: 200 * time.Millisecond},
			stop: "cancel", ready: []string{"child-ready", "parent-ready"},
			check: func(t *testing.T, res Result, err error, out *watch) {
				if !errors.Is(err, context.Canceled) || res.Signal != syscall.SIGTERM {
					t.Errorf("%+v, %v", res, err)
				}
				testkit.WaitGone(t, pids(out.String())...)
			}},
		{name: "a child that keeps the output open is killed and does not hang Wait",
			cmd: Cmd{Argv: sh("sleep 1000 & echo $!"), Grace: 200 * time.Millisecond},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, exec.ErrWaitDelay) || res.ExitCode != 0 || res.Stopped() {
					t.Errorf("%+v, %v", res, err)
				}
				testkit.WaitGone(t, pids(string(res.Stdout))...)
			}},
		{name: "a child left behind is killed when the process ends",
			cmd: Cmd{Argv: sh("sleep 1000 >/dev/null 2>&1 & echo $!")},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || !res.Success() {
					t.Errorf("%+v, %v", res, err)
				}
				testkit.WaitGone(t, pids(string(res.Stdout))...)
			}},
		{name: "stdout beyond its limit",
			cmd: Cmd{Argv: sh("head -c 100000 /dev/zero; echo done >&2"), StdoutLimit: 1000},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if !errors.Is(err, ErrStdoutLimit) || len(res.Stdout) != 1000 || res.ExitCode != 0 || res.Tail != "done\n" {
					t.Errorf("%d bytes, %+v, %v", len(res.Stdout), res.Tail, err)
				}
			}},
		{name: "the tail is bounded and starts at a line",
			cmd: Cmd{Argv: []string{"sh", "-c", `printf %s "$0" >&2`, lines.String()}, TailSize: 100},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || len(res.Tail) > 100 || !strings.HasPrefix(res.Tail, "line ") || !strings.HasSuffix(res.Tail, "\nline 999\n") {
					t.Errorf("tail %q, %v", res.Tail, err)
				}
			}},
		{name: "combined output, in order",
			cmd: Cmd{Argv: sh("echo a; echo b >&2; echo c"), Combined: true},
			check: func(t *testing.T, res Result, err error, _ *watch) {
				if err != nil || res.Tail != "a\nb\nc\n" || res.Stdout != nil {
					t.Errorf("%+v, %v", res, err)
				}
			}},
		{name: "stdout to the caller's writer",
			cmd:  Cmd{Argv: sh("echo hello; echo err >&2")},
			stop: "writer",
			check: func(t *testing.T, res Result, err error, out *watch) {
				if err != nil || out.String() != "hello\n" || res.Stdout != nil || res.Tail != "err\n" {
					t.Errorf("%+v, %q, %v", res, out.String(), err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out *watch
			switch tt.stop {
			case "deadline":
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
			case "cancel":
				out = newWatch(tt.ready...)
				tt.cmd.Stdout = out
			case "writer":
				out = newWatch("never printed")
				tt.cmd.Stdout = out
			}
			p, err := Start(ctx, tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if tt.stop == "cancel" {
				select {
				case <-out.ready:
					cancel()
				case <-p.Done():
					t.Fatalf("it ended before it was ready: %q", out.String())
				}
			}
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				syscall.Kill(-p.Pid(), syscall.SIGKILL)
				t.Fatal("Wait hangs")
			}
			res, err := p.Wait()
			if res.Pid != p.Pid() {
				t.Errorf("Result.Pid %d, Pid() %d", res.Pid, p.Pid())
			}
			tt.check(t, res, err, out)
			// Its group is gone too.
			if err := syscall.Kill(-res.Pid, 0); !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.EPERM) {
				// A group of zombies answers kill(0) too: check its
				// members one by one when there are any.
				testkit.WaitGone(t, groupMembers(t, res.Pid)...)
			}
		})
	}
}

// groupMembers are the processes of process group pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name: state ppid pgrp ...
		i := bytes.LastIndexByte(data, ')')
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			out = append(out, pid)
		}
	}
	if len(out) == 0 {
		out = []int{pgid}
	}
	return out
}

func TestStartFails(t *testing.T) {
	if _, err := Start(context.Background(), Cmd{Argv: []string{"/nonexistent/program"}}); err == nil ||
		!strings.Contains(err.Error(), "/nonexistent/program") {
		t.Errorf("Start: %v, want exec's error naming the program", err)
	}
	if _, err := Start(context.Background(), Cmd{}); err == nil {
		t.Error("Start with no program succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Cmd{Argv: []string{"true"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start under an ended context: %v", err)
	}
}

func TestRunWaitsOnce(t *testing.T) {
	p, err := Start(context.Background(), Cmd{Argv: sh("echo x")})
	if err != nil {
		t.Fatal(err)
	}
	a, errA := p.Wait()
	b, errB := p.Wait()
	if errA != nil || errB != nil || string(a.Stdout) != "x\n" || string(b.Stdout) != "x\n" {
		t.Errorf("%+v %v; %+v %v", a, errA, b, errB)
	}
	res, err := Run(context.Background(), Cmd{Argv: sh("exit 7")})
	if err != nil || res.ExitCode != 7 {
		t.Errorf("Run: %+v, %v", res, err)
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"short", 10, []string{"a\n", "b"}, "a\nb"},
		{"exactly max", 4, []string{"ab\nc"}, "ab\nc"},
		{"cut: from the start of a line", 10, []string{"line 0\n", "line 1\n", "line 2\n", "line 3\n", "line 4\n",
			"line 5\n", "line 6\n", "line 7\n", "line 8\n", "line 9\n"}, "line 9\n"},
		{"cut inside one write", 8, []string{"aaaa\nbbbb\ncc\n"}, "cc\n"},
		{"cut, no newline left: the last bytes", 4, []string{"abcdefghijkl"}, "ijkl"},
		{"many small writes", 6, strings.Split(strings.Repeat("x\n", 100), ""), "x\nx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: tt.max}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(b.buf) > 2*tt.max {
				t.Errorf("holds %d bytes, max %d", len(b.buf), tt.max)
			}
		})
	}
}

// TestOutputSeesWhatTheTailKeeps: Output gets stderr (or both, combined)
// as it is written, and a failing Output does not stop the process's
// output.
func TestOutputSeesWhatTheTailKeeps(t *testing.T) {
	tests := []struct {
		name     string
		cmd      Cmd
		want     string
		failing  bool
		wantTail string
	}{
		{"stderr", Cmd{Argv: sh("echo out; echo err >&2")}, "err\n", false, "err\n"},
		{"combined", Cmd{Argv: sh("echo a; echo b >&2"), Combined: true}, "a\nb\n", false, "a\nb\n"},
		{"a failing Output", Cmd{Argv: sh("echo x >&2; echo y >&2")}, "", true, "x\ny\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			cmd := tt.cmd
			cmd.Output = &got
			if tt.failing {
				cmd.Output = failingWriter{}
			}
			res, err := Run(context.Background(), cmd)
			if err != nil || !res.Success() {
				t.Fatalf("Run: %+v %v", res, err)
			}
			if !tt.failing && got.String() != tt.want {
				t.Errorf("Output got %q, want %q", got.String(), tt.want)
			}
			if res.Tail != tt.wantTail {
				t.Errorf("tail %q, want %q", res.Tail, tt.wantTail)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("nobody listens") }

// TestParentDeath: when the server dies by SIGKILL (here a helper process
// standing in for it), what it ran gets SIGTERM from the kernel, and not
// only once it would have ended by itself.
func TestParentDeath(t *testing.T) {
	if os.Getenv("PROCRUN_TEST_PARENT") != "" {
		runParent()
		return
	}
	marker := filepath.Join(t.TempDir(), "signalled")
	helper := exec.Command(os.Args[0], "-test.run=^TestParentDeath$")
	helper.Env = append(os.Environ(), "PROCRUN_TEST_PARENT="+marker)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Wait()
	defer helper.Process.Kill()
	// The helper prints the pid of the process it started once that
	// process is ready (its trap set).
	var line [64]byte
	n, err := out.Read(line[:])
	if err != nil {
		t.Fatalf("reading the helper's child's pid: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("the helper printed %q", line[:n])
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	testkit.WaitGone(t, child) // it would sleep for 600 s
	got, err := os.ReadFile(marker)
	if err != nil || string(got) != "TERM\n" {
		t.Errorf("the child ended without SIGTERM: %q %v", got, err)
	}
}

// runParent is the helper of TestParentDeath: it runs a shell that writes
// "TERM" to the marker file on SIGTERM, prints the shell's pid, and waits
// to be killed.
func runParent() {
	marker := os.Getenv("PROCRUN_TEST_PARENT")
	ready := newWatch("ready")
	p, err := Start(context.Background(), Cmd{
		Argv:   []string{"/bin/sh", "-c", `trap 'echo TERM > "$0"; kill $!; exit 0' TERM; sleep 600 & echo ready; wait`, marker},
		Stdout: ready,
	})
	if err != nil {
		os.Exit(3)
	}
	<-ready.ready
	os.Stdout.WriteString(strconv.Itoa(p.Pid()) + "\n")
	select {}
}

// TestForkThreadOutlivesLockedThreads: a process started from a goroutine
// whose thread the runtime then ends (it returns while locked to its
// thread) does not get the parent death signal: procrun forks from a
// thread of its own that never ends.
func TestForkThreadOutlivesLockedThreads(t *testing.T) {
	const n = 8
	type started struct {
		p   *Process
		tid int
		err error
	}
	results := make(chan started, n)
	for range n {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			p, err := Start(t.Context(), Cmd{Argv: []string{"sleep", "600"}})
			results <- started{p, syscall.Gettid(), err}
		}()
	}
	var procs []*Process
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		procs = append(procs, r.p)
		if r.tid == os.Getpid() {
			continue // the main thread: the runtime never ends it
		}
		// Wait for the kernel to be done with the thread: the parent
		// death signal, were it due, has been sent by then.
		task := "/proc/self/task/" + strconv.Itoa(r.tid)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("thread %d still runs 30 s after its locked goroutine returned", r.tid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A process that got SIGTERM already dies of it whatever comes next.
	for _, p := range procs {
		syscall.Kill(p.Pid(), syscall.SIGKILL)
		res, _ := p.Wait()
		if res.Signal != syscall.SIGKILL {
			t.Errorf("process %d ended by %s, want the test's SIGKILL: it was signalled when a thread ended", res.Pid, res.How())
		}
	}
}
