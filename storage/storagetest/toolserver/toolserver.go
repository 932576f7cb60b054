// Package toolserver runs the server that the tests of a networked storage
// backend talk to (fake-gcs-server for GCS, versitygw for S3): a Go
// program pinned in go.mod as a tool, built once per test binary, started
// through procrun on 127.0.0.1 on a free port, and stopped when the test
// that started it ends. It may be stopped and started again on the same
// port meanwhile (Stop, Restart), as an outage. One starter for every
// backend's test server, so that each test package says only how its
// server is called and how it tells that it is up.
package toolserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixport/nixport/procrun"
)

// Timeouts of a server's life cycle.
const (
	buildTimeout = 10 * time.Minute
	startTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// tailSize is how much of a server's output is kept, for the log of a
// failed test.
const tailSize = 64 << 10

// Spec says how to run one kind of server.
type Spec struct {
	// Name names the server in errors and logs ("fake-gcs-server").
	Name string
	// Tool is the server's import path, as go.mod's tool directive names
	// it.
	Tool string
	// Args returns the server's arguments (after its executable) to
	// listen on addr, "127.0.0.1:port".
	Args func(addr string) []string
	// Env, if not nil, is the server's whole environment.
	Env []string
	// ReadyPath is the path of the URL polled until the server answers;
	// ReadyStatus, if not zero, the status the answer must have to mean
	// that the server is up (zero: any answer does).
	ReadyPath   string
	ReadyStatus int
}

// Server is a running server.
type Server struct {
	// Host is the server's "127.0.0.1:port"; URL is "http://" + Host.
	Host string
	URL  string

	spec Spec
	bin  string

	mu   sync.Mutex
	stop func() string // stops the running process; nil when stopped
}

var (
	binariesMu sync.Mutex
	binaries   = map[string]func() (string, error){} // by tool
)

// binary returns the path of the tool's executable, built (or found in the
// build cache) once per test binary by `go tool -n`, which prints the path
// instead of running the tool.
func binary(tool string) (string, error) {
	binariesMu.Lock()
	find, ok := binaries[tool]
	if !ok {
		find = sync.OnceValues(func() (string, error) { return build(tool) })
		binaries[tool] = find
	}
	binariesMu.Unlock()
	return find()
}

func build(tool string) (string, error) {
	res, err := procrun.Run(context.Background(), procrun.Cmd{
		Argv:    []string{"go", "tool", "-n", tool},
		Timeout: buildTimeout,
	})
	if err == nil && !res.Success() {
		err = fmt.Errorf("%s: %s", res.How(), strings.TrimSpace(res.Tail))
	}
	if err != nil {
		return "", fmt.Errorf("building go tool -n %s: %w", tool, err)
	}
	path := strings.TrimSpace(string(res.Stdout))
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		return "", fmt.Errorf("go tool -n %s printed %q, which is not an executable", tool, path)
	}
	return path, nil
}

// Start starts a server for the test, and stops it when the test ends.
func Start(t testing.TB, spec Spec) *Server {
	t.Helper()
	bin, err := binary(spec.Tool)
	if err != nil {
		t.Fatalf("%s: %v", spec.Name, err)
	}
	s := &Server{spec: spec, bin: bin}
	// A free port can be taken by someone else before the server binds
	// it; then the server exits at once, and another port is tried.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "http://" + s.Host
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting %s: %v", spec.Name, lastErr)
	}
	t.Cleanup(func() {
		output := s.halt()
		if t.Failed() && output != "" {
			t.Logf("%s at %s output (last 64 KiB):\n%s", spec.Name, s.Host, output)
		}
	})
	return s
}

// start runs the server on s.Host and waits until it answers.
func (s *Server) start() error {
	// The server runs until it is stopped: its context is then
	// cancelled, and it gets SIGTERM, and SIGKILL after stopTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	p, err := procrun.Start(ctx, procrun.Cmd{
		Argv: append([]string{s.bin}, s.spec.Args(s.Host)...),
		Env:  s.spec.Env,
		// Should the test binary die without cleaning up, the kernel
		// kills the server with it.
		ParentDeathSignal: syscall.SIGKILL,
		Grace:             stopTimeout,
		Combined:          true,
		TailSize:          tailSize,
	})
	if err != nil {
		cancel()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	// stop stops the server (if it still runs) and returns the end of its
	// output.
	stop := func() string {
		cancel()
		res, _ := p.Wait()
		return res.Tail
	}
	if err := s.waitReady(p); err != nil {
		return fmt.Errorf("%w; output:\n%s", err, stop())
	}
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	return nil
}

// halt stops the server if it runs, and returns the end of its output.
func (s *Server) halt() string {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return ""
	}
	return stop()
}

// Stop stops the server (SIGTERM, then SIGKILL after a grace): its
// clients' requests fail until Restart.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.halt()
}

// Restart starts the server again, on the same port: what it keeps on
// disk is there again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.halt()
	if err := s.start(); err != nil {
		t.Fatalf("restarting %s on %s: %v", s.spec.Name, s.Host, err)
	}
}

// waitReady polls the server until it answers as the spec wants, it exits,
// or startTimeout passes. No event says that a server is listening; the
// poll is bounded by its deadline and ends early if the process exits.
func (s *Server) waitReady(p *procrun.Process) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(s.URL + s.spec.ReadyPath)
		if err == nil {
			resp.Body.Close()
			if s.spec.ReadyStatus == 0 || resp.StatusCode == s.spec.ReadyStatus {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-p.Done():
			res, err := p.Wait()
			if err == nil {
				err = errors.New(res.How())
			}
			return fmt.Errorf("%s exited before it was ready: %v", s.spec.Name, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", s.spec.Name, startTimeout, err)
		}
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
