package storage

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// breakingBody gives at most n bytes of data from its start, then fails.
type breakingBody struct {
	r io.Reader
}

func (b *breakingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}
func (b *breakingBody) Close() error { return nil }

func TestRangeReader(t *testing.T) {
	const data = "0123456789abcdefghij"
	quiet := logrus.New()
	quiet.Out = io.Discard
	for _, tt := range []struct {
		name     string
		breakAt  int // each stream breaks after this many bytes; 0: never
		attempts int
		seek     int64
		want     string
		wantErr  bool
		opens    int
	}{
		{name: "whole", attempts: 1, want: data, opens: 1},
		{name: "from a seek", attempts: 1, seek: 15, want: data[15:], opens: 1},
		{name: "breaks and resumes", breakAt: 7, attempts: 2, want: data, opens: 3},
		{name: "breaks every time", breakAt: 0, attempts: 3, want: "", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opens := 0
			open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
				opens++
				rest := data[offset:]
				if tt.name == "breaks every time" {
					return &breakingBody{r: strings.NewReader("")}, nil
				}
				if tt.breakAt > 0 && len(rest) > tt.breakAt {
					return &breakingBody{r: strings.NewReader(rest[:tt.breakAt])}, nil
				}
				return io.NopCloser(strings.NewReader(rest)), nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			r := NewRangeReader(ctx, cancel, "obj", int64(len(data)), tt.attempts, open, quiet)
			if _, err := r.Seek(tt.seek, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Fatalf("read %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
			if tt.opens > 0 && opens != tt.opens {
				t.Errorf("%d streams opened, want %d", opens, tt.opens)
			}
			if tt.wantErr && opens != tt.attempts {
				t.Errorf("%d streams opened before giving up, want %d", opens, tt.attempts)
			}
			r.Close()
			if ctx.Err() == nil {
				t.Error("Close did not end the reader's context")
			}
		})
	}
}

func TestRangeReaderShortStream(t *testing.T) {
	open := func(ctx context.Context, offset int64) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("abc")), nil // says 3 of 10 bytes
	}
	quiet := logrus.New()
	quiet.Out = io.Discard
	r := NewRangeReader(context.Background(), func() {}, "obj", 10, 1, open, quiet)
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a stream shorter than the object: %v, want ErrUnexpectedEOF", err)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("a negative seek was taken")
	}
	if n, _ := r.Seek(-2, io.SeekEnd); n != 8 {
		t.Errorf("SeekEnd -2 = %d, want 8", n)
	}
}
