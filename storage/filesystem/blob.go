package filesystem

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"mime"
	"os"

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

// NewBlobWriter implements storage.Backend. The writer is not safe for
// concurrent use; one goroutine writes and then commits or cancels.
func (b *Backend) NewBlobWriter(ctx context.Context, mediaType string) (storage.BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if mediaType != "" {
		// The media type comes back as a Content-Type header: refuse what
		// is not one rather than store it.
		if _, _, err := mime.ParseMediaType(mediaType); err != nil {
			return nil, fmt.Errorf("new blob: media type %q: %w", mediaType, err)
		}
	}
	f, name, err := b.createTemp("blob")
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &blobWriter{
		backend:   b,
		file:      f,
		tempName:  name,
		mediaType: mediaType,
		hash:      sha256.New(),
	}, nil
}

// blobWriter streams into a temporary file, hashing and counting as it goes
// so the content is read exactly once.
type blobWriter struct {
	backend   *Backend
	file      *os.File
	tempName  string // relative to the root
	mediaType string
	hash      hash.Hash
	size      int64
	writeErr  error // first write failure; Commit refuses after one
	closed    bool  // Commit or Cancel has run
}

func (w *blobWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("writing blob: writer already committed or cancelled")
	}
	if w.writeErr != nil {
		return 0, w.writeErr
	}
	n, err := w.file.Write(p)
	w.hash.Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.writeErr = fmt.Errorf("writing blob: %w", err)
		return n, w.writeErr
	}
	return n, nil
}

// Cancel implements storage.BlobWriter.
func (w *blobWriter) Cancel() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.file.Close()
	if err := w.backend.root.Remove(w.tempName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cancelling blob: %w", err)
	}
	return nil
}

// Commit implements storage.BlobWriter. On any failure the temporary file is
// removed, so the caller need not (but may) call Cancel.
func (w *blobWriter) Commit(ctx context.Context, expected digest.Digest, expectedSize int64) (storage.BlobInfo, error) {
	if w.closed {
		return storage.BlobInfo{}, errors.New("committing blob: writer already committed or cancelled")
	}
	w.closed = true
	published := false
	defer func() {
		if !published {
			w.file.Close() // may already be closed; the error is of no use
			w.backend.removeQuietly(w.tempName)
		}
	}()

	info, err := w.verify(ctx, expected, expectedSize)
	if err != nil {
		return storage.BlobInfo{}, fmt.Errorf("committing blob: %w", err)
	}
	// The content must be on disk before any name points at it.
	if err := w.file.Sync(); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("committing blob %s: %w", info.Digest, err)
	}
	if err := w.file.Close(); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("committing blob %s: %w", info.Digest, err)
	}

	existing, err := w.publish(ctx, info)
	if err != nil {
		return storage.BlobInfo{}, fmt.Errorf("committing blob %s: %w", info.Digest, err)
	}
	published = existing == nil
	log := w.backend.log.WithFields(logrus.Fields{"digest": info.Digest, "size": info.Size})
	if existing != nil {
		log.Debug("blob already stored")
		return *existing, nil
	}
	log.Debug("blob stored")
	return info, nil
}

// verify checks what was written against the caller's expectations and
// returns the info the blob will be stored with.
func (w *blobWriter) verify(ctx context.Context, expected digest.Digest, expectedSize int64) (storage.BlobInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.BlobInfo{}, err
	}
	if w.writeErr != nil {
		return storage.BlobInfo{}, w.writeErr
	}
	info := storage.BlobInfo{
		Digest:    digest.NewDigest(digest.SHA256, w.hash),
		Size:      w.size,
		MediaType: w.mediaType,
	}
	if err := storage.VerifyBlob(info, expected, expectedSize); err != nil {
		return storage.BlobInfo{}, err
	}
	return info, nil
}

// publish gives the verified temporary file its final name. If the blob is
// already stored (before or by a concurrent writer), it leaves that blob
// alone and returns its info; the caller then drops the temporary file.
//
// The final name is created with a hard link, which fails if the name
// exists, rather than a rename, which would replace it: a published blob is
// never overwritten, not even by identical bytes.
func (w *blobWriter) publish(ctx context.Context, info storage.BlobInfo) (*storage.BlobInfo, error) {
	b := w.backend
	final, err := blobPath(info.Digest)
	if err != nil {
		return nil, err // cannot happen: the digest was computed here
	}
	// Fast path: an existing blob needs no media type written.
	if existing, err := b.StatBlob(ctx, info.Digest); err == nil {
		return &existing, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}

	if err := w.writeMediaType(ctx, final+typeSuffix); err != nil {
		return nil, err
	}
	if err := b.root.Link(w.tempName, final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("publishing: %w", err)
		}
		existing, err := b.StatBlob(ctx, info.Digest)
		if err != nil {
			return nil, err
		}
		return &existing, nil
	}
	b.removeQuietly(w.tempName)
	if err := b.syncDir(blobDir); err != nil {
		return nil, err
	}
	return nil, nil
}

// writeMediaType stores the media type beside the blob before the blob
// itself appears, so a reader that finds the blob also finds its type. It
// replaces any type file already there: without its blob, such a file is the
// leftover of a writer that crashed, or of a concurrent writer of the same
// bytes, which then describes the same content.
func (w *blobWriter) writeMediaType(ctx context.Context, name string) error {
	b := w.backend
	if w.mediaType == "" {
		if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale media type: %w", err)
		}
		return nil
	}
	temp, err := b.writeTemp(ctx, "type", []byte(w.mediaType))
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
