package web

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/nixport/nixport/manifest"
)

// defaultTagCacheEntries bounds the tag map: one entry per name, tag and
// manifest format recently pulled.
const defaultTagCacheEntries = 8192

// tagKey is a struct, not a joined string, so a lookup allocates nothing.
type tagKey struct {
	name, tag string
	format    manifest.Format
}

type tagAnswer struct {
	entry *manifestEntry
	until time.Time
}

// tagCache is the registry's own map from a tag to the manifest it names,
// kept for as long as Images said the answer stays fresh. A warm GET by
// tag is then answered here without asking Images, which is most of a
// registry's traffic: every pull, and every CI job's re-pull, starts with
// one.
type tagCache struct {
	lru *lru.Cache[tagKey, tagAnswer]
}

func newTagCache(entries int) *tagCache {
	c, err := lru.New[tagKey, tagAnswer](entries)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &tagCache{lru: c}
}

// get returns the manifest k names, if the answer is still fresh at now.
func (c *tagCache) get(k tagKey, now time.Time) (*manifestEntry, bool) {
	a, ok := c.lru.Get(k)
	if !ok || !now.Before(a.until) {
		return nil, false
	}
	return a.entry, true
}

// add keeps e as k's answer until until; an answer already stale is not
// kept.
func (c *tagCache) add(k tagKey, e *manifestEntry, until time.Time, now time.Time) {
	if !now.Before(until) {
		return
	}
	c.lru.Add(k, tagAnswer{entry: e, until: until})
}
