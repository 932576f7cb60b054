// Package push is the state of the repositories clients push to: the
// names under the push namespaces (NIXPORT_PUSH_NAMESPACES, such as
// local/app), which take the push half of the OCI distribution spec while
// every other name stays built on demand and read-only.
//
// It exists so that the web package keeps only the HTTP of pushes, and
// the rules of a push (what a repository holds, which uploads are in
// progress and their bounds, what a manifest must reference) live in one
// place, over storage alone, so that every instance on the same storage
// sees the same repositories.
//
// Blobs stay in the one content-addressed blob store, whoever wrote them:
// a repository holds links to them, so a blob mounted from another
// repository or from a built image is a link, never a copy. Everything a
// repository holds is a small storage object under one prefix:
//
//	push/<repo>/_blobs/<alg>/<hex>      a blob the repository may serve (pushed, mounted, or named by a pushed manifest)
//	push/<repo>/_manifests/<alg>/<hex>  a manifest the repository holds
//	push/<repo>/_tags/<tag>             a tag: the digest of its manifest
//	push/_uploads/<id>                  a write in progress (an upload, a mount, a manifest being stored)
//	push/_digests/sha512/<hex>          the sha256 digest of the bytes a sha512 digest names
//
// ("_" cannot start a component of a repository name, so these never
// collide with a repository's.) Links are JSON Link records; a tag holds
// the manifest's digest as text. A collector finds everything a push
// repository keeps alive by listing push/: the links name stored blobs
// (Link.Stored), and a manifest's blob names its config, layers and
// child manifests (manifest.ParsePushed).
//
// The order of every write, for a collector that must not free a blob a
// push is about to reference: a write records itself under push/_uploads
// first (Record: its repository, its digest once known, its start and its
// last update), then its blob is committed (a chunked upload's bytes are
// invisible until then), then linked, and only then is the record
// removed. A blob no link names is therefore either garbage or named by
// a record; records of an instance that died stay behind, and are stale
// once their Updated time is older than the idle timeout of uploads.
//
// A sha512 digest is accepted wherever a sha256 one is: storage keeps
// every blob under its sha256 digest, and push/_digests maps the sha512
// digest to it once the stored bytes are read back and found to hash to
// it (so only sha512 pushes pay for a second hash).
package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Defaults of Options.
const (
	// DefaultMaxUploadBytes bounds one blob upload: a layer larger than
	// 10 GiB is rare enough to be a mistake.
	DefaultMaxUploadBytes = 10 << 30
	// DefaultUploadTimeout is how long an upload session may sit idle (no
	// request on it) before it is cancelled.
	DefaultUploadTimeout = 10 * time.Minute
	// DefaultMaxUploads bounds the upload sessions an instance holds at
	// once, DefaultMaxClientUploads those of one client (user, else
	// address): docker pushes a few layers at a time.
	DefaultMaxUploads       = 1024
	DefaultMaxClientUploads = 64
)

// Options configure New.
type Options struct {
	Storage storage.Backend
	// Namespaces are the first components of the names that take pushes
	// ("local", "ci"); a name whose first component is one of them is a
	// push repository.
	Namespaces []string
	// MaxUploadBytes bounds one blob upload (DefaultMaxUploadBytes if 0).
	MaxUploadBytes int64
	// UploadTimeout cancels an upload session idle this long
	// (DefaultUploadTimeout if 0).
	UploadTimeout time.Duration
	// MaxUploads and MaxClientUploads bound the sessions held at once, in
	// all and per client (the defaults if 0).
	MaxUploads, MaxClientUploads int
	// Log receives a line per session cancelled for idleness and per
	// failure to clean up. Nil discards.
	Log logrus.FieldLogger
	// now is the clock (time.Now if nil), for tests.
	now func() time.Time
}

// Registry is the push side of one instance: the repositories (in
// storage, shared with every instance) and the upload sessions this
// instance holds (in memory). Its methods return *errcode.Error for what
// the client got wrong; any other error is a fault of the server.
type Registry struct {
	store      storage.Backend
	namespaces map[string]bool
	maxBytes   int64
	timeout    time.Duration
	maxUploads int
	maxClient  int
	log        logrus.FieldLogger
	now        func() time.Time

	mu       sync.Mutex
	uploads  map[string]*Upload
	byClient map[string]int
	closed   bool

	stop chan struct{} // closed by Close: the janitor ends
	done chan struct{} // closed when the janitor has ended
}

// New returns the push registry and starts the janitor that cancels idle
// uploads; Close stops it.
func New(opts Options) (*Registry, error) {
	if opts.Storage == nil {
		return nil, errors.New("push: no storage")
	}
	if len(opts.Namespaces) == 0 {
		return nil, errors.New("push: no namespaces")
	}
	r := &Registry{
		store:      opts.Storage,
		namespaces: map[string]bool{},
		maxBytes:   orDefault(opts.MaxUploadBytes, DefaultMaxUploadBytes),
		timeout:    orDefault(opts.UploadTimeout, DefaultUploadTimeout),
		maxUploads: orDefault(opts.MaxUploads, DefaultMaxUploads),
		maxClient:  orDefault(opts.MaxClientUploads, DefaultMaxClientUploads),
		log:        opts.Log,
		now:        opts.now,
		uploads:    map[string]*Upload{},
		byClient:   map[string]int{},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	for _, ns := range opts.Namespaces {
		if err := CheckNamespace(ns); err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
		r.namespaces[ns] = true
	}
	if r.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		r.log = l
	}
	if r.now == nil {
		r.now = time.Now
	}
	go r.janitor()
	return r, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// CheckNamespace says whether ns can be a push namespace: one component
// of a repository name.
func CheckNamespace(ns string) error {
	if err := reference.CheckComponent(ns); err != nil {
		return fmt.Errorf("push namespace %q: %w", ns, err)
	}
	return nil
}

// Owns reports whether name is a push repository: its first component is
// a push namespace.
func (r *Registry) Owns(name string) bool {
	if r == nil {
		return false
	}
	first, _, _ := strings.Cut(name, "/")
	return r.namespaces[first]
}

// Namespaces are the push namespaces, sorted.
func (r *Registry) Namespaces() []string {
	out := make([]string, 0, len(r.namespaces))
	for ns := range r.namespaces {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// Close stops the janitor and cancels every upload session this instance
// holds (their bytes are discarded and their records removed). Requests
// still using a session finish first.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	r.mu.Lock()
	all := make([]*Upload, 0, len(r.uploads))
	for _, u := range r.uploads {
		all = append(all, u)
	}
	r.mu.Unlock()
	for _, u := range all {
		u.mu.Lock()
		u.cancel(context.Background(), "the server is stopping")
		u.mu.Unlock()
	}
	return nil
}

// janitor cancels idle uploads until Close.
func (r *Registry) janitor() {
	defer close(r.done)
	// Checking four times per timeout cancels a session at most a quarter
	// of the timeout late.
	t := time.NewTicker(max(r.timeout/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.expireIdle()
		}
	}
}

// expireIdle cancels every session idle for the timeout; a session a
// request is using is never idle.
func (r *Registry) expireIdle() {
	now := r.now()
	r.mu.Lock()
	var idle []*Upload
	for _, u := range r.uploads {
		if now.Sub(u.lastUsed()) >= r.timeout {
			idle = append(idle, u)
		}
	}
	r.mu.Unlock()
	for _, u := range idle {
		if !u.mu.TryLock() {
			continue // in use: not idle
		}
		if now.Sub(u.lastUsed()) >= r.timeout {
			r.log.WithFields(logrus.Fields{"upload": u.id, "repository": u.repo, "bytes": u.Offset()}).
				Info("upload session idle too long: cancelled")
			u.cancel(context.Background(), "idle too long")
		}
		u.mu.Unlock()
	}
}
