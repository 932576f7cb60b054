package web

import (
	"context"
	"time"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
)

// Images is what the registry API needs from whatever provides images: the
// builder in production, stored images in tests. Errors a client should see
// are *errcode.Error; anything else is a server fault (500).
type Images interface {
	// ManifestByTag returns the stored manifest blob of repository name at
	// tag, in the requested format, building the image first if needed,
	// and until when the registry may answer name:tag in that format with
	// it without asking again (the zero time: ask every time).
	ManifestByTag(ctx context.Context, name, tag string, format manifest.Format) (info storage.BlobInfo, freshUntil time.Time, err error)
	// Tags lists the tags known for repository name, sorted; a name with no
	// tags gives an empty list, not an error.
	Tags(ctx context.Context, name string) ([]string, error)
}
