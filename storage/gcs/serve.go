package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// ServeBlob implements storage.Backend.
//
// With a signing key, a GET is answered with a 307 redirect to a V4 signed
// URL of the object, valid for Options.SignedURLTTL; the client repeats its
// Range header there. A HEAD, and a GET whose If-None-Match names the
// blob's ETag, are answered here: they need no bytes, and GCS's own ETag is
// not the digest.
//
// Without a signing key, the blob is streamed through http.ServeContent,
// which answers HEAD, Range and the conditional headers, reading the object
// with range reads from where each range starts.
//
// Either way the blob is stat'ed first, so that a missing one is reported
// as storage.ErrNotFound with nothing written.
func (b *Backend) ServeBlob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	ctx := r.Context()
	key, attrs, err := b.blobAttrs(ctx, dgst)
	if err != nil {
		return err
	}
	etag := `"` + dgst.String() + `"`
	if b.signer != nil && r.Method == http.MethodGet && !etagListMatches(r.Header.Get("If-None-Match"), etag) {
		target, err := b.signedURL(key)
		if err != nil {
			return fmt.Errorf("serving blob %s: signing URL: %w", dgst, err)
		}
		h := w.Header()
		h.Set("Docker-Content-Digest", dgst.String())
		h.Set("Etag", etag)
		// The URL expires: caches must not keep the redirect.
		h.Set("Cache-Control", "no-store")
		h.Set("Location", target)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil
	}

	contentType := attrs.ContentType
	if contentType == "" {
		contentType = defaultContentType
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Docker-Content-Digest", dgst.String())
	h.Set("Etag", etag)
	h.Set("Cache-Control", blobCacheControl)
	tctx, cancel := b.transferContext(ctx)
	defer cancel()
	content := &objectReadSeeker{
		ctx:  tctx,
		obj:  b.bucket.Object(key).Generation(attrs.Generation),
		size: attrs.Size,
		log:  b.log.WithField("digest", dgst),
	}
	defer content.Close()
	// No modification time: the ETag answers every conditional request.
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// etagListMatches reports whether an If-None-Match header value names etag
// (or is "*"), using the weak comparison If-None-Match calls for.
func etagListMatches(header, etag string) bool {
	for candidate := range strings.SplitSeq(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == "*" || candidate == etag {
			return true
		}
	}
	return false
}

// objectReadSeeker reads an object of known size as an io.ReadSeeker:
// Seek only moves the offset, and the first Read after a Seek opens a range
// read from there to the end. http.ServeContent reads only what it sends,
// and closing the reader drops the rest of the stream.
type objectReadSeeker struct {
	ctx    context.Context
	obj    *gstorage.ObjectHandle
	size   int64
	offset int64
	r      *gstorage.Reader // reading from offset; nil until needed
	log    logrus.FieldLogger
}

func (o *objectReadSeeker) Read(p []byte) (int, error) {
	if o.offset >= o.size {
		return 0, io.EOF
	}
	if o.r == nil {
		r, err := o.obj.NewRangeReader(o.ctx, o.offset, -1)
		if err != nil {
			err = wrapErr("reading", o.obj.ObjectName(), err)
			o.log.WithError(err).WithField("offset", o.offset).Warn("opening blob for streaming")
			return 0, err
		}
		o.r = r
	}
	n, err := o.r.Read(p)
	o.offset += int64(n)
	if errors.Is(err, io.EOF) && o.offset < o.size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && !errors.Is(err, io.EOF) {
		o.log.WithError(err).WithField("offset", o.offset).Warn("streaming blob")
	}
	return n, err
}

func (o *objectReadSeeker) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.offset + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	if abs != o.offset {
		o.Close()
		o.offset = abs
	}
	return abs, nil
}

// Close ends the current range read, if any.
func (o *objectReadSeeker) Close() error {
	if o.r == nil {
		return nil
	}
	err := o.r.Close()
	o.r = nil
	return err
}
