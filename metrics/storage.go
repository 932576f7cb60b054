package metrics

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

// Storage operation names, the values of nixport_storage_operations_total's
// op label.
const (
	opStatBlob     = "stat_blob"
	opOpenBlob     = "open_blob"
	opRefreshBlob  = "refresh_blob"
	opListBlobs    = "list_blobs" // a whole listing, however many pages
	opDeleteBlob   = "delete_blob"
	opWriteBlob    = "write_blob" // a blob writer's commit, or its failure
	opSignedURL    = "signed_url"
	opPutObject    = "put_object"
	opCreateObject = "create_object"
	opGetObject    = "get_object"
	opListObjects  = "list_objects"
	opDeleteObject = "delete_object"
	opTryLease     = "try_lease"
	opRenewLease   = "renew_lease"
	opReleaseLease = "release_lease"
)

// Storage wraps a backend so that every operation on it is counted, by
// backend, operation and result. The wrapper keeps the backend's optional
// sides (storage.Leaser, io.Closer) visible to type assertions.
func (m *Metrics) Storage(b storage.Backend) storage.Backend {
	if m == nil {
		return b
	}
	c := &countedBackend{Backend: b, m: m, name: b.Name()}
	if l, ok := b.(storage.Leaser); ok {
		return &countedLeaser{countedBackend: c, leaser: l}
	}
	return c
}

// storageResult names how an operation ended, from the errors storage
// defines.
func storageResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, storage.ErrNotFound):
		return "not_found"
	case errors.Is(err, storage.ErrExists):
		return "exists"
	case errors.Is(err, storage.ErrLeaseHeld):
		return "held"
	case errors.Is(err, storage.ErrDigestMismatch):
		return "mismatch"
	case errors.Is(err, storage.ErrBlobRecent):
		return "recent"
	}
	return "error"
}

func (m *Metrics) storageOp(backend, op string, err error) {
	m.storageOps.WithLabelValues(backend, op, storageResult(err)).Inc()
}

type countedBackend struct {
	storage.Backend
	m    *Metrics
	name string
}

func (c *countedBackend) NewBlobWriter(ctx context.Context, mediaType string) (storage.BlobWriter, error) {
	w, err := c.Backend.NewBlobWriter(ctx, mediaType)
	if err != nil {
		c.m.storageOp(c.name, opWriteBlob, err)
		return nil, err
	}
	return &countedWriter{BlobWriter: w, c: c}, nil
}

func (c *countedBackend) StatBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	info, err := c.Backend.StatBlob(ctx, dgst)
	c.m.storageOp(c.name, opStatBlob, err)
	return info, err
}

func (c *countedBackend) OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	r, info, err := c.Backend.OpenBlob(ctx, dgst)
	c.m.storageOp(c.name, opOpenBlob, err)
	return r, info, err
}

func (c *countedBackend) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	info, err := c.Backend.RefreshBlob(ctx, dgst)
	c.m.storageOp(c.name, opRefreshBlob, err)
	return info, err
}

// ListBlobs counts a listing once, when it ends: ok when every blob was
// yielded (or the caller stopped early), else with its error.
func (c *countedBackend) ListBlobs(ctx context.Context) iter.Seq2[storage.BlobStat, error] {
	return func(yield func(storage.BlobStat, error) bool) {
		var failed error
		defer func() { c.m.storageOp(c.name, opListBlobs, failed) }()
		for st, err := range c.Backend.ListBlobs(ctx) {
			if err != nil {
				failed = err
			}
			if !yield(st, err) {
				return
			}
		}
	}
}

func (c *countedBackend) DeleteBlob(ctx context.Context, dgst digest.Digest, cutoff time.Time) error {
	err := c.Backend.DeleteBlob(ctx, dgst, cutoff)
	c.m.storageOp(c.name, opDeleteBlob, err)
	return err
}

func (c *countedBackend) SignedBlobURL(ctx context.Context, dgst digest.Digest) (string, bool, error) {
	u, ok, err := c.Backend.SignedBlobURL(ctx, dgst)
	if ok || err != nil {
		c.m.storageOp(c.name, opSignedURL, err)
	}
	return u, ok, err
}

func (c *countedBackend) PutObject(ctx context.Context, name string, data []byte) error {
	err := c.Backend.PutObject(ctx, name, data)
	c.m.storageOp(c.name, opPutObject, err)
	return err
}

func (c *countedBackend) CreateObject(ctx context.Context, name string, data []byte) error {
	err := c.Backend.CreateObject(ctx, name, data)
	c.m.storageOp(c.name, opCreateObject, err)
	return err
}

func (c *countedBackend) GetObject(ctx context.Context, name string) ([]byte, error) {
	data, err := c.Backend.GetObject(ctx, name)
	c.m.storageOp(c.name, opGetObject, err)
	return data, err
}

func (c *countedBackend) ListObjects(ctx context.Context, prefix string) ([]string, error) {
	names, err := c.Backend.ListObjects(ctx, prefix)
	c.m.storageOp(c.name, opListObjects, err)
	return names, err
}

func (c *countedBackend) DeleteObject(ctx context.Context, name string) error {
	err := c.Backend.DeleteObject(ctx, name)
	c.m.storageOp(c.name, opDeleteObject, err)
	return err
}

// Close closes the backend when it has something to close.
func (c *countedBackend) Close() error {
	if cl, ok := c.Backend.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// countedWriter counts a blob write once, when it is committed or
// cancelled before that.
type countedWriter struct {
	storage.BlobWriter
	c    *countedBackend
	done bool
}

func (w *countedWriter) Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (storage.BlobInfo, error) {
	info, err := w.BlobWriter.Commit(ctx, expected, expectedSize)
	if !w.done {
		w.done = true
		w.c.m.storageOp(w.c.name, opWriteBlob, err)
	}
	return info, err
}

func (w *countedWriter) Cancel() error {
	err := w.BlobWriter.Cancel()
	if !w.done {
		w.done = true
		w.c.m.storageOp(w.c.name, opWriteBlob, errCancelled)
	}
	return err
}

// errCancelled makes a write given up by its writer count as an error:
// the bytes were not stored.
var errCancelled = errors.New("blob write cancelled")

type countedLeaser struct {
	*countedBackend
	leaser storage.Leaser
}

// The wrapper must stay a Leaser whatever TryLease's signature becomes:
// else builds would silently run without leases.
var _ storage.Leaser = (*countedLeaser)(nil)

func (c *countedLeaser) TryLease(ctx context.Context, name, holder string, ttl time.Duration, opts ...storage.LeaseOption) (storage.Lease, error) {
	l, err := c.leaser.TryLease(ctx, name, holder, ttl, opts...)
	c.m.storageOp(c.name, opTryLease, err)
	if err != nil {
		return nil, err
	}
	return &countedLease{Lease: l, c: c.countedBackend}, nil
}

type countedLease struct {
	storage.Lease
	c *countedBackend
}

func (l *countedLease) Renew(ctx context.Context) error {
	err := l.Lease.Renew(ctx)
	l.c.m.storageOp(l.c.name, opRenewLease, err)
	return err
}

func (l *countedLease) Release(ctx context.Context) error {
	err := l.Lease.Release(ctx)
	l.c.m.storageOp(l.c.name, opReleaseLease, err)
	return err
}
