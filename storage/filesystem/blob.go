package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/storage"
)

// typeSuffix names the file beside a blob that holds its media type.
const typeSuffix = ".type"

// blobPath returns the path, relative to the root, of the blob with the given
// digest. Only valid sha256 digests are accepted, which is also what makes
// the digest safe to use as a file name. Anything else cannot be stored here,
// so it is reported as not found.
func blobPath(dgst digest.Digest) (string, error) {
	hex, err := storage.SHA256Hex(dgst)
	if err != nil {
		return "", fmt.Errorf("%w: %w", err, storage.ErrNotFound)
	}
	return blobDir + "/" + hex, nil
}

// NewBlobWriter implements storage.Backend: storage.NewBlobWriter around a
// temporary file in tmp/.
func (b *Backend) NewBlobWriter(ctx context.Context, mediaType string) (storage.BlobWriter, error) {
	return storage.NewBlobWriter(ctx, mediaType, b.log, func() (storage.BlobSink, error) {
		f, name, err := b.createTemp("blob")
		if err != nil {
			return nil, err
		}
		return &blobSink{backend: b, file: f, tempName: name}, nil
	})
}

// blobSink is a blob's storage.BlobSink: a temporary file, which Publish
// links into place.
type blobSink struct {
	backend  *Backend
	file     *os.File
	tempName string // relative to the root
}

func (s *blobSink) Write(p []byte) (int, error) { return s.file.Write(p) }

func (s *blobSink) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	return s.backend.RefreshBlob(ctx, dgst)
}

// Discard implements storage.BlobSink. After a successful Publish, the
// temporary name is only a second link to the blob.
func (s *blobSink) Discard() error {
	s.file.Close() // may already be closed by Publish; the error is of no use
	if err := s.backend.root.Remove(s.tempName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Publish implements storage.BlobSink: it gives the verified temporary file
// its final name. If the blob was stored meanwhile by a concurrent writer,
// it leaves that blob alone and returns its info.
//
// The final name is created with a hard link, which fails if the name
// exists, rather than a rename, which would replace it: a published blob is
// never overwritten, not even by identical bytes.
func (s *blobSink) Publish(ctx context.Context, info storage.BlobInfo) (storage.BlobInfo, error) {
	b := s.backend
	final, err := blobPath(info.Digest)
	if err != nil {
		return storage.BlobInfo{}, err // cannot happen: the digest was computed
	}
	// The content must be on disk before any name points at it.
	if err := s.file.Sync(); err != nil {
		return storage.BlobInfo{}, err
	}
	if err := s.file.Close(); err != nil {
		return storage.BlobInfo{}, err
	}
	log := b.log.WithFields(logrus.Fields{"digest": info.Digest, "size": info.Size})
	// The writer looked for the blob before the fsync, which may take a
	// while: look again, so that the type file of a blob a concurrent
	// writer published meanwhile is replaced only in the short moment
	// between this look and the link.
	if existing, err := b.RefreshBlob(ctx, info.Digest); err == nil {
		log.Debug("blob already stored")
		return existing, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return storage.BlobInfo{}, err
	}
	if err := s.writeMediaType(ctx, final+typeSuffix, info.MediaType); err != nil {
		return storage.BlobInfo{}, err
	}
	// The blob's time is what a collection judges it by (DeleteBlob). The
	// kernel stamped the file from its coarse clock, which may be a tick
	// behind time.Now: a blob written just after a collection began
	// could bear a time before it. Stamp it with the precise time first.
	now := time.Now()
	if err := b.root.Chtimes(s.tempName, now, now); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("stamping the blob's time: %w", err)
	}
	if err := b.root.Link(s.tempName, final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return storage.BlobInfo{}, fmt.Errorf("publishing: %w", err)
		}
		existing, err := b.RefreshBlob(ctx, info.Digest)
		if err != nil {
			return storage.BlobInfo{}, err
		}
		log.Debug("blob already stored")
		return existing, nil
	}
	// A collection deleting an earlier copy of this blob removes its type
	// file once the blob is gone (DeleteBlob), which may be the one just
	// written: write it again if so. (The collector looks for the blob
	// after it moved the type file away, so one of the two sees the other.)
	if info.MediaType != "" {
		if _, err := b.root.Lstat(final + typeSuffix); errors.Is(err, fs.ErrNotExist) {
			if err := s.writeMediaType(ctx, final+typeSuffix, info.MediaType); err != nil {
				return storage.BlobInfo{}, err
			}
		}
	}
	if err := b.syncDir(blobDir); err != nil {
		return storage.BlobInfo{}, err
	}
	log.Debug("blob stored")
	return info, nil
}

// writeMediaType stores the media type beside the blob before the blob
// itself appears, so a reader that finds the blob also finds its type. It
// replaces any type file already there: without its blob, such a file is the
// leftover of a writer that crashed, or of a concurrent writer of the same
// bytes, which then describes the same content.
func (s *blobSink) writeMediaType(ctx context.Context, name, mediaType string) error {
	b := s.backend
	if mediaType == "" {
		if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale media type: %w", err)
		}
		return nil
	}
	temp, err := b.writeTemp(ctx, "type", []byte(mediaType))
	if err != nil {
		return fmt.Errorf("writing media type: %w", err)
	}
	if err := b.root.Rename(temp, name); err != nil {
		b.removeQuietly(temp)
		return fmt.Errorf("writing media type: %w", err)
	}
	// Make the type durable before the blob's name can be.
	return b.syncDir(blobDir)
}

// StatBlob implements storage.Backend.
func (b *Backend) StatBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	name, err := blobPath(dgst)
	if err != nil {
		return storage.BlobInfo{}, err
	}
	fi, err := b.root.Stat(name)
	if err != nil {
		return storage.BlobInfo{}, blobError("stat", dgst, err)
	}
	return b.blobInfo(dgst, name, fi)
}

// OpenBlob implements storage.Backend. The reader is the *os.File itself,
// which net/http sends with sendfile.
func (b *Backend) OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, storage.BlobInfo, error) {
	f, info, err := b.openBlob(dgst)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	return f, info, nil
}

func (b *Backend) openBlob(dgst digest.Digest) (*os.File, storage.BlobInfo, error) {
	name, err := blobPath(dgst)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	f, err := b.root.Open(name)
	if err != nil {
		return nil, storage.BlobInfo{}, blobError("opening", dgst, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, storage.BlobInfo{}, blobError("stat", dgst, err)
	}
	info, err := b.blobInfo(dgst, name, fi)
	if err != nil {
		f.Close()
		return nil, storage.BlobInfo{}, err
	}
	return f, info, nil
}

// blobInfo assembles a blob's info from its file and its type file.
func (b *Backend) blobInfo(dgst digest.Digest, name string, fi fs.FileInfo) (storage.BlobInfo, error) {
	if !fi.Mode().IsRegular() {
		return storage.BlobInfo{}, fmt.Errorf("blob %s: %s is not a regular file", dgst, name)
	}
	mediaType, err := b.root.ReadFile(name + typeSuffix)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return storage.BlobInfo{}, fmt.Errorf("blob %s: reading media type: %w", dgst, err)
	}
	return storage.BlobInfo{Digest: dgst, Size: fi.Size(), MediaType: string(mediaType)}, nil
}

// SignedBlobURL implements storage.Backend: a directory has no URL of its
// own, so blobs are streamed.
func (b *Backend) SignedBlobURL(context.Context, digest.Digest) (string, bool, error) {
	return "", false, nil
}

// blobError wraps a failed file operation on a blob, mapping "no such file"
// to storage.ErrNotFound.
func blobError(op string, dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s blob %s: %w", op, dgst, storage.ErrNotFound)
	}
	return fmt.Errorf("%s blob %s: %w", op, dgst, err)
}
