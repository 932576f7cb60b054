package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sirupsen/logrus"
)

// readAttempts bounds how often a reader opens its stream again, from
// where it broke, before it reports the failure.
const readAttempts = 5

// objectReadSeeker reads an object of known size as an io.ReadSeeker:
// Seek only moves the offset, and the first Read after a Seek opens a
// ranged GET from there to the end. http.ServeContent reads only what it
// sends, and closing the reader drops the rest of the stream. A stream
// that breaks (a connection cut, a response cut short) is opened again
// from where it broke: the SDK retries requests, not the reading of a
// body it has handed over.
type objectReadSeeker struct {
	ctx     context.Context
	cancel  context.CancelFunc // ends ctx, on Close
	backend *Backend
	key     string
	etag    string // the object stat'ed; a GET of any other fails
	size    int64
	offset  int64
	body    io.ReadCloser // reading from offset; nil until needed
	log     logrus.FieldLogger
}

func (o *objectReadSeeker) Read(p []byte) (int, error) {
	if o.offset >= o.size {
		return 0, io.EOF
	}
	for attempt := 1; ; attempt++ {
		if o.body == nil {
			if err := o.open(); err != nil {
				o.log.WithError(err).WithField("offset", o.offset).Warn("opening blob for streaming")
				return 0, err
			}
		}
		n, err := o.body.Read(p)
		o.offset += int64(n)
		if errors.Is(err, io.EOF) && o.offset < o.size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil || errors.Is(err, io.EOF) {
			return n, err
		}
		o.closeBody()
		if n > 0 {
			return n, nil // the next Read opens the rest
		}
		if attempt >= readAttempts || o.ctx.Err() != nil {
			o.log.WithError(err).WithField("offset", o.offset).Warn("streaming blob")
			return 0, fmt.Errorf("reading %s at %d: %w", o.key, o.offset, err)
		}
		o.log.WithError(err).WithFields(logrus.Fields{"offset": o.offset, "attempt": attempt}).Debug("blob stream broke, opening it again")
	}
}

// open starts a ranged GET from the offset to the end.
func (o *objectReadSeeker) open() error {
	out, err := o.backend.client.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket:  aws.String(o.backend.bucket),
		Key:     aws.String(o.key),
		Range:   aws.String(fmt.Sprintf("bytes=%d-", o.offset)),
		IfMatch: aws.String(o.etag),
	})
	if err != nil {
		return wrapErr("reading", o.key, err)
	}
	o.body = out.Body
	return nil
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
		o.closeBody()
		o.offset = abs
	}
	return abs, nil
}

// Close ends the current stream, if any, and the reader's context.
func (o *objectReadSeeker) Close() error {
	err := o.closeBody()
	o.cancel()
	return err
}

// closeBody ends the current stream, if any.
func (o *objectReadSeeker) closeBody() error {
	if o.body == nil {
		return nil
	}
	err := o.body.Close()
	o.body = nil
	return err
}
