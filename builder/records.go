package builder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// Persisted records: small JSON objects in storage, so that caches survive
// restarts and are shared by every instance on the same storage.
//
//	tags/<name>/_/<tag>   the last build of name:tag (tags/list, static images)
//	pinned/<hash of key>  a pinned request's manifests: served without building
//	plans/<hash of key>   a pinned plan's manifests: reused instead of building
//	manifests/<hash>      manifests by resolved input (see the Nix source)
//	layers/<hash>         a built layer by its store paths and format
const (
	tagPrefix    = "tags/"
	pinnedPrefix = "pinned/"
	planPrefix   = "plans/"
)

// tagObject names the record of name:tag. The "_" component keeps the
// tags of "a/b" apart from the repository "a/b/c": a registry name
// component never starts with "_".
func tagObject(name, tag string) string { return tagPrefix + name + "/_/" + tag }

// StoreTag records manifests already in storage as name:tag. The registry
// then serves them by that tag without a source: tests and pre-built images
// use it.
func StoreTag(ctx context.Context, s storage.Backend, name, tag string, m source.Manifests) error {
	return source.PutRecord(ctx, s, tagObject(name, tag), source.NewRecord(m, true, time.Now()))
}

// listTags lists the tags recorded for name.
func listTags(ctx context.Context, s storage.Backend, name string) ([]string, error) {
	prefix := tagPrefix + name + "/_/"
	names, err := s.ListObjects(ctx, prefix)
	if err != nil {
		// A name too long for an object name was never recorded.
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidName) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("listing tags of %s: %w", name, err)
	}
	tags := make([]string, 0, len(names))
	for _, n := range names {
		t := strings.TrimPrefix(n, prefix)
		if t != "" && !strings.Contains(t, "/") {
			tags = append(tags, t)
		}
	}
	return tags, nil
}
