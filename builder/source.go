package builder

import (
	"context"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
)

// Source makes images for repository names. The Nix pipeline is one
// source; external builds that emit OCI layouts are others. The Builder
// wraps any source with caching, coalescing and a bound on concurrent
// builds, so a source only has to turn a name and tag into stored blobs.
type Source interface {
	// Identify validates name:tag without building and returns the key
	// that identifies the image (two names for the same image, such as
	// git/htop and htop/git, share it) and whether the result is pinned:
	// the same key will always give the same image, so it may be cached
	// forever. Invalid names give an *errcode.Error.
	Identify(name, tag string) (key string, pinned bool, err error)
	// Build makes the image (or finds it in the source's own caches) and
	// returns its manifests, already in storage.
	Build(ctx context.Context, name, tag string) (Manifests, error)
}

// Manifests are the stored manifests of one image, one per format. A
// source that has only one form (an OCI layout) fills only that one.
type Manifests map[manifest.Format]storage.BlobInfo

// Pick returns the manifest in format f, or the one form there is.
func (m Manifests) Pick(f manifest.Format) (storage.BlobInfo, bool) {
	if b, ok := m[f]; ok {
		return b, true
	}
	for _, b := range m {
		return b, true
	}
	return storage.BlobInfo{}, false
}
