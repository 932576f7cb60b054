package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nixport/nixport/storage"
)

func runObjectTests(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("PutGet", func(t *testing.T) {
		tests := []struct {
			name string
			data []byte
		}{
			{"a", []byte("top level")},
			{"tags/shell/git/htop:latest", []byte(`{"digest":"sha256:..."}`)},
			{"cache/layers/sha256:0123abcd", randomBytes(6, 4096)},
			{"x/A-z_0.9+@=:.", []byte("every allowed character")},
			{"empty", []byte{}},
			{"...", []byte("dots are a name, not a path step, past two")},
		}
		b := newBackend(t)
		for _, tt := range tests {
			if err := b.PutObject(t.Context(), tt.name, tt.data); err != nil {
				t.Fatalf("PutObject(%q): %v", tt.name, err)
			}
		}
		for _, tt := range tests {
			requireObject(t, b, tt.name, tt.data)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		b := newBackend(t)
		const name = "tags/hello/latest"
		for _, data := range []string{"first", "second, and longer", "3rd"} {
			if err := b.PutObject(t.Context(), name, []byte(data)); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			requireObject(t, b, name, []byte(data))
		}
	})

	t.Run("CreateIfAbsent", func(t *testing.T) {
		b := newBackend(t)
		const name = "leases/shell"
		if err := b.CreateObject(t.Context(), name, []byte("first")); err != nil {
			t.Fatalf("first CreateObject: %v", err)
		}
		if err := b.CreateObject(t.Context(), name, []byte("second")); !errors.Is(err, storage.ErrExists) {
			t.Errorf("second CreateObject error = %v, want one wrapping ErrExists", err)
		}
		requireObject(t, b, name, []byte("first"))
		// PutObject replaces what CreateObject made.
		if err := b.PutObject(t.Context(), name, []byte("replaced")); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		requireObject(t, b, name, []byte("replaced"))
	})

	t.Run("ConcurrentCreators", func(t *testing.T) {
		b := newBackend(t)
		const name = "leases/contended"
		const creators = 8
		errs := make([]error, creators)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range creators {
			wg.Go(func() {
				<-start
				errs[i] = b.CreateObject(t.Context(), name, creatorData(i))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("creators %d and %d both succeeded", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrExists):
				t.Errorf("creator %d: error %v, want nil or one wrapping ErrExists", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no creator succeeded")
		}
		requireObject(t, b, name, creatorData(winner))
	})

	t.Run("List", func(t *testing.T) {
		b := newBackend(t)
		stored := []string{"a/1", "a/2", "a/b/3", "a.b", "ab/4", "b/5", "top"}
		for _, name := range stored {
			if err := b.PutObject(t.Context(), name, []byte(name)); err != nil {
				t.Fatalf("PutObject(%q): %v", name, err)
			}
		}
		tests := []struct {
			prefix string
			want   []string
		}{
			{"", []string{"a.b", "a/1", "a/2", "a/b/3", "ab/4", "b/5", "top"}},
			{"a/", []string{"a/1", "a/2", "a/b/3"}},
			{"a/b/", []string{"a/b/3"}},
			{"ab/", []string{"ab/4"}},
			{"nothing/", nil},
			{"top/", nil}, // an object, not a prefix
			{"a/1/", nil},
		}
		for _, tt := range tests {
			requireList(t, b, tt.prefix, tt.want)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		b := newBackend(t)
		for _, name := range []string{"d/1", "d/2", "d/e/3"} {
			if err := b.PutObject(t.Context(), name, []byte(name)); err != nil {
				t.Fatalf("PutObject(%q): %v", name, err)
			}
		}
		if err := b.DeleteObject(t.Context(), "d/1"); err != nil {
			t.Fatalf("DeleteObject: %v", err)
		}
		requireNoObject(t, b, "d/1")
		requireObject(t, b, "d/2", []byte("d/2"))
		requireList(t, b, "d/", []string{"d/2", "d/e/3"})
		if err := b.DeleteObject(t.Context(), "d/1"); err != nil {
			t.Errorf("deleting a deleted object: %v", err)
		}
		if err := b.DeleteObject(t.Context(), "never/stored"); err != nil {
			t.Errorf("deleting a missing object: %v", err)
		}
		if err := b.DeleteObject(t.Context(), "d"); err != nil {
			t.Errorf("deleting a name that is only a prefix: %v", err)
		}
		requireList(t, b, "d/", []string{"d/2", "d/e/3"})

		// Once everything under a prefix is gone, nothing is left in the
		// way of an object of that name.
		for _, name := range []string{"d/2", "d/e/3"} {
			if err := b.DeleteObject(t.Context(), name); err != nil {
				t.Fatalf("DeleteObject(%q): %v", name, err)
			}
		}
		requireList(t, b, "d/", nil)
		if err := b.PutObject(t.Context(), "d", []byte("now an object")); err != nil {
			t.Fatalf("PutObject on an emptied prefix: %v", err)
		}
		requireObject(t, b, "d", []byte("now an object"))
	})

	t.Run("Missing", func(t *testing.T) {
		b := newBackend(t)
		if err := b.PutObject(t.Context(), "file", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := b.PutObject(t.Context(), "dir/object", []byte("y")); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"missing", "missing/deeper", "file/child", "dir", "dir/other"} {
			requireNoObject(t, b, name)
		}
	})

	t.Run("InvalidNames", func(t *testing.T) {
		b := newBackend(t)
		names := []string{
			"",
			"../x",
			"..",
			".",
			"a/../../x",
			"a/..",
			"/abs",
			"a//b",
			"a/./b",
			"a/",
			"./a",
			"a\x00b",
			"a b",
			`a\b`,
			"a\nb",
			"caf\u00e9",
			"a/*",
			"~",
			strings.Repeat("a", 300),
			strings.Repeat("a/", 600) + "a",
		}
		ops := []struct {
			name string
			call func(name string) error
		}{
			{"PutObject", func(name string) error { return b.PutObject(t.Context(), name, []byte("x")) }},
			{"CreateObject", func(name string) error { return b.CreateObject(t.Context(), name, []byte("x")) }},
			{"GetObject", func(name string) error { _, err := b.GetObject(t.Context(), name); return err }},
			{"DeleteObject", func(name string) error { return b.DeleteObject(t.Context(), name) }},
		}
		for _, name := range names {
			for _, op := range ops {
				if err := op.call(name); !errors.Is(err, storage.ErrInvalidName) {
					t.Errorf("%s(%q) error = %v, want one wrapping ErrInvalidName", op.name, name, err)
				}
			}
		}
		for _, prefix := range []string{"../", "/abs/", "a//", "./", "a/../", "a\x00/", "a"} {
			if _, err := b.ListObjects(t.Context(), prefix); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("ListObjects(%q) error = %v, want one wrapping ErrInvalidName", prefix, err)
			}
		}
		requireList(t, b, "", nil)
	})
}

func creatorData(i int) []byte { return fmt.Appendf(nil, "creator %d", i) }

func requireObject(t *testing.T, b storage.Backend, name string, want []byte) {
	t.Helper()
	got, err := b.GetObject(t.Context(), name)
	if err != nil {
		t.Errorf("GetObject(%q): %v", name, err)
		return
	}
	if string(got) != string(want) {
		t.Errorf("GetObject(%q) = %q, want %q", name, got, want)
	}
}

func requireNoObject(t *testing.T, b storage.Backend, name string) {
	t.Helper()
	if got, err := b.GetObject(t.Context(), name); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetObject(%q) = %q, %v; want an error wrapping ErrNotFound", name, got, err)
	}
}

func requireList(t *testing.T, b storage.Backend, prefix string, want []string) {
	t.Helper()
	got, err := b.ListObjects(t.Context(), prefix)
	if err != nil {
		t.Errorf("ListObjects(%q): %v", prefix, err)
		return
	}
	if len(got) == 0 && len(want) == 0 {
		return // nil and empty are the same answer
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListObjects(%q) = %q, want %q", prefix, got, want)
	}
}
