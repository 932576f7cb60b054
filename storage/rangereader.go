package storage

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// RangeOpener opens a stream of a stored object from offset to its end.
type RangeOpener func(ctx context.Context, offset int64) (io.ReadCloser, error)

// RangeReader reads an object of known size over the network as an
// io.ReadSeekCloser, which is what OpenBlob returns: Seek only moves the
// offset, and the first Read after a Seek opens a stream from there to the
// end, so http.ServeContent fetches only what it sends, and Close drops
// the rest. A stream that breaks (a connection cut, a response cut short)
// is opened again from where it broke, up to Attempts times: the cloud
// SDKs retry requests, not the reading of a body they have handed over.
// One implementation for every networked backend.
type RangeReader struct {
	ctx    context.Context
	cancel context.CancelFunc // ends ctx, on Close
	name   string             // for errors and logs
	size   int64
	open   RangeOpener
	tries  int
	log    logrus.FieldLogger

	offset int64
	body   io.ReadCloser // reading from offset; nil until needed
}

// NewRangeReader reads the object called name, of size bytes, with open,
// under ctx, which cancel ends on Close. attempts bounds the openings of
// a stream that breaks (at least 1).
func NewRangeReader(ctx context.Context, cancel context.CancelFunc, name string, size int64, attempts int, open RangeOpener, log logrus.FieldLogger) *RangeReader {
	return &RangeReader{ctx: ctx, cancel: cancel, name: name, size: size, open: open, tries: max(attempts, 1), log: log}
}

func (o *RangeReader) Read(p []byte) (int, error) {
	if o.offset >= o.size {
		return 0, io.EOF
	}
	for attempt := 1; ; attempt++ {
		if o.body == nil {
			body, err := o.open(o.ctx, o.offset)
			if err != nil {
				o.log.WithError(err).WithField("offset", o.offset).Warn("opening blob for streaming")
				return 0, err
			}
			o.body = body
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
		if attempt >= o.tries || o.ctx.Err() != nil {
			o.log.WithError(err).WithField("offset", o.offset).Warn("streaming blob")
			return 0, fmt.Errorf("reading %s at %d: %w", o.name, o.offset, err)
		}
		o.log.WithError(err).WithFields(logrus.Fields{"offset": o.offset, "attempt": attempt}).Debug("blob stream broke, opening it again")
	}
}

// Seek moves the offset; the next Read opens a stream from there.
func (o *RangeReader) Seek(offset int64, whence int) (int64, error) {
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
func (o *RangeReader) Close() error {
	err := o.closeBody()
	o.cancel()
	return err
}

func (o *RangeReader) closeBody() error {
	if o.body == nil {
		return nil
	}
	err := o.body.Close()
	o.body = nil
	return err
}
