// Package storagetest is the conformance suite for storage.Backend. Every
// backend (filesystem, GCS against its emulator, any later one) runs the same
// Run from its own tests, so the builder and the registry API can rely on
// one behaviour whatever keeps the bytes.
//
// The suite only uses the storage.Backend interface. Storage keeps bytes:
// the suite checks that a blob reads back exactly, by ranges through
// seeking as the registry serves them, and that a signed URL, where a
// backend offers one, yields the blob; what HTTP makes of a blob is the
// web package's, tested there once for every backend.
//
// A backend on a networked service (GCS, S3) also passes the checks of
// networked.go, given a Networked that says how to reach its test server:
// the suite through a proxy that breaks requests, writes whose responses
// are lost, two instances on one bucket, damaged lease records.
package storagetest

import (
	"testing"

	"github.com/nixport/nixport/storage"
)

// Run runs the suite as subtests of t. newBackend must return a fresh, empty
// backend for each call, and arrange its own cleanup with t.Cleanup; one
// that refreshes a blob on every RefreshBlob (see runCollectTests). The
// lease tests run if the backend implements storage.Leaser, and are skipped
// otherwise.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Run("Blobs", func(t *testing.T) { runBlobTests(t, newBackend) })
	t.Run("Read", func(t *testing.T) { runReadTests(t, newBackend) })
	t.Run("Objects", func(t *testing.T) { runObjectTests(t, newBackend) })
	t.Run("Collect", func(t *testing.T) { runCollectTests(t, newBackend) })
	t.Run("Leases", func(t *testing.T) {
		if _, ok := newBackend(t).(storage.Leaser); !ok {
			t.Skip("the backend does not implement storage.Leaser")
		}
		runLeaseTests(t, newBackend)
	})
}
