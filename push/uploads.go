package push

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/storage"
)

// Upload is one upload session: a blob writer kept open across requests
// (POST, PATCH..., PUT), held in this instance's memory under a random id.
// A request uses it between Acquire and Release; the session's methods
// are called only then.
type Upload struct {
	id, repo     string
	user, client string
	reg          *Registry
	started      time.Time

	mu     sync.Mutex // held by the request using the session
	w      storage.BlobWriter
	done   bool // committed or cancelled
	offset atomic.Int64
	used   atomic.Int64 // unix nanoseconds of the last request's end
}

// ID is the session's id, the last component of its URL.
func (u *Upload) ID() string { return u.id }

// Offset is how many bytes the session holds.
func (u *Upload) Offset() int64 { return u.offset.Load() }

// Closed reports whether the session is over (committed or cancelled);
// only the request holding it may ask.
func (u *Upload) Closed() bool { return u.done }

func (u *Upload) lastUsed() time.Time { return time.Unix(0, u.used.Load()) }

// newID is a random upload id: 128 bits, so that knowing one is the
// capability to write to it.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making an upload id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ValidID reports whether id has the form of an upload id: 32 lower-case
// hex digits.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// StartUpload opens an upload session into repo for client (the user if
// any, else the address), within the bounds on sessions, and records it
// in storage.
func (r *Registry) StartUpload(ctx context.Context, repo, user, client string) (*Upload, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	key := clientKey(user, client)
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return nil, errcode.New(errcode.Unavailable, "the server is stopping: push again")
	case len(r.uploads) >= r.maxUploads:
		r.mu.Unlock()
		return nil, &errcode.Error{Code: errcode.TooManyRequests, RetryAfter: time.Minute,
			Message: fmt.Sprintf("too many uploads in progress on this server (%d): try again later", r.maxUploads)}
	case r.byClient[key] >= r.maxClient:
		r.mu.Unlock()
		return nil, &errcode.Error{Code: errcode.TooManyRequests, RetryAfter: time.Minute,
			Message: fmt.Sprintf("you have %d uploads in progress, the most one client may hold: finish or cancel some", r.maxClient)}
	}
	u := &Upload{id: id, repo: repo, user: user, client: key, reg: r, started: r.now()}
	u.used.Store(u.started.UnixNano())
	// Reserved under the lock, so that concurrent starts cannot pass the
	// bounds; held (locked) until set up.
	u.mu.Lock()
	r.uploads[id] = u
	r.byClient[key]++
	r.mu.Unlock()
	defer u.mu.Unlock()

	if err := r.putRecord(ctx, id, Record{Repository: repo, Started: u.started.UTC()}); err != nil {
		u.finish()
		return nil, err
	}
	w, err := r.store.NewBlobWriter(ctx, "")
	if err != nil {
		u.finish()
		r.dropRecord(id)
		return nil, fmt.Errorf("starting an upload into %s: %w", repo, err)
	}
	u.w = w
	return u, nil
}

func clientKey(user, addr string) string {
	if user != "" {
		return "user " + user
	}
	return "addr " + addr
}

// forget removes u from the sessions.
func (r *Registry) forget(u *Upload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.uploads[u.id] != u {
		return
	}
	delete(r.uploads, u.id)
	if r.byClient[u.client]--; r.byClient[u.client] <= 0 {
		delete(r.byClient, u.client)
	}
}

// Acquire returns the session id of repo for a request of user, held for
// that request until Release. A session this instance does not hold (never
// started, finished, expired, or started on another instance) or one of
// another repository or user is BLOB_UPLOAD_UNKNOWN; one that another
// request is using is BLOB_UPLOAD_INVALID.
func (r *Registry) Acquire(id, repo, user string) (*Upload, error) {
	u, err := r.Status(id, repo, user)
	if err != nil {
		return nil, err
	}
	if !u.mu.TryLock() {
		return nil, errcode.New(errcode.BlobUploadInvalid, "upload %s is busy with another request: send its requests one at a time", id)
	}
	if u.done {
		u.mu.Unlock()
		return nil, errcode.New(errcode.BlobUploadUnknown, "upload %s unknown: it has finished", id)
	}
	return u, nil
}

// Status returns session id of repo for user without holding it, for a
// request that only asks how much it holds (which one writing to it does
// not stop); the errors are Acquire's.
func (r *Registry) Status(id, repo, user string) (*Upload, error) {
	r.mu.Lock()
	u, ok := r.uploads[id]
	r.mu.Unlock()
	if !ok || u.repo != repo || u.user != user {
		return nil, errcode.New(errcode.BlobUploadUnknown,
			"upload %s unknown: it finished, was cancelled or idle too long, or was started on another instance (chunked uploads need the same instance throughout)", id)
	}
	return u, nil
}

// Release ends a request's use of the session.
func (u *Upload) Release() {
	u.used.Store(u.reg.now().UnixNano())
	u.mu.Unlock()
}

// ErrOutOfOrder is (wrapped in) the error of Write when a chunk does not
// start where the session ends.
var ErrOutOfOrder = errors.New("chunk out of order")

// copyBuffers are the buffers chunks are copied through.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Write appends a chunk of length n (negative: as long as body is) that
// the client says starts at start (negative: wherever the session ends).
// A chunk that does not start at the session's end is RANGE_INVALID (416,
// wrapping ErrOutOfOrder) and writes nothing. What arrives is kept even
// if the body breaks off, so the client can ask where the session ends
// and go on from there; a chunk shorter than n is SIZE_INVALID. An upload
// growing past the bound on uploads is cancelled (REQUEST_TOO_LARGE), and
// so is one whose writer fails (a server fault).
func (u *Upload) Write(ctx context.Context, start, n int64, body io.Reader) error {
	offset := u.offset.Load()
	if start >= 0 && start != offset {
		return errcode.Wrap(errcode.RangeInvalid, ErrOutOfOrder,
			"chunk starts at byte %d, but the upload holds %d bytes: send the chunk starting at %d", start, offset, offset)
	}
	room := u.reg.maxBytes - offset
	if n > room {
		return errcode.New(errcode.RequestTooLarge,
			"a chunk of %d bytes would take the upload past %d bytes, the most this registry accepts for one blob (NIXPORT_MAX_UPLOAD_BYTES)", n, u.reg.maxBytes)
	}
	limit := room + 1
	if n >= 0 {
		limit = n
	}
	src := &readErrTracker{r: io.LimitReader(body, limit)}
	buf := copyBuffers.Get().(*[]byte)
	written, err := io.CopyBuffer(u.w, src, *buf)
	copyBuffers.Put(buf)
	u.offset.Add(written)
	switch {
	case err != nil && src.err == nil:
		// The writer failed: the session cannot go on.
		u.cancel(ctx, "writing failed")
		return fmt.Errorf("writing upload %s: %w", u.id, err)
	case u.offset.Load() > u.reg.maxBytes:
		u.cancel(ctx, "too large")
		return errcode.New(errcode.RequestTooLarge,
			"the upload is larger than %d bytes, the most this registry accepts for one blob (NIXPORT_MAX_UPLOAD_BYTES): it is cancelled", u.reg.maxBytes)
	case err != nil:
		return errcode.Wrap(errcode.BlobUploadInvalid, err,
			"reading the chunk failed after %d bytes; the upload holds %d: go on from there", written, u.offset.Load())
	case n >= 0 && written < n:
		return errcode.New(errcode.SizeInvalid,
			"the chunk has %d bytes, not the %d its length says; the upload holds %d: go on from there", written, n, u.offset.Load())
	}
	return nil
}

// readErrTracker remembers the error of the reader, to tell a client's
// broken body from a failing writer after io.Copy.
type readErrTracker struct {
	r   io.Reader
	err error
}

func (t *readErrTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Commit ends the session: what it holds becomes blob d (verified before
// anything is visible under d) and is linked into the session's
// repository. The session is over whatever the outcome; a mismatch is
// DIGEST_INVALID.
func (u *Upload) Commit(ctx context.Context, d digest.Digest) (Link, error) {
	// The record names the digest from now on, for a collector.
	if err := u.reg.putRecord(ctx, u.id, Record{Repository: u.repo, Digest: d, Started: u.started.UTC()}); err != nil {
		u.cancel(ctx, "recording the commit failed")
		return Link{}, err
	}
	defer u.reg.dropRecord(u.id)
	defer u.finish()
	size := u.offset.Load()
	l, err := u.reg.commit(ctx, u.w, d, size)
	if err != nil {
		return Link{}, err
	}
	if err := u.reg.putLink(ctx, blobLinkName(u.repo, d), l); err != nil {
		return Link{}, err
	}
	return l, nil
}

// commit publishes what w holds as blob d of size bytes: a sha256 digest
// is verified by the writer before publication; a sha512 one by reading
// the published bytes back before d names them (storage keeps blobs by
// sha256 only: the bytes are visible under their own sha256 digest before
// that, which names no repository's content).
func (r *Registry) commit(ctx context.Context, w storage.BlobWriter, d digest.Digest, size int64) (Link, error) {
	if d.Algorithm() == digest.SHA256 {
		info, err := w.Commit(ctx, d, size)
		if errors.Is(err, storage.ErrDigestMismatch) {
			return Link{}, errcode.Wrap(errcode.DigestInvalid, err, "the uploaded bytes do not match digest %s", d)
		}
		if err != nil {
			return Link{}, fmt.Errorf("storing blob %s: %w", d, err)
		}
		return Link{Digest: d, Stored: info.Digest, Size: info.Size}, nil
	}
	info, err := w.Commit(ctx, "", size)
	if err != nil {
		return Link{}, fmt.Errorf("storing blob %s: %w", d, err)
	}
	if err := r.verifyStored(ctx, info.Digest, d); err != nil {
		return Link{}, err
	}
	if err := r.putAlias(ctx, d, info.Digest); err != nil {
		return Link{}, err
	}
	return Link{Digest: d, Stored: info.Digest, Size: info.Size}, nil
}

// verifyStored reads blob stored back and checks it hashes to want (a
// sha512 digest).
func (r *Registry) verifyStored(ctx context.Context, stored, want digest.Digest) error {
	if want.Algorithm() != digest.SHA512 {
		return errcode.New(errcode.DigestInvalid, "digest algorithm %s is not supported: use sha256 or sha512", want.Algorithm())
	}
	rc, _, err := r.store.OpenBlob(ctx, stored)
	if err != nil {
		return fmt.Errorf("reading back blob %s: %w", stored, err)
	}
	defer rc.Close()
	h := sha512.New()
	buf := copyBuffers.Get().(*[]byte)
	_, err = io.CopyBuffer(h, rc, *buf)
	copyBuffers.Put(buf)
	if err != nil {
		return fmt.Errorf("reading back blob %s: %w", stored, err)
	}
	if got := digest.NewDigest(digest.SHA512, h); got != want {
		r.log.WithFields(logrus.Fields{"digest": want, "stored": stored}).Info("sha512 upload does not match its digest")
		return errcode.New(errcode.DigestInvalid, "the uploaded bytes do not match digest %s", want)
	}
	return nil
}

// Cancel ends the session and discards what it holds.
func (u *Upload) Cancel(ctx context.Context) {
	u.cancel(ctx, "cancelled by the client")
}

func (u *Upload) cancel(_ context.Context, why string) {
	if u.done || u.w == nil {
		return
	}
	if err := u.w.Cancel(); err != nil {
		u.reg.log.WithError(err).WithFields(logrus.Fields{"upload": u.id, "why": why}).Warn("discarding an upload's bytes")
	}
	u.finish()
	u.reg.dropRecord(u.id)
}

// finish marks the session over and forgets it.
func (u *Upload) finish() {
	u.done = true
	u.reg.forget(u)
}

// PutBlob stores body, which the client says is blob d of n bytes
// (negative: unknown), into repo in one request: a session opened and
// committed at once.
func (r *Registry) PutBlob(ctx context.Context, repo, user, client string, d digest.Digest, n int64, body io.Reader) (Link, error) {
	u, err := r.StartUpload(ctx, repo, user, client)
	if err != nil {
		return Link{}, err
	}
	u, err = r.Acquire(u.id, repo, user)
	if err != nil {
		return Link{}, err // cancelled meanwhile (the server stopping)
	}
	defer u.Release()
	if err := u.Write(ctx, 0, n, body); err != nil {
		u.cancel(ctx, "the request failed")
		return Link{}, err
	}
	return u.Commit(ctx, d)
}

// Mount links blob d into repo from repository from (any name; a built
// image's serves every stored blob), or from wherever storage holds it
// when from is empty. It reports false, and changes nothing, when there is
// nothing to link: the client then uploads the blob.
func (r *Registry) Mount(ctx context.Context, repo, from string, d digest.Digest) (Link, bool, error) {
	var l Link
	var found bool
	err := r.withRecord(ctx, repo, d, func() error {
		if from != "" && r.Owns(from) {
			src, ok, err := r.readLink(ctx, blobLinkName(from, d), d)
			if err != nil || !ok {
				return err
			}
			if _, err := r.store.RefreshBlob(ctx, src.Stored); errors.Is(err, storage.ErrNotFound) {
				return nil
			} else if err != nil {
				return fmt.Errorf("looking up blob %s: %w", src.Stored, err)
			}
			l = Link{Digest: d, Stored: src.Stored, Size: src.Size}
		} else {
			info, ok, err := r.storedOf(ctx, d)
			if err != nil || !ok {
				return err
			}
			l = Link{Digest: d, Stored: info.Digest, Size: info.Size}
		}
		if err := r.putLink(ctx, blobLinkName(repo, d), l); err != nil {
			return err
		}
		found = true
		return nil
	})
	return l, found, err
}
