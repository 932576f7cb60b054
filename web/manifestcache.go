package web

import (
	"math"
	"strconv"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/opencontainers/go-digest"
)

// defaultManifestCacheBytes bounds the memory kept for manifests. A nixport
// manifest is a few kilobytes, so this holds thousands of them.
const defaultManifestCacheBytes = 64 << 20

// entryOverhead is what an entry costs beyond its body: the struct, the
// header slices and their strings, the LRU's list element and map slot.
const entryOverhead = 512

// manifestEntry is a manifest ready to be written: its exact stored bytes
// and the header values, built once so that answering from the cache
// allocates nothing.
type manifestEntry struct {
	digest      digest.Digest
	mediaType   string
	body        []byte
	contentType []string
	digestValue []string
	length      []string
	etag        []string
}

func newManifestEntry(d digest.Digest, mediaType string, body []byte) *manifestEntry {
	return &manifestEntry{
		digest:      d,
		mediaType:   mediaType,
		body:        body,
		contentType: []string{mediaType},
		digestValue: []string{string(d)},
		length:      []string{strconv.Itoa(len(body))},
		etag:        []string{`"` + string(d) + `"`},
	}
}

func (e *manifestEntry) cost() int64 { return int64(len(e.body)) + entryOverhead }

// manifestCache is a least-recently-used cache of manifests by digest,
// bounded by bytes rather than by count. Content at a digest never changes,
// so an entry is never stale. It is safe for concurrent use.
type manifestCache struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[digest.Digest, *manifestEntry]
	bytes int64 // cost of the entries held
	max   int64
}

func newManifestCache(maxBytes int64) *manifestCache {
	c := &manifestCache{max: maxBytes}
	// The count bound is never reached: add evicts by bytes first.
	lru, err := simplelru.NewLRU(math.MaxInt32, func(_ digest.Digest, e *manifestEntry) {
		c.bytes -= e.cost()
	})
	if err != nil {
		panic(err) // only for a size <= 0
	}
	c.lru = lru
	return c
}

func (c *manifestCache) get(d digest.Digest) (*manifestEntry, bool) {
	c.mu.Lock()
	e, ok := c.lru.Get(d)
	c.mu.Unlock()
	return e, ok
}

// add keeps e, evicting the least recently used entries to stay within the
// byte bound. An entry larger than an eighth of the bound is not kept, so
// one huge manifest cannot flush the cache.
func (c *manifestCache) add(e *manifestEntry) {
	if e.cost() > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Contains(e.digest) {
		return
	}
	c.lru.Add(e.digest, e)
	c.bytes += e.cost()
	for c.bytes > c.max {
		c.lru.RemoveOldest()
	}
}

// len and size report the cache's content, for tests.
func (c *manifestCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *manifestCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
