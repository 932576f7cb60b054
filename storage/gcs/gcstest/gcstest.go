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
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/nixport/nixport/storage/gcs"
	"github.com/nixport/nixport/storage/storagetest/toolserver"
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

// spec runs fake-gcs-server in memory, answering as the public host it
// listens on; it is up once it lists buckets.
var spec = toolserver.Spec{
	Name: "fake-gcs-server",
	Tool: "github.com/fsouza/fake-gcs-server",
	Args: func(addr string) []string {
		_, port, _ := net.SplitHostPort(addr)
		return []string{
			"-scheme", "http",
			"-host", "127.0.0.1",
			"-port", port,
			"-public-host", addr,
			"-external-url", "http://" + addr,
			"-backend", "memory",
			"-log-level", "warn",
		}
	},
	ReadyPath:   "/storage/v1/b",
	ReadyStatus: http.StatusOK,
}

// Start starts an emulator for the test, and stops it when the test ends.
func Start(t testing.TB) *Emulator {
	t.Helper()
	srv := toolserver.Start(t, spec)
	return &Emulator{Host: srv.Host, URL: srv.URL}
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
