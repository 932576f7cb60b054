package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"

	gstorage "cloud.google.com/go/storage"
	"github.com/sirupsen/logrus"
)

// objectReadSeeker reads an object of known size as an io.ReadSeeker:
// Seek only moves the offset, and the first Read after a Seek opens a range
// read from there to the end. http.ServeContent reads only what it sends,
// and closing the reader drops the rest of the stream.
type objectReadSeeker struct {
	ctx    context.Context
	cancel context.CancelFunc // ends ctx, on Close
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
		o.closeRange()
		o.offset = abs
	}
	return abs, nil
}

// Close ends the current range read, if any, and the reader's context.
func (o *objectReadSeeker) Close() error {
	err := o.closeRange()
	o.cancel()
	return err
}

// closeRange ends the current range read, if any.
func (o *objectReadSeeker) closeRange() error {
	if o.r == nil {
		return nil
	}
	err := o.r.Close()
	o.r = nil
	return err
}
