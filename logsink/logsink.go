// Package logsink batches log lines on their way to a file.
//
// A registry writes one line per request. Written straight to stderr that
// is one write(2) per request, which on a busy server costs as much as
// the rest of answering a warm manifest. A Writer takes each line into a
// buffer and one goroutine writes whatever has gathered, so a busy server
// makes one write per batch while an idle one still writes each line at
// once. Lines reach the file whole and in the order Write was called; the
// buffer is bounded, so a stalled file slows writers down rather than
// growing memory. Close writes what is left: a line handed to Write is
// lost only if the process dies without Close.
package logsink

import (
	"errors"
	"io"
	"sync"
)

// DefaultLimit bounds the bytes waiting to be written.
const DefaultLimit = 1 << 20

// Writer is an io.Writer safe for concurrent use whose every Write is kept
// whole. Make one with New; Close it before the process exits.
type Writer struct {
	out   io.Writer
	limit int

	mu      sync.Mutex
	drained sync.Cond // signalled when pending shrinks or writes catch up
	pending []byte    // taken, not yet written
	spare   []byte    // the flusher's previous batch, reused
	queued  uint64    // Write calls taken so far
	written uint64    // of which the flusher has written
	closed  bool
	err     error // first write error

	wake     chan struct{} // cap 1: work is pending
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when the flusher has exited
}

// New returns a Writer to out that buffers at most limit bytes (DefaultLimit
// if limit <= 0) and starts its flusher.
func New(out io.Writer, limit int) *Writer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	w := &Writer{
		out:   out,
		limit: limit,
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.drained.L = &w.mu
	go w.flush()
	return w
}

// Write takes a copy of p to be written. It blocks only while the buffer
// is full. After Close it writes p directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	// A line larger than the whole limit still goes, once the buffer is
	// empty, so nothing is ever refused.
	for !w.closed && len(w.pending) > 0 && len(w.pending)+len(p) > w.limit {
		w.drained.Wait()
	}
	if w.closed {
		defer w.mu.Unlock()
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	w.queued++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // the flusher is already due to run
	}
	return len(p), nil
}

// Sync waits until every line taken before the call has been written.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.queued
	for w.written < target && !w.closed {
		w.drained.Wait()
	}
	return w.err
}

// Close writes what is pending, stops the flusher and returns the first
// error the file gave. Writes after Close go straight to the file.
func (w *Writer) Close() error {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// ErrShortWrite is recorded when the file accepts fewer bytes than given
// without saying why.
var ErrShortWrite = errors.New("logsink: short write")

// flush is the one goroutine that writes; it exits when Close is called
// and nothing is pending.
func (w *Writer) flush() {
	defer close(w.done)
	for {
		stopping := false
		select {
		case <-w.wake:
		case <-w.stop:
			stopping = true
		}
		for {
			w.mu.Lock()
			if len(w.pending) == 0 {
				// Checked under the lock that Write takes, so no line can
				// slip in between the last batch and closing.
				if stopping {
					w.closed = true
					w.drained.Broadcast()
				}
				w.mu.Unlock()
				break
			}
			batch, n := w.pending, w.queued
			w.pending = w.spare[:0]
			w.mu.Unlock()
			err := writeAll(w.out, batch)
			w.mu.Lock()
			if err != nil && w.err == nil {
				w.err = err
			}
			w.written = n
			w.spare = batch
			w.drained.Broadcast()
			w.mu.Unlock()
		}
		if stopping {
			return
		}
	}
}

func writeAll(out io.Writer, b []byte) error {
	n, err := out.Write(b)
	if err == nil && n < len(b) {
		err = ErrShortWrite
	}
	return err
}
