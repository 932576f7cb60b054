package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/filesystem"
)

func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Request("manifest", "GET", 200, time.Millisecond)
	m.BlobBytes(10)
	m.CacheLookup(CacheMemory, true)
	m.BuildEnded("nix", BuildSucceeded)
	m.BuildPhase(PhasePlan, time.Second)
	m.NixStoreBytes(1)
	m.NixCollected(1, nil)
	m.BlobGCRun(nil)
	m.BlobGCDeleted(1)
	m.BuildStates(func() (int, int) { return 0, 0 })
	fs, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Storage(fs) != storage.Backend(fs) {
		t.Error("a nil Metrics wrapped the backend")
	}
}

func TestKnownMethod(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"GET", "GET"}, {"HEAD", "HEAD"}, {"POST", "POST"}, {"DELETE", "DELETE"},
		{"get", "other"}, {"BREW", "other"}, {"", "other"}, {strings.Repeat("X", 1000), "other"},
	} {
		if got := knownMethod(tt.in); got != tt.want {
			t.Errorf("knownMethod(%.20q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStorageResult(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("reading x: %w", storage.ErrNotFound), "not_found"},
		{fmt.Errorf("creating x: %w", storage.ErrExists), "exists"},
		{&storage.LeaseHeldError{Name: "l", Holder: "h"}, "held"},
		{fmt.Errorf("commit: %w", storage.ErrDigestMismatch), "mismatch"},
		{fmt.Errorf("deleting x: %w", storage.ErrBlobRecent), "recent"},
		{errors.New("disk on fire"), "error"},
	} {
		if got := storageResult(tt.err); got != tt.want {
			t.Errorf("storageResult(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestStorageCounts: the wrapper counts each operation once with its
// result, and keeps the backend's lease side.
func TestStorageCounts(t *testing.T) {
	m := New()
	fs, err := filesystem.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Storage(fs)
	if _, ok := b.(storage.Leaser); !ok {
		t.Fatal("the wrapper hides the filesystem backend's leases")
	}
	if _, ok := b.(io.Closer); !ok {
		t.Fatal("the wrapper has no Close")
	}
	ctx := context.Background()
	count := func(op, result string) float64 {
		return testutil.ToFloat64(m.storageOps.WithLabelValues("filesystem", op, result))
	}

	b.PutObject(ctx, "a/b", []byte("x"))
	b.CreateObject(ctx, "a/b", []byte("y"))
	b.GetObject(ctx, "a/b")
	b.GetObject(ctx, "a/missing")
	data := []byte("hello")
	info, err := storage.PutBlob(ctx, b, "text/plain", digest.FromBytes(data), int64(len(data)), strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storage.PutBlob(ctx, b, "text/plain", digest.FromBytes([]byte("other")), -1, strings.NewReader("hello")); err == nil {
		t.Fatal("a wrong digest was stored")
	}
	w, err := b.NewBlobWriter(ctx, "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	w.Cancel()
	w.Cancel()
	r, _, err := b.OpenBlob(ctx, info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	l, err := b.(storage.Leaser).TryLease(ctx, "leases/x", "me", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.(storage.Leaser).TryLease(ctx, "leases/x", "you", time.Minute); err == nil {
		t.Fatal("a held lease was taken")
	}
	l.Renew(ctx)
	l.Release(ctx)
	if _, err := b.RefreshBlob(ctx, info.Digest); err != nil {
		t.Fatal(err)
	}
	for _, err := range b.ListBlobs(ctx) {
		if err != nil {
			t.Fatal(err)
		}
	}
	b.DeleteBlob(ctx, info.Digest, time.Now().Add(-time.Hour))
	b.DeleteBlob(ctx, info.Digest, time.Now().Add(time.Hour))

	for _, tt := range []struct {
		op, result string
		want       float64
	}{
		{opPutObject, "ok", 1},
		{opCreateObject, "exists", 1},
		{opGetObject, "ok", 1},
		{opGetObject, "not_found", 1},
		{opWriteBlob, "ok", 1},
		{opWriteBlob, "mismatch", 1},
		{opWriteBlob, "error", 1}, // the cancelled one, counted once
		{opOpenBlob, "ok", 1},
		{opTryLease, "ok", 1},
		{opTryLease, "held", 1},
		{opRenewLease, "ok", 1},
		{opReleaseLease, "ok", 1},
		{opRefreshBlob, "ok", 1},
		{opListBlobs, "ok", 1},
		{opDeleteBlob, "recent", 1},
		{opDeleteBlob, "ok", 1},
	} {
		if got := count(tt.op, tt.result); got != tt.want {
			t.Errorf("%s %s counted %v, want %v", tt.op, tt.result, got, tt.want)
		}
	}
}

// TestHandlerServesTheFamilies: the handler serves nixport's families with
// Go's and the process's, and the build gauges read the callback.
func TestHandlerServesTheFamilies(t *testing.T) {
	m := New()
	m.BuildStates(func() (int, int) { return 3, 2 })
	m.Request("manifest", "GET", 200, time.Millisecond)
	m.CacheLookup(CacheLayer, false)
	m.CacheLookup("no such level", true) // ignored, not a new series
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`nixport_builds_queued 3`,
		`nixport_builds_running 2`,
		`nixport_http_requests_total{code="200",method="GET",route="manifest"} 1`,
		`nixport_cache_lookups_total{level="layer",result="miss"} 1`,
		`nixport_cache_lookups_total{level="tag_map",result="hit"} 0`,
		"go_goroutines",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "no such level") {
		t.Error("an unknown cache level became a label value")
	}
}
