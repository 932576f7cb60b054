// Package s3test runs versitygw, a real S3 gateway over a local directory,
// pinned in go.mod as a tool, for tests that need a real S3 API: the s3
// backend's own, and those of packages built on it (several nixport
// instances sharing one bucket, say).
//
//	srv := s3test.Start(t)                        // one gateway process per test
//	b := srv.NewBackend(t, s3store.Options{})     // a fresh bucket each call
//
// The gateway listens on 127.0.0.1 only, keeps its buckets as directories
// of a temporary directory, and is stopped when the test that started it
// ends. It may be stopped and started again on the same directory and
// port meanwhile (Stop, Restart), as an outage. Clients reach it through
// s3store.Options.Endpoint with the static credentials here; the process
// environment is left alone.
package s3test

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nixport/nixport/procrun"
	s3store "github.com/nixport/nixport/storage/s3"
	"github.com/nixport/nixport/storage/storagetest/faultproxy"
)

// toolPackage is the gateway's import path, as go.mod's tool directive
// names it.
const toolPackage = "github.com/versity/versitygw/cmd/versitygw"

// The gateway's root account, and the region it signs for.
const (
	AccessKey = "nixport-test-access"
	SecretKey = "nixport-test-secret-key"
	Region    = "us-east-1"
)

// Timeouts of the gateway's life cycle.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// Server is a running versitygw.
type Server struct {
	// Host is the gateway's "127.0.0.1:port"; URL is "http://" + Host,
	// for s3store.Options.Endpoint.
	Host string
	URL  string
	// Dir is the gateway's root: each bucket is a directory of it.
	Dir string

	bin     string
	buckets atomic.Int64 // names fresh buckets

	mu   sync.Mutex
	stop func() string // stops the running process; nil when stopped
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// binary returns the path of the gateway's executable, built (or found in
// the build cache) once per test binary by `go tool -n`, which prints the
// path instead of running the tool.
func binary() (string, error) {
	binaryOnce.Do(func() {
		res, err := procrun.Run(context.Background(), procrun.Cmd{
			Argv:    []string{"go", "tool", "-n", toolPackage},
			Timeout: 10 * time.Minute,
		})
		if err == nil && !res.Success() {
			err = fmt.Errorf("%s: %s", res.How(), strings.TrimSpace(res.Tail))
		}
		if err != nil {
			binaryErr = fmt.Errorf("building versitygw (go tool -n %s): %w", toolPackage, err)
			return
		}
		binaryPath = strings.TrimSpace(string(res.Stdout))
		if fi, err := os.Stat(binaryPath); err != nil || fi.IsDir() {
			binaryErr = fmt.Errorf("go tool -n printed %q, which is not an executable", binaryPath)
		}
	})
	return binaryPath, binaryErr
}

// Start starts a gateway for the test, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: t.TempDir(), bin: bin}
	// A free port can be taken by someone else before the gateway binds
	// it; then the gateway exits at once, and another port is tried.
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
		t.Fatalf("starting versitygw: %v", lastErr)
	}
	t.Cleanup(func() {
		output := s.halt()
		if t.Failed() && output != "" {
			t.Logf("versitygw at %s output (last 64 KiB):\n%s", s.Host, output)
		}
	})
	return s
}

// start runs the gateway on s.Host and s.Dir and waits until it answers.
func (s *Server) start() error {
	// The gateway runs until it is stopped: its context is then
	// cancelled, and it gets SIGTERM, and SIGKILL after stopTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	p, err := procrun.Start(ctx, procrun.Cmd{
		Argv: []string{s.bin, "--port", s.Host, "--quiet", "--keep-alive", "posix", s.Dir},
		Env:  append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region),
		// Should the test binary die without cleaning up, the kernel
		// kills the gateway with it.
		ParentDeathSignal: syscall.SIGKILL,
		Grace:             stopTimeout,
		Combined:          true,
		TailSize:          64 << 10,
	})
	if err != nil {
		cancel()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	stop := func() string {
		cancel()
		res, _ := p.Wait()
		return res.Tail
	}
	if err := waitReady(s.URL, p); err != nil {
		return fmt.Errorf("%w; output:\n%s", err, stop())
	}
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	return nil
}

// halt stops the gateway if it runs, and returns the end of its output.
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

// Stop stops the gateway (SIGTERM, then SIGKILL after a grace): its
// clients' requests fail until Restart.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.halt()
}

// Restart starts the gateway again, on the same port and directory: what
// it stored before is there again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.halt()
	if err := s.start(); err != nil {
		t.Fatalf("restarting versitygw on %s: %v", s.Host, err)
	}
}

// waitReady polls the gateway until it answers (an unsigned request gets
// a 403: it is up), it exits, or startTimeout passes.
func waitReady(baseURL string, p *procrun.Process) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(baseURL + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.Done():
			res, err := p.Wait()
			if err == nil {
				err = errors.New(res.How())
			}
			return fmt.Errorf("versitygw exited before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw not ready after %s: %w", startTimeout, err)
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

// Credentials are the gateway's root credentials.
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// Client returns an S3 client talking to the gateway directly.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		Credentials:  Credentials(),
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
	})
}

// NewBucket creates a bucket with a name not used before on this gateway,
// and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("nixport-test-%d", s.buckets.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}

// Env returns the environment a nixport process needs to use the bucket
// on this gateway: the backend, the bucket, the endpoint, and credentials
// in the variables the AWS chain reads first, with every other source
// (shared files, instance metadata) turned off, so that nothing is looked
// up beyond 127.0.0.1.
func (s *Server) Env(bucket string) []string {
	return []string{
		"NIXERY_STORAGE_BACKEND=s3",
		"S3_BUCKET=" + bucket,
		"S3_ENDPOINT=" + s.URL,
		"S3_FORCE_PATH_STYLE=true",
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/nonexistent/nixport-test/aws-config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/nixport-test/aws-credentials",
	}
}

// Options completes opts for a backend on the gateway: a fresh bucket if
// opts.Bucket is empty, the gateway as Endpoint (unless opts.Endpoint
// already names another address, a proxy's), path-style addressing, its
// credentials and region, and short retry pauses, so that tests with
// faults stay quick.
func (s *Server) Options(t testing.TB, opts s3store.Options) s3store.Options {
	t.Helper()
	if opts.Bucket == "" {
		opts.Bucket = s.NewBucket(t)
	}
	if opts.Endpoint == "" {
		opts.Endpoint = s.URL
	}
	opts.ForcePathStyle = true
	if opts.Region == "" {
		opts.Region = Region
	}
	if opts.Credentials == nil {
		opts.Credentials = Credentials()
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
	return opts
}

// NewBackend returns a backend on the gateway, with opts completed by
// Options.
func (s *Server) NewBackend(t testing.TB, opts s3store.Options) *s3store.Backend {
	t.Helper()
	b, err := s3store.New(t.Context(), s.Options(t, opts))
	if err != nil {
		t.Fatalf("s3store.New: %v", err)
	}
	return b
}

// StartProxy starts a fault proxy in front of the gateway, stopped when
// the test ends. It passes requests on as signed (SigV4 signs the Host
// header and others), and injects errors with S3's XML error body.
func (s *Server) StartProxy(t testing.TB, faults faultproxy.Faults) *faultproxy.Proxy {
	t.Helper()
	return faultproxy.Start(t, faultproxy.Options{Target: s.URL, Signed: true, ErrorBody: s3ErrorBody}, faults)
}

func s3ErrorBody(status int) (string, []byte) {
	code := "ServiceUnavailable"
	switch status {
	case http.StatusTooManyRequests:
		code = "TooManyRequests"
	case http.StatusNotImplemented:
		code = "NotImplemented"
	}
	return "application/xml", fmt.Appendf(nil, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by the test proxy</Message><RequestId>0</RequestId></Error>`, code)
}
