// Package gcstest runs fake-gcs-server, the GCS emulator pinned in go.mod
// as a tool, for tests that need a real GCS API: the gcs backend's own, and
// those of packages built on it (several nixport instances sharing one
// bucket, say).
//
//	emu := gcstest.Start(t)          // one emulator process per test
//	b := emu.NewBackend(t, gcs.Options{})  // a fresh bucket each call
//
// The emulator listens on 127.0.0.1 only, keeps everything in memory, and
// is stopped when the test that started it ends. Clients reach it through
// gcs.Options.Endpoint; the process environment (STORAGE_EMULATOR_HOST) is
// left alone, so tests may run in parallel with other emulators or none.
package gcstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/nixport/nixport/procrun"
	"github.com/nixport/nixport/storage/gcs"
)

// toolPackage is the emulator's import path, as go.mod's tool directive
// names it.
const toolPackage = "github.com/fsouza/fake-gcs-server"

// Timeouts of the emulator's life cycle.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// Emulator is a running fake-gcs-server.
type Emulator struct {
	// Host is the emulator's "127.0.0.1:port", which is also its public
	// host: requests must name it exactly in their Host header.
	Host string
	// URL is "http://" + Host, for gcs.Options.Endpoint.
	URL string

	buckets atomic.Int64 // names fresh buckets
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// binary returns the path of the emulator's executable, built (or found in
// the build cache) once per test binary by `go tool -n`, which prints the
// path instead of running the tool.
func binary() (string, error) {
	binaryOnce.Do(func() {
		res, err := procrun.Run(context.Background(), procrun.Cmd{
			Argv:    []string{"go", "tool", "-n", toolPackage},
			Timeout: 5 * time.Minute,
		})
		if err == nil && !res.Success() {
			err = fmt.Errorf("%s: %s", res.How(), strings.TrimSpace(res.Tail))
		}
		if err != nil {
			binaryErr = fmt.Errorf("building fake-gcs-server (go tool -n %s): %w", toolPackage, err)
			return
		}
		binaryPath = strings.TrimSpace(string(res.Stdout))
		if fi, err := os.Stat(binaryPath); err != nil || fi.IsDir() {
			binaryErr = fmt.Errorf("go tool -n printed %q, which is not an executable", binaryPath)
		}
	})
	return binaryPath, binaryErr
}

// Start starts an emulator for the test, and stops it when the test ends.
func Start(t testing.TB) *Emulator {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	// A free port can be taken by someone else before the emulator binds
	// it; then the emulator exits at once, and another port is tried.
	var lastErr error
	for range 3 {
		e, err := start(t, bin)
		if err == nil {
			return e
		}
		lastErr = err
	}
	t.Fatalf("starting fake-gcs-server: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Emulator, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	e := &Emulator{Host: host, URL: "http://" + host}
	// The emulator runs until the test ends: then its context is
	// cancelled, and it gets SIGTERM, and SIGKILL after stopTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	p, err := procrun.Start(ctx, procrun.Cmd{
		Argv: []string{bin,
			"-scheme", "http",
			"-host", "127.0.0.1",
			"-port", strconv.Itoa(port),
			"-public-host", host,
			"-external-url", e.URL,
			"-backend", "memory",
			"-log-level", "warn",
		},
		Grace:    stopTimeout,
		Combined: true,
		TailSize: 64 << 10,
		// Should the test binary die without cleaning up, the kernel
		// kills the emulator with it.
		ParentDeathSignal: syscall.SIGKILL,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	// stop stops the emulator (if it still runs) and returns the end of
	// its output.
	stop := func() string {
		cancel()
		res, _ := p.Wait()
		return res.Tail
	}
	if err := waitReady(e.URL, p); err != nil {
		return nil, fmt.Errorf("%w; output:\n%s", err, stop())
	}
	t.Cleanup(func() {
		output := stop()
		if t.Failed() {
			t.Logf("fake-gcs-server at %s output (last 64 KiB):\n%s", e.Host, output)
		}
	})
	return e, nil
}

// waitReady polls the emulator until it answers, it exits, or startTimeout
// passes.
func waitReady(baseURL string, p *procrun.Process) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(baseURL + "/storage/v1/b")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
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
			return fmt.Errorf("fake-gcs-server exited before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fake-gcs-server not ready after %s: %w", startTimeout, err)
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

// CreateBucket creates a bucket (names need at least 3 characters).
func (e *Emulator) CreateBucket(t testing.TB, name string) {
	t.Helper()
	body, err := json.Marshal(map[string]string{"name": name})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), "POST", e.URL+"/storage/v1/b?project=nixport-test", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var msg bytes.Buffer
		msg.ReadFrom(resp.Body)
		t.Fatalf("creating bucket %s: %s: %s", name, resp.Status, bytes.TrimSpace(msg.Bytes()))
	}
}

// NewBucket creates a bucket with a name not used before on this emulator,
// and returns the name.
func (e *Emulator) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("nixport-test-%d", e.buckets.Add(1))
	e.CreateBucket(t, name)
	return name
}

// Client returns a GCS client talking to the emulator directly, closed when
// the test ends.
func (e *Emulator) Client(t testing.TB) *gstorage.Client {
	t.Helper()
	c, err := gstorage.NewClient(context.Background(),
		option.WithEndpoint(e.URL+"/storage/v1/"),
		option.WithoutAuthentication(),
	)
	if err != nil {
		t.Fatalf("creating GCS client for the emulator: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Options completes opts for a backend on the emulator: a fresh bucket if
// opts.Bucket is empty, the emulator as Endpoint (unless opts.Client is
// set and opts.Endpoint already names another address), and short retry
// pauses, so that tests with faults stay quick, and a refresh slack of a
// nanosecond, so that every RefreshBlob writes.
func (e *Emulator) Options(t testing.TB, opts gcs.Options) gcs.Options {
	t.Helper()
	if opts.Bucket == "" {
		opts.Bucket = e.NewBucket(t)
	}
	if opts.Endpoint == "" {
		opts.Endpoint = e.URL
	}
	if opts.RetryInitial == 0 {
		opts.RetryInitial = 5 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 200 * time.Millisecond
	}
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	if opts.RefreshSlack == 0 {
		// Every RefreshBlob writes, as the shared suite expects: tests
		// cannot wait out the default slack.
		opts.RefreshSlack = time.Nanosecond
	}
	return opts
}

// NewBackend returns a backend on the emulator, with opts completed by
// Options, closed when the test ends.
func (e *Emulator) NewBackend(t testing.TB, opts gcs.Options) *gcs.Backend {
	t.Helper()
	b, err := gcs.New(t.Context(), e.Options(t, opts))
	if err != nil {
		t.Fatalf("gcs.New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
