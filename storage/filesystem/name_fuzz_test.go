package filesystem

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixport/nixport/storage"
)

// FuzzObjectName checks the invariant the backend's safety rests on: a name
// that validateObjectName accepts resolves, lexically and unchanged, to a
// path strictly inside the objects directory; a name it rejects is rejected
// with ErrInvalidName. Seeds live in testdata/fuzz/FuzzObjectName.
func FuzzObjectName(f *testing.F) {
	for _, seed := range []string{
		"tags/shell/git/latest", "a", "...", "a/b:c+d@e=f_g-h.i",
		"", ".", "..", "../x", "/abs", "a//b", "a/./b", "a/", "a\x00b", `a\b`,
	} {
		f.Add(seed)
	}
	objectsRoot := filepath.Join(f.TempDir(), "root", objectDir)
	f.Fuzz(func(t *testing.T, name string) {
		err := validateObjectName(name)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Fatalf("validateObjectName(%q) = %v, which does not wrap ErrInvalidName", name, err)
			}
			return
		}
		// Resolve the way the operating system would, independently of how
		// the backend builds its paths.
		if !filepath.IsLocal(name) {
			t.Fatalf("accepted %q, which is not a local path", name)
		}
		resolved := filepath.Join(objectsRoot, filepath.FromSlash(name))
		rel, err := filepath.Rel(objectsRoot, resolved)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Fatalf("accepted %q, which resolves to %s, outside %s", name, resolved, objectsRoot)
		}
		// The name is already clean: no two accepted names reach one file,
		// and what is stored is exactly what ListObjects will report.
		if filepath.ToSlash(rel) != name {
			t.Fatalf("accepted %q, which resolves to the different name %q", name, filepath.ToSlash(rel))
		}
		// And the path the backend itself uses is the same one.
		if p := objectPath(name); path.Clean(p) != p || !strings.HasPrefix(p, objectDir+"/") {
			t.Fatalf("objectPath(%q) = %q, not a clean path under %s", name, p, objectDir)
		}
		if len(name) > maxObjectNameLen {
			t.Fatalf("accepted %q, longer than %d bytes", name, maxObjectNameLen)
		}
	})
}
