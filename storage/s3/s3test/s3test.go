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
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3store "github.com/nixport/nixport/storage/s3"
	"github.com/nixport/nixport/storage/storagetest/faultproxy"
	"github.com/nixport/nixport/storage/storagetest/toolserver"
)

// The gateway's root account, and the region it signs for.
const (
	AccessKey = "nixport-test-access"
	SecretKey = "nixport-test-secret-key"
	Region    = "us-east-1"
)

// Server is a running versitygw. Its Host is the gateway's
// "127.0.0.1:port"; its URL is "http://" + Host, for
// s3store.Options.Endpoint; Stop and Restart make an outage.
type Server struct {
	*toolserver.Server
	// Dir is the gateway's root: each bucket is a directory of it.
	Dir string

	buckets atomic.Int64 // names fresh buckets
}

// Start starts a gateway for the test, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	srv := toolserver.Start(t, toolserver.Spec{
		Name: "versitygw",
		Tool: "github.com/versity/versitygw/cmd/versitygw",
		Args: func(addr string) []string {
			return []string{"--port", addr, "--quiet", "--keep-alive", "posix", dir}
		},
		Env: append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey, "VGW_REGION="+Region),
		// An unsigned request gets a 403: it is up.
		ReadyPath: "/",
	})
	return &Server{Server: srv, Dir: dir}
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
