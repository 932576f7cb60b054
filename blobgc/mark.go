package blobgc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// blobKey is a sha256 digest's bytes: a set of millions of them costs a
// fraction of the same set of digest strings.
type blobKey [32]byte

// keyOf returns d's key, false if storage cannot hold d (not a valid
// sha256 digest).
func keyOf(d digest.Digest) (blobKey, bool) {
	h, err := storage.SHA256Hex(d)
	if err != nil {
		return blobKey{}, false
	}
	var k blobKey
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return blobKey{}, false
	}
	return k, true
}

// marker is the mark: the blobs kept alive, and the manifests to read.
// Its methods are safe for concurrent use.
type marker struct {
	mu    sync.Mutex
	live  map[blobKey]struct{}
	read  map[blobKey]struct{} // manifests read or queued
	queue []digest.Digest      // manifests to read
}

func newMarker() *marker {
	return &marker{live: map[blobKey]struct{}{}, read: map[blobKey]struct{}{}}
}

// blob keeps d alive.
func (m *marker) blob(d digest.Digest) {
	k, ok := keyOf(d)
	if !ok {
		return
	}
	m.mu.Lock()
	m.live[k] = struct{}{}
	m.mu.Unlock()
}

// manifest keeps d alive, and what it references once it is read.
func (m *marker) manifest(d digest.Digest) {
	k, ok := keyOf(d)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[k] = struct{}{}
	if _, seen := m.read[k]; !seen {
		m.read[k] = struct{}{}
		m.queue = append(m.queue, d)
	}
}

// take returns the manifests queued, and empties the queue.
func (m *marker) take() []digest.Digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queue
	m.queue = nil
	return q
}

// has reports whether d is kept alive.
func (m *marker) has(d digest.Digest) bool {
	k, ok := keyOf(d)
	if !ok {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, live := m.live[k]
	return live
}

func (m *marker) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

// markState is what the mark hands the sweep.
type markState struct {
	*marker
	// referrers are the pairs of the referrers index whose referrer is
	// not live, by referrer: the entries to remove with it.
	referrers map[blobKey][]referrers.Pair
}

// mark reads every root and every manifest they reach.
func mark(ctx context.Context, opts Options, res *Result) (*markState, error) {
	if err := checkPrefixes(ctx, opts); err != nil {
		return nil, err
	}
	m := newMarker()
	var records, manifests, missing atomic.Int64
	defer func() {
		res.Records, res.Manifests, res.Missing = int(records.Load()), int(manifests.Load()), int(missing.Load())
		res.Marked = m.size()
	}()
	for _, p := range KnownPrefixes {
		if p.Role != RoleRecords {
			continue
		}
		if err := markRecords(ctx, opts, p.Prefix, m, &records); err != nil {
			return nil, err
		}
	}
	for prefix, r := range opts.Roots {
		if err := r.MarkRoots(ctx, m.blob, m.manifest); err != nil {
			return nil, fmt.Errorf("marking the roots under %s: %w", prefix, err)
		}
	}
	pairs, err := referrers.All(ctx, opts.Storage)
	if err != nil {
		return nil, err
	}
	for {
		queue := m.take()
		if len(queue) == 0 {
			// The referrers of a live manifest are live.
			for _, p := range pairs {
				if m.has(p.Subject) {
					m.manifest(p.Referrer)
				}
			}
			if queue = m.take(); len(queue) == 0 {
				break
			}
		}
		jobs := make([]func(context.Context) error, len(queue))
		for i, d := range queue {
			jobs[i] = func(ctx context.Context) error {
				return readManifest(ctx, opts, d, m, &manifests, &missing)
			}
		}
		if err := parallel.Run(ctx, opts.Parallelism, jobs); err != nil {
			return nil, err
		}
	}
	state := &markState{marker: m, referrers: map[blobKey][]referrers.Pair{}}
	for _, p := range pairs {
		if k, ok := keyOf(p.Referrer); ok && !m.has(p.Referrer) {
			state.referrers[k] = append(state.referrers[k], p)
		}
	}
	return state, nil
}

// checkPrefixes fails when storage holds objects under a top-level prefix
// the collector knows neither from KnownPrefixes nor from opts.Roots (a
// RoleRoots prefix counts only when its Roots set is given). It lists
// every object name once: a collection's one cost that grows with the
// objects rather than the roots, paid so that a collector older than the
// data (a rolling upgrade) or not handed a package's roots deletes nothing.
func checkPrefixes(ctx context.Context, opts Options) error {
	known := map[string]bool{}
	for _, p := range KnownPrefixes {
		known[p.Prefix] = p.Role != RoleRoots
	}
	for prefix := range opts.Roots {
		known[prefix] = true
	}
	names, err := opts.Storage.ListObjects(ctx, "")
	if err != nil {
		return fmt.Errorf("listing storage's objects: %w", err)
	}
	var unknown []string
	for _, name := range names {
		top, _, _ := strings.Cut(name, "/")
		top += "/"
		if !known[top] && !slices.Contains(unknown, top) {
			unknown = append(unknown, top)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("storage holds objects under %s, which this collector does not know what to make of "+
			"(written by a newer nixport, or by a package whose roots the collector was not given)", strings.Join(unknown, ", "))
	}
	return nil
}

// markRecords marks the manifests every record under prefix names. A
// record that cannot be read stops the collection: the manifests it
// names are unknown. One removed since the listing names nothing.
func markRecords(ctx context.Context, opts Options, prefix string, m *marker, count *atomic.Int64) error {
	names, err := opts.Storage.ListObjects(ctx, prefix)
	if err != nil {
		return fmt.Errorf("listing the records under %s: %w", prefix, err)
	}
	jobs := make([]func(context.Context) error, len(names))
	for i, name := range names {
		jobs[i] = func(ctx context.Context) error {
			r, err := source.GetRecord(ctx, opts.Storage, name)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading record %s: %w", name, err)
			}
			ms, err := r.Manifests()
			if err != nil {
				return fmt.Errorf("record %s: %w", name, err)
			}
			for _, info := range ms {
				m.manifest(info.Digest)
			}
			count.Add(1)
			return nil
		}
	}
	return parallel.Run(ctx, opts.Parallelism, jobs)
}

// readManifest marks what the manifest d references. A manifest not
// stored keeps nothing more. Bytes that are not a manifest (too large,
// not JSON: a root that named some other blob as a manifest, a pushed
// index listing a blob that is not one) keep nothing but themselves, and
// are logged; an error reading them stops the collection.
func readManifest(ctx context.Context, opts Options, d digest.Digest, m *marker, count, missing *atomic.Int64) error {
	log := opts.log().WithField("digest", d)
	rc, info, err := opts.Storage.OpenBlob(ctx, d)
	if errors.Is(err, storage.ErrNotFound) {
		missing.Add(1)
		log.Debug("a manifest named by a root is not stored")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", d, err)
	}
	defer rc.Close()
	if info.Size > manifest.MaxBytes {
		log.WithField("size", info.Size).Warn("a blob named as a manifest is too large to be one: kept, and nothing it might reference")
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(rc, manifest.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", d, err)
	}
	refs, err := manifest.References(data)
	if err != nil {
		log.WithError(err).WithField("media_type", info.MediaType).Warn("a blob named as a manifest is not one: kept, and nothing it might reference")
		return nil
	}
	count.Add(1)
	for _, b := range refs.Blobs {
		m.blob(b)
	}
	for _, c := range refs.Manifests {
		m.manifest(c)
	}
	if len(refs.Blobs)+len(refs.Manifests) == 0 {
		log.WithFields(logrus.Fields{"media_type": info.MediaType}).Debug("manifest references nothing")
	}
	return nil
}
