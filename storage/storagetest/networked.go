package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/storage/storagetest/faultproxy"
)

// Networked is what the checks that every networked backend (GCS, S3)
// passes beyond the suite need to know of it and its test server.
type Networked struct {
	// NewBackend returns a backend on the bucket of like, or on a fresh
	// bucket if like is nil, that reaches the service through endpoint
	// (a fault proxy's URL) if that is not empty, and logs to log (nil:
	// nowhere). It arranges its own cleanup.
	NewBackend func(t *testing.T, like storage.Backend, endpoint string, log logrus.FieldLogger) storage.Backend
	// StartProxy starts a fault proxy in front of the service, stopped
	// when the test ends.
	StartProxy func(t testing.TB, faults faultproxy.Faults) *faultproxy.Proxy
	// SmallWrite matches the requests that write a small object or a
	// lease record, BlobWrite those that store a small blob whole: the
	// requests whose responses RunLostResponses cuts.
	SmallWrite, BlobWrite func(faultproxy.RequestRecord) bool
	// ListBlobs returns every blob object stored in every bucket of the
	// test server, read straight from the service (RunWithFaults watches
	// them).
	ListBlobs func(ctx context.Context) ([]StoredBlob, error)
}

// StoredBlob is a blob object as the service lists it.
type StoredBlob struct {
	// ID names the object's stored version (bucket, key, and generation
	// or ETag): a version is checked once.
	ID string
	// Hex is the hex of the sha256 the object is named by.
	Hex  string
	Size int64
	// Open reads that version of the object.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// RunTwoInstances checks that two backends (two instances) on one bucket
// see each other's blobs and objects, and one lease between them.
func RunTwoInstances(t *testing.T, n Networked) {
	first := n.NewBackend(t, nil, "", nil)
	second := n.NewBackend(t, first, "", nil)
	content := []byte("built on the first instance")
	info, err := storage.PutBlob(t.Context(), first, layerType, "", -1, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := second.StatBlob(t.Context(), info.Digest); err != nil || got != info {
		t.Errorf("second StatBlob = %+v, %v; want %+v", got, err, info)
	}
	if err := first.PutObject(t.Context(), "manifests/x", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if got, err := second.GetObject(t.Context(), "manifests/x"); err != nil || string(got) != "m" {
		t.Errorf("second GetObject = %q, %v", got, err)
	}
	lease, err := first.(storage.Leaser).TryLease(t.Context(), "build/x", "first", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var held *storage.LeaseHeldError
	if _, err := second.(storage.Leaser).TryLease(t.Context(), "build/x", "second", time.Hour); !errors.As(err, &held) || held.Holder != "first" {
		t.Errorf("second TryLease: %v, want held by first", err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := second.(storage.Leaser).TryLease(t.Context(), "build/x", "second", time.Hour); err != nil {
		t.Errorf("second TryLease after release: %v", err)
	}
}

// RunLostResponses checks what a conditional write whose response is lost
// leaves: it happened, and its retry then fails its condition. The writer
// must still see its own write as a success: CreateObject does not report
// ErrExists, TryLease takes the lease, Renew renews it, a blob Commit
// succeeds.
func RunLostResponses(t *testing.T, n Networked) {
	// lossy returns a backend on the bucket of like (nil: a fresh one)
	// whose first request that match matches loses its response.
	lossy := func(t *testing.T, like storage.Backend, match func(faultproxy.RequestRecord) bool) (storage.Backend, *faultproxy.Proxy) {
		proxy := n.StartProxy(t, faultproxy.Faults{CutAfter: 1, Limit: 1, Match: match})
		return n.NewBackend(t, like, proxy.URL, nil), proxy
	}
	requireOneCut := func(t *testing.T, proxy *faultproxy.Proxy) {
		t.Helper()
		if s := proxy.Stats(); s.CutAfter != 1 {
			t.Errorf("%d responses cut, want 1", s.CutAfter)
		}
	}

	t.Run("CreateObject", func(t *testing.T) {
		b, proxy := lossy(t, nil, n.SmallWrite)
		if err := b.CreateObject(t.Context(), "tags/x", []byte("mine")); err != nil {
			t.Fatalf("CreateObject: %v", err)
		}
		requireOneCut(t, proxy)
		requireObject(t, b, "tags/x", []byte("mine"))
		if err := b.CreateObject(t.Context(), "tags/x", []byte("again")); !errors.Is(err, storage.ErrExists) {
			t.Errorf("second CreateObject: %v, want ErrExists", err)
		}
	})

	t.Run("TryLease", func(t *testing.T) {
		b, proxy := lossy(t, nil, n.SmallWrite)
		l, err := b.(storage.Leaser).TryLease(t.Context(), "image", "instance-a", time.Hour)
		if err != nil {
			t.Fatalf("TryLease: %v", err)
		}
		requireOneCut(t, proxy)
		if _, err := b.(storage.Leaser).TryLease(t.Context(), "image", "instance-b", time.Hour); !errors.Is(err, storage.ErrLeaseHeld) {
			t.Errorf("second holder: %v, want ErrLeaseHeld", err)
		}
		if err := l.Renew(t.Context()); err != nil {
			t.Errorf("Renew: %v", err)
		}
	})

	t.Run("Renew", func(t *testing.T) {
		direct := n.NewBackend(t, nil, "", nil)
		l, err := direct.(storage.Leaser).TryLease(t.Context(), "image", "instance-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The same lease, taken over by its holder through a backend
		// whose first write loses its response, then renewed.
		viaProxy, proxy := lossy(t, direct, n.SmallWrite)
		l2, err := viaProxy.(storage.Leaser).TryLease(t.Context(), "image", "instance-a", time.Hour)
		if err != nil {
			t.Fatalf("TryLease by the same holder: %v", err)
		}
		requireOneCut(t, proxy)
		if err := l2.Renew(t.Context()); err != nil {
			t.Errorf("Renew: %v", err)
		}
		if err := l.Renew(t.Context()); !errors.Is(err, storage.ErrLeaseLost) {
			t.Errorf("Renew of the replaced lease: %v, want ErrLeaseLost", err)
		}
	})

	t.Run("Blob", func(t *testing.T) {
		b, proxy := lossy(t, nil, n.BlobWrite)
		content := randomBytes(21, 100_000)
		info, err := storage.PutBlob(t.Context(), b, layerType, digest.FromBytes(content), int64(len(content)), bytes.NewReader(content))
		if err != nil {
			t.Fatalf("PutBlob: %v", err)
		}
		requireOneCut(t, proxy)
		requireBlob(t, b, info, content)
	})
}

// RunWithFaults runs the suite with backends (newBackend, with a log the
// check reads) that reach the service through proxy, which breaks
// requests in every way it can: every operation must still succeed, and
// nothing be logged as an error. Meanwhile a watcher reads every blob
// object straight from the service (n.ListBlobs) and checks that its
// content hashes to its name: no partial or corrupt blob is ever visible.
func RunWithFaults(t *testing.T, n Networked, proxy *faultproxy.Proxy, newBackend func(t *testing.T, log logrus.FieldLogger) storage.Backend) {
	w := startWatcher(t, n.ListBlobs)
	log, logs := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	t.Run("Suite", func(t *testing.T) {
		Run(t, func(t *testing.T) storage.Backend { return newBackend(t, log) })
	})
	checked := w.stop()
	stats := proxy.Stats()
	messages := map[string]int{}
	for _, entry := range logs.AllEntries() {
		if entry.Level <= logrus.WarnLevel || strings.Contains(entry.Message, "again") {
			messages[entry.Level.String()+": "+entry.Message]++
		}
		if entry.Level <= logrus.ErrorLevel {
			t.Errorf("backend logged an error: %s %v", entry.Message, entry.Data)
		}
	}
	t.Logf("proxy: %+v; watcher checked %d blob objects; backend logs: %v", stats, checked, messages)
	if stats.Unavailable == 0 || stats.TooManyRequests == 0 || stats.CutBefore == 0 || stats.CutAfter == 0 || stats.Truncated == 0 {
		t.Errorf("not every kind of fault was injected: %+v", stats)
	}
	if checked == 0 {
		t.Error("the watcher checked no blob objects")
	}
}

// watcher checks blob objects straight on the service while tests run.
type watcher struct {
	t       *testing.T
	list    func(ctx context.Context) ([]StoredBlob, error)
	cancel  context.CancelFunc
	done    chan struct{}
	checked map[string]bool // IDs of the versions verified
}

func startWatcher(t *testing.T, list func(ctx context.Context) ([]StoredBlob, error)) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, list: list, cancel: cancel, done: make(chan struct{}), checked: map[string]bool{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.scan(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop ends the watcher (once it has finished a last scan) and returns how
// many objects it verified.
func (w *watcher) stop() int {
	w.cancel()
	<-w.done
	w.scan(context.Background())
	return len(w.checked)
}

func (w *watcher) scan(ctx context.Context) {
	blobs, _ := w.list(ctx) // what it listed before an error (a bucket deleted, a cancel)
	for _, b := range blobs {
		if w.checked[b.ID] {
			continue
		}
		r, err := b.Open(ctx)
		if err != nil {
			continue // deleted with its bucket meanwhile, or cancelled
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != b.Hex || n != b.Size {
			w.t.Errorf("visible blob object %s holds %d bytes hashing to %s (object size %d)", b.ID, n, got, b.Size)
		}
		w.checked[b.ID] = true
	}
}

// RandomBytes returns n bytes that depend only on seed, so a failure
// reproduces.
func RandomBytes(seed uint64, n int) []byte { return randomBytes(seed, n) }

// StoredLease is a record of lease "build/x", held by another holder until
// an hour from now, that a backend's test stores straight on the service,
// as it is or damaged.
type StoredLease struct {
	// Name says how it is stored ("expiry not a time").
	Name string
	// Damaged: its expiry cannot be read.
	Damaged bool
	// Store writes it in the bucket of the backend under test.
	Store func(t *testing.T)
}

// RunDamagedLeases checks that a lease record whose expiry cannot be read
// counts as expired, so that damage cannot block a lease for good, and
// that a record that can be read holds: b takes lease "build/x" over each
// record that records stores exactly when it is damaged.
func RunDamagedLeases(t *testing.T, b storage.Leaser, records []StoredLease) {
	for _, r := range records {
		t.Run(r.Name, func(t *testing.T) {
			r.Store(t)
			l, err := b.TryLease(t.Context(), "build/x", "instance-a", time.Hour)
			if held := errors.Is(err, storage.ErrLeaseHeld); held == r.Damaged || (err != nil && !held) {
				t.Fatalf("TryLease: %v, want held %v", err, !r.Damaged)
			}
			if err == nil {
				if err := l.Release(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
