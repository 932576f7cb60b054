package nix

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/config"
	"github.com/nixport/nixport/errcode"
)

// needNix skips a test when Nix or the host busybox the test package set
// is made of is missing. CI installs both (nix-bin, busybox-static).
func needNix(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"nix-instantiate", "nix-store", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: this test needs Nix (Debian nix-bin)", tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("/bin/busybox is missing: this test needs Debian busybox-static")
	}
}

// procLog records the command line and pid of every Nix process a driver
// starts.
type procLog struct {
	mu    sync.Mutex
	argv  [][]string
	pids  []int
	onPid func(pid int)
}

func (p *procLog) record(argv []string, pid int) {
	p.mu.Lock()
	p.argv = append(p.argv, argv)
	p.pids = append(p.pids, pid)
	f := p.onPid
	p.mu.Unlock()
	if f != nil {
		f(pid)
	}
}

func (p *procLog) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.argv, p.pids = nil, nil
}

func (p *procLog) all() ([][]string, []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.argv...), append([]int(nil), p.pids...)
}

// testLogger sends the driver's log to the test's log.
func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDriver starts a driver for the test; the zero Options use the
// builtin package set.
func newDriver(t testing.TB, opts Options) (*Driver, *procLog) {
	t.Helper()
	needNix(t)
	pl := &procLog{}
	if opts.OnProcess == nil {
		opts.OnProcess = pl.record
	}
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60e9
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// The tests count the processes of requests, not the driver's
	// start-up (nix-store --version, git rev-parse HEAD).
	pl.reset()
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d, pl
}

func builtin() config.PackageSource { return config.PackageSource{Kind: config.SourceBuiltin} }

const hostSystem = "x86_64-linux"

// wantCode fails unless err is an *errcode.Error with code.
func wantCode(t testing.TB, err error, code errcode.Code) *errcode.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	e, ok := errcode.As(err)
	if !ok {
		t.Fatalf("got %v (%T), want an *errcode.Error %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got %s (%v), want %s", e.Code, err, code)
	}
	return e
}

// children lists the pids whose parent is pid, from /proc.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(p); ok && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// alive says whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

func isErr(err, target error) bool { return errors.Is(err, target) }
