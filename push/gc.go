package push

import (
	"context"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Roots is what the push repositories keep alive, for the blob collector
// (blobgc.Roots; this package does not import it): every blob linked in a
// repository, every manifest a repository holds (the collector reads it
// and keeps what it references), and the sha256 content of every write
// in progress. It needs storage alone, so `nixport gc` can use it without
// a running registry.
type Roots struct {
	Store storage.Backend
}

// MarkRoots lists everything under Prefix once. A link that cannot be
// read stops the collection (an error) rather than let its blob go.
func (p Roots) MarkRoots(ctx context.Context, blob, manifest func(digest.Digest)) error {
	names, err := p.Store.ListObjects(ctx, Prefix)
	if err != nil {
		return fmt.Errorf("listing the push repositories: %w", err)
	}
	r := &Registry{store: p.Store}
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, uploadsPrefix), strings.HasPrefix(name, digestsPrefix):
			// Writes in progress are listed below; an alias only names
			// what a link names too.
		case strings.Contains(name, "/_blobs/"), strings.Contains(name, "/_manifests/"):
			l, ok, err := r.readLink(ctx, name, linkDigest(name))
			if err != nil {
				return err
			}
			switch {
			case !ok:
			case strings.Contains(name, "/_blobs/"):
				blob(l.Stored)
			default:
				manifest(l.Stored)
			}
		}
	}
	records, err := ListRecords(ctx, p.Store)
	if err != nil {
		return err
	}
	for _, rec := range records {
		if rec.Digest != "" && reference.ValidDigest(rec.Digest) == nil && rec.Digest.Algorithm() == digest.SHA256 {
			blob(rec.Digest)
		}
	}
	return nil
}

// linkDigest is the digest a link's name ends with (".../<alg>/<hex>");
// a name that ends otherwise gives a digest readLink finds corrupt.
func linkDigest(name string) digest.Digest {
	rest, hex, _ := cutLast(name, "/")
	_, alg, _ := cutLast(rest, "/")
	return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}
