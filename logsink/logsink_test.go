package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLinesWholeAndInOrder writes from many goroutines into a real file and
// checks every line arrives once, unbroken, and each goroutine's lines in
// the order it wrote them.
func TestLinesWholeAndInOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
	}{
		{"default limit", 0},
		{"tiny limit forces waiting", 64},
		{"limit smaller than a line", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := New(f, tc.limit)
			const writers, lines = 8, 2000
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					for i := range lines {
						line := fmt.Sprintf("writer=%d line=%06d %s\n", g, i, strings.Repeat("x", i%50))
						if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
							t.Errorf("Write = %d, %v", n, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			next := make([]int, writers)
			got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(got) != writers*lines {
				t.Fatalf("%d lines in the file, want %d", len(got), writers*lines)
			}
			for _, l := range got {
				var g, i int
				var pad string
				if _, err := fmt.Sscanf(l, "writer=%d line=%d %s", &g, &i, &pad); err != nil && i%50 != 0 {
					t.Fatalf("broken line %q: %v", l, err)
				}
				if g < 0 || g >= writers || i != next[g] || len(pad) != i%50 {
					t.Fatalf("line %q out of order or broken (want line %d of writer %d)", l, next[g], g)
				}
				next[g]++
			}
		})
	}
}

// blockingWriter holds every Write until released, to stand for a stalled
// file.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// TestBoundedWhileStalled: with the file stalled, writers stop once the
// buffer is full instead of growing it, and go on when the file does.
func TestBoundedWhileStalled(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	const limit = 100
	w := New(out, limit)
	line := []byte(strings.Repeat("y", 39) + "\n") // 40 bytes

	// The first line is taken by the flusher, which then stalls in the
	// file; two more fill the buffer to 80; the fourth must wait.
	w.Write(line)
	for {
		w.mu.Lock()
		taken := len(w.pending) == 0
		w.mu.Unlock()
		if taken {
			break
		}
		time.Sleep(time.Millisecond)
	}
	w.Write(line)
	w.Write(line)
	blocked := make(chan struct{})
	go func() {
		w.Write(line)
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a Write past the limit returned while the file was stalled")
	case <-time.After(100 * time.Millisecond):
	}
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	if pending > limit {
		t.Fatalf("%d bytes pending, limit %d", pending, limit)
	}
	close(out.release)
	<-blocked
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.buf.Len(), 4*len(line); got != want {
		t.Fatalf("%d bytes written, want %d", got, want)
	}
}

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	if f.calls == 1 {
		return 0, errors.New("disk on fire")
	}
	return len(p), nil
}

func TestErrorReportedBySyncAndClose(t *testing.T) {
	w := New(&failingWriter{}, 0)
	w.Write([]byte("lost\n"))
	if err := w.Sync(); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Sync = %v, want the file's error", err)
	}
	w.Write([]byte("kept\n"))
	if err := w.Close(); err == nil {
		t.Fatal("Close forgot the first error")
	}
}

func TestSyncWaitsForEarlierLines(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	w := New(writerFunc(func(p []byte) (int, error) {
		time.Sleep(time.Millisecond) // a slow file
		mu.Lock()
		defer mu.Unlock()
		return got.Write(p)
	}), 0)
	defer w.Close()
	for i := range 50 {
		fmt.Fprintf(w, "%d\n", i)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(got.String(), "\n"); n != 50 {
		t.Fatalf("Sync returned with %d of 50 lines written", n)
	}
}

func TestWriteAfterCloseGoesStraightThrough(t *testing.T) {
	var got bytes.Buffer
	w := New(&got, 0)
	w.Write([]byte("a\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	w.Write([]byte("b\n"))
	if got.String() != "a\nb\n" {
		t.Fatalf("file holds %q", got.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func BenchmarkWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := []byte(`{"bytes":1793,"level":"info","method":"GET","msg":"request","path":"/v2/shell/hello/manifests/latest","status":200}` + "\n")
	b.Run("file", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				f.Write(line)
			}
		})
	})
	b.Run("logsink", func(b *testing.B) {
		w := New(f, 0)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w.Write(line)
			}
		})
		w.Close()
	})
}
