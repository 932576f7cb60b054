package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/storage"
)

// fakeSink is a storage.BlobSink that keeps its bytes in memory, records
// every call, and fails where it is told to.
type fakeSink struct {
	calls   []string
	written bytes.Buffer
	stored  map[digest.Digest]storage.BlobInfo // what RefreshBlob finds

	writeLimit int   // >= 0: Write stores at most this many bytes in all, then fails
	shortWrite bool  // Write stores half of p and reports no error
	statErr    error // RefreshBlob fails with it (unless the blob is stored)
	publishErr error
	discardErr error
	published  *storage.BlobInfo // what Publish returns instead of its argument
}

func newFakeSink() *fakeSink {
	return &fakeSink{stored: map[digest.Digest]storage.BlobInfo{}, writeLimit: -1}
}

func (s *fakeSink) Write(p []byte) (int, error) {
	s.calls = append(s.calls, "Write")
	switch {
	case s.shortWrite:
		return s.written.Write(p[:len(p)/2])
	case s.writeLimit >= 0 && s.written.Len()+len(p) > s.writeLimit:
		n, _ := s.written.Write(p[:s.writeLimit-s.written.Len()])
		return n, errors.New("disk full")
	}
	return s.written.Write(p)
}

func (s *fakeSink) RefreshBlob(ctx context.Context, dgst digest.Digest) (storage.BlobInfo, error) {
	s.calls = append(s.calls, "RefreshBlob")
	if info, ok := s.stored[dgst]; ok {
		return info, nil
	}
	if s.statErr != nil {
		return storage.BlobInfo{}, s.statErr
	}
	return storage.BlobInfo{}, fmt.Errorf("stat %s: %w", dgst, storage.ErrNotFound)
}

func (s *fakeSink) Publish(ctx context.Context, info storage.BlobInfo) (storage.BlobInfo, error) {
	s.calls = append(s.calls, "Publish")
	if info.Digest != digest.FromBytes(s.written.Bytes()) || info.Size != int64(s.written.Len()) {
		return storage.BlobInfo{}, fmt.Errorf("published %+v, but %d bytes were written", info, s.written.Len())
	}
	if s.publishErr != nil {
		return storage.BlobInfo{}, s.publishErr
	}
	if s.published != nil {
		return *s.published, nil
	}
	s.stored[info.Digest] = info
	return info, nil
}

func (s *fakeSink) Discard() error {
	s.calls = append(s.calls, "Discard")
	return s.discardErr
}

// callsBut returns the calls other than Write.
func (s *fakeSink) callsBut() []string {
	return slices.DeleteFunc(slices.Clone(s.calls), func(c string) bool { return c == "Write" })
}

func newWriter(t *testing.T, sink *fakeSink, mediaType string) storage.BlobWriter {
	t.Helper()
	w, err := storage.NewBlobWriter(t.Context(), mediaType, nil, func() (storage.BlobSink, error) { return sink, nil })
	if err != nil {
		t.Fatalf("NewBlobWriter: %v", err)
	}
	return w
}

func TestBlobWriter(t *testing.T) {
	const mediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
	content := []byte("the content of a blob")
	right := digest.FromBytes(content)
	size := int64(len(content))
	want := storage.BlobInfo{Digest: right, Size: size, MediaType: mediaType}
	other := storage.BlobInfo{Digest: right, Size: size, MediaType: "text/plain"}
	errPublish := errors.New("publish failed")
	errStat := errors.New("stat failed")

	tests := []struct {
		name  string
		setup func(s *fakeSink)
		// run uses the writer after content was written to it, and
		// returns what Commit returned (or zero values).
		run       func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error)
		wantInfo  storage.BlobInfo
		wantErrIs error  // the error must wrap it; nil: no error
		wantErrIn string // the error must say it ("": unchecked)
		wantCalls []string
	}{
		{
			name:      "commit publishes",
			run:       commit(right, size),
			wantInfo:  want,
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name:      "commit without expectations publishes what was written",
			run:       commit("", -1),
			wantInfo:  want,
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name:      "digest mismatch discards, publishes nothing",
			run:       commit(digest.FromString("other"), size),
			wantErrIs: storage.ErrDigestMismatch,
			wantErrIn: "committing blob: content hashes to " + string(right),
			wantCalls: []string{"Discard"},
		},
		{
			name:      "size mismatch discards, publishes nothing",
			run:       commit(right, size+1),
			wantErrIs: storage.ErrDigestMismatch,
			wantErrIn: "expected " + fmt.Sprint(size+1),
			wantCalls: []string{"Discard"},
		},
		{
			name:      "size mismatch with the digest unchecked",
			run:       commit("", size-1),
			wantErrIs: storage.ErrDigestMismatch,
			wantCalls: []string{"Discard"},
		},
		{
			name:      "an unusable expected digest is no mismatch, and publishes nothing",
			run:       commit("sha256:not-hex", size),
			wantErrIn: "expected digest",
			wantCalls: []string{"Discard"},
		},
		{
			name: "a cancelled context publishes nothing",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return w.Commit(ctx, right, size)
			},
			wantErrIs: context.Canceled,
			wantCalls: []string{"Discard"},
		},
		{
			name:      "a blob already stored is returned as stored, not published",
			setup:     func(s *fakeSink) { s.stored[right] = other },
			run:       commit(right, size),
			wantInfo:  other,
			wantCalls: []string{"RefreshBlob", "Discard"},
		},
		{
			name:      "a blob stored meanwhile is what Publish returns",
			setup:     func(s *fakeSink) { s.published = &other },
			run:       commit(right, size),
			wantInfo:  other,
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name:      "a failed stat publishes nothing",
			setup:     func(s *fakeSink) { s.statErr = errStat },
			run:       commit(right, size),
			wantErrIs: errStat,
			wantErrIn: "committing blob " + string(right),
			wantCalls: []string{"RefreshBlob", "Discard"},
		},
		{
			name:      "a failed publish discards",
			setup:     func(s *fakeSink) { s.publishErr = errPublish },
			run:       commit(right, size),
			wantErrIs: errPublish,
			wantErrIn: "committing blob " + string(right),
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name:      "a discard that fails after a commit does not fail it",
			setup:     func(s *fakeSink) { s.discardErr = errors.New("cannot remove") },
			run:       commit(right, size),
			wantInfo:  want,
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name: "commit twice",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if _, err := w.Commit(t.Context(), right, size); err != nil {
					t.Fatalf("first Commit: %v", err)
				}
				return w.Commit(t.Context(), right, size)
			},
			wantErrIn: "already committed or cancelled",
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name: "commit after a failed commit",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if _, err := w.Commit(t.Context(), right, size+1); err == nil {
					t.Fatal("first Commit succeeded")
				}
				return w.Commit(t.Context(), right, size)
			},
			wantErrIn: "already committed or cancelled",
			wantCalls: []string{"Discard"},
		},
		{
			name: "cancel discards",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				return storage.BlobInfo{}, w.Cancel()
			},
			wantCalls: []string{"Discard"},
		},
		{
			name: "cancel twice discards once",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if err := w.Cancel(); err != nil {
					t.Fatalf("first Cancel: %v", err)
				}
				return storage.BlobInfo{}, w.Cancel()
			},
			wantCalls: []string{"Discard"},
		},
		{
			name: "cancel reports a failed discard",
			setup: func(s *fakeSink) {
				s.discardErr = errors.New("cannot remove")
			},
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				return storage.BlobInfo{}, w.Cancel()
			},
			wantErrIn: "cancelling blob: cannot remove",
			wantCalls: []string{"Discard"},
		},
		{
			name: "cancel after commit is a no-op",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				info, err := w.Commit(t.Context(), right, size)
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				return info, w.Cancel()
			},
			wantInfo:  want,
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name: "cancel after a failed commit is a no-op",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if _, err := w.Commit(t.Context(), digest.FromString("other"), size); err == nil {
					t.Fatal("Commit succeeded")
				}
				return storage.BlobInfo{}, w.Cancel()
			},
			wantCalls: []string{"Discard"},
		},
		{
			name: "commit after cancel",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if err := w.Cancel(); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
				return w.Commit(t.Context(), right, size)
			},
			wantErrIn: "committing blob: writer already committed or cancelled",
			wantCalls: []string{"Discard"},
		},
		{
			name: "write after commit",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				if _, err := w.Commit(t.Context(), right, size); err != nil {
					t.Fatalf("Commit: %v", err)
				}
				n, err := w.Write([]byte("more"))
				if n != 0 {
					t.Errorf("Write after Commit wrote %d bytes", n)
				}
				return storage.BlobInfo{}, err
			},
			wantErrIn: "writing blob: writer already committed or cancelled",
			wantCalls: []string{"RefreshBlob", "Publish", "Discard"},
		},
		{
			name: "write after cancel",
			run: func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
				w.Cancel()
				_, err := w.Write([]byte("more"))
				return storage.BlobInfo{}, err
			},
			wantErrIn: "writing blob: writer already committed or cancelled",
			wantCalls: []string{"Discard"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newFakeSink()
			if tt.setup != nil {
				tt.setup(sink)
			}
			w := newWriter(t, sink, mediaType)
			if n, err := w.Write(content); err != nil || n != len(content) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			info, err := tt.run(t, w)
			checkErr(t, err, tt.wantErrIs, tt.wantErrIn)
			if info != tt.wantInfo {
				t.Errorf("info = %+v, want %+v", info, tt.wantInfo)
			}
			if got := sink.callsBut(); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("sink calls %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// commit returns a run that commits with the given expectations.
func commit(expected digest.Digest, expectedSize int64) func(*testing.T, storage.BlobWriter) (storage.BlobInfo, error) {
	return func(t *testing.T, w storage.BlobWriter) (storage.BlobInfo, error) {
		return w.Commit(t.Context(), expected, expectedSize)
	}
}

func checkErr(t *testing.T, err, wantIs error, wantIn string) {
	t.Helper()
	switch {
	case wantIs == nil && wantIn == "":
		if err != nil {
			t.Errorf("error %v, want none", err)
		}
	case err == nil:
		t.Errorf("no error, want one wrapping %v and saying %q", wantIs, wantIn)
	case wantIs != nil && !errors.Is(err, wantIs):
		t.Errorf("error %v, want one wrapping %v", err, wantIs)
	case !strings.Contains(err.Error(), wantIn):
		t.Errorf("error %v, want one saying %q", err, wantIn)
	}
}

// The writer hashes and counts exactly what the sink stored, in any number
// of writes, and a failed write keeps Commit from publishing.
func TestBlobWriterWrites(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 10_000)
	tests := []struct {
		name      string
		setup     func(s *fakeSink)
		chunk     int
		wantErrIn string // from the first failed Write, and from Commit
	}{
		{name: "one write", chunk: len(content)},
		{name: "many writes", chunk: 999},
		{name: "byte by byte", chunk: 1},
		{name: "sink fails", setup: func(s *fakeSink) { s.writeLimit = 5000 }, chunk: 999, wantErrIn: "writing blob: disk full"},
		{name: "sink writes short without an error", setup: func(s *fakeSink) { s.shortWrite = true }, chunk: 1000, wantErrIn: "writing blob: short write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newFakeSink()
			if tt.setup != nil {
				tt.setup(sink)
			}
			w := newWriter(t, sink, "")
			var total int
			var writeErr error
			for chunk := range slices.Chunk(content, tt.chunk) {
				n, err := w.Write(chunk)
				total += n
				if err != nil {
					writeErr = err
					// Later writes fail the same way, storing nothing.
					if n, err := w.Write(chunk); n != 0 || err == nil || err.Error() != writeErr.Error() {
						t.Errorf("Write after a failed one = %d, %v; want 0, %v", n, err, writeErr)
					}
					break
				}
			}
			if total != sink.written.Len() {
				t.Errorf("Write reported %d bytes in all, the sink stored %d", total, sink.written.Len())
			}
			info, err := w.Commit(t.Context(), "", -1)
			if tt.wantErrIn != "" {
				checkErr(t, writeErr, nil, tt.wantErrIn)
				checkErr(t, err, nil, tt.wantErrIn)
				if got, want := sink.callsBut(), []string{"Discard"}; !slices.Equal(got, want) {
					t.Errorf("sink calls %q, want %q", got, want)
				}
				return
			}
			if writeErr != nil {
				t.Fatalf("Write: %v", writeErr)
			}
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if want := (storage.BlobInfo{Digest: digest.FromBytes(content), Size: int64(len(content))}); info != want {
				t.Errorf("Commit = %+v, want %+v", info, want)
			}
		})
	}
}

// NewBlobWriter makes no sink for a writer that could not be used.
func TestNewBlobWriter(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	errSink := errors.New("no space for a temporary file")
	tests := []struct {
		name      string
		ctx       context.Context
		mediaType string
		sinkErr   error
		wantSink  bool // newSink is called
		wantErrIs error
		wantErrIn string
	}{
		{name: "typed", mediaType: "application/vnd.oci.image.config.v1+json", wantSink: true},
		{name: "with parameters", mediaType: "text/plain; charset=utf-8", wantSink: true},
		{name: "untyped", mediaType: "", wantSink: true},
		{name: "header injection", mediaType: "text/plain\r\nX-Injected: 1", wantErrIn: "new blob: media type"},
		{name: "not a media type", mediaType: "not a type", wantErrIn: "new blob: media type"},
		{name: "slash only", mediaType: "/", wantErrIn: "new blob: media type"},
		{name: "cancelled context", ctx: cancelled, mediaType: "text/plain", wantErrIs: context.Canceled},
		{name: "the sink fails", mediaType: "text/plain", sinkErr: errSink, wantSink: true, wantErrIs: errSink, wantErrIn: "new blob: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			madeSink := false
			w, err := storage.NewBlobWriter(ctx, tt.mediaType, nil, func() (storage.BlobSink, error) {
				madeSink = true
				if tt.sinkErr != nil {
					return nil, tt.sinkErr
				}
				return newFakeSink(), nil
			})
			if madeSink != tt.wantSink {
				t.Errorf("newSink called: %v, want %v", madeSink, tt.wantSink)
			}
			checkErr(t, err, tt.wantErrIs, tt.wantErrIn)
			if (w != nil) != (err == nil) {
				t.Errorf("writer %v with error %v", w, err)
			}
			if w == nil {
				return
			}
			info, err := w.Commit(t.Context(), "", -1)
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if want := (storage.BlobInfo{Digest: digest.FromBytes(nil), MediaType: tt.mediaType}); info != want {
				t.Errorf("Commit = %+v, want %+v", info, want)
			}
		})
	}
}

// PutBlob cancels the writer when reading fails: nothing is published.
func TestPutBlobCancelsOnReadError(t *testing.T) {
	sink := newFakeSink()
	b := sinkBackend{sink: sink}
	errRead := errors.New("read failed")
	_, err := storage.PutBlob(t.Context(), b, "", "", -1, io.MultiReader(strings.NewReader("part"), errReader{errRead}))
	if !errors.Is(err, errRead) {
		t.Errorf("PutBlob error %v, want %v", err, errRead)
	}
	if got, want := sink.callsBut(), []string{"Discard"}; !slices.Equal(got, want) {
		t.Errorf("sink calls %q, want %q", got, want)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// sinkBackend is a storage.Backend whose only working part is a blob writer
// on one sink.
type sinkBackend struct {
	storage.Backend // nil: the rest panics
	sink            *fakeSink
}

func (b sinkBackend) NewBlobWriter(ctx context.Context, mediaType string) (storage.BlobWriter, error) {
	return storage.NewBlobWriter(ctx, mediaType, nil, func() (storage.BlobSink, error) { return b.sink, nil })
}
