package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Persisted records: small JSON objects in storage, so that caches survive
// restarts and are shared by every instance on the same storage.
//
//	tags/<name>/_/<tag>   the last build of name:tag (tags/list, static images)
//	pinned/<hash of key>  a pinned request's manifests: served without building
//	plans/<hash of key>   a pinned plan's manifests: reused instead of building
//	manifests/<hash>      manifests by resolved input (see the Nix source)
//	layers/<hash>         a built layer by its store paths and format
const (
	tagPrefix    = "tags/"
	pinnedPrefix = "pinned/"
	planPrefix   = "plans/"
)

// record is the stored form of Manifests.
type record struct {
	OCI     *blobRecord `json:"oci,omitempty"`
	Docker  *blobRecord `json:"docker,omitempty"`
	Pinned  bool        `json:"pinned,omitempty"`
	BuiltAt time.Time   `json:"builtAt"`
}

type blobRecord struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

func toRecord(m Manifests, pinned bool, now time.Time) record {
	r := record{Pinned: pinned, BuiltAt: now.UTC()}
	if b, ok := m[manifest.OCI]; ok {
		r.OCI = &blobRecord{b.Digest, b.Size, b.MediaType}
	}
	if b, ok := m[manifest.Docker]; ok {
		r.Docker = &blobRecord{b.Digest, b.Size, b.MediaType}
	}
	return r
}

func (r record) manifests() (Manifests, error) {
	m := Manifests{}
	for f, b := range map[manifest.Format]*blobRecord{manifest.OCI: r.OCI, manifest.Docker: r.Docker} {
		if b == nil {
			continue
		}
		if err := reference.ValidDigest(b.Digest); err != nil {
			return nil, fmt.Errorf("record holds a bad digest: %w", err)
		}
		m[f] = storage.BlobInfo{Digest: b.Digest, Size: b.Size, MediaType: b.MediaType}
	}
	if len(m) == 0 {
		return nil, errors.New("record holds no manifest")
	}
	return m, nil
}

// checkManifestsStored returns an error (wrapping storage.ErrNotFound when a blob is
// missing) unless every manifest m names is in storage: a record is only as
// good as the blobs it names.
func checkManifestsStored(ctx context.Context, s storage.Backend, m Manifests) error {
	for _, info := range m {
		if _, err := s.StatBlob(ctx, info.Digest); err != nil {
			return fmt.Errorf("record names manifest %s: %w", info.Digest, err)
		}
	}
	return nil
}

// PutRecord stores a record object.
func putRecord(ctx context.Context, s storage.Backend, name string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", name, err)
	}
	if err := s.PutObject(ctx, name, data); err != nil {
		return fmt.Errorf("storing record %s: %w", name, err)
	}
	return nil
}

// getRecord reads a record; a missing one is an error wrapping
// storage.ErrNotFound.
func getRecord(ctx context.Context, s storage.Backend, name string) (record, error) {
	data, err := s.GetObject(ctx, name)
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, fmt.Errorf("decoding record %s: %w", name, err)
	}
	return r, nil
}

// tagObject names the record of name:tag. The "_" component keeps the
// tags of "a/b" apart from the repository "a/b/c": a registry name
// component never starts with "_".
func tagObject(name, tag string) string { return tagPrefix + name + "/_/" + tag }

// hashKey turns an arbitrary key into an object name component.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// StoreTag records manifests already in storage as name:tag. The registry
// then serves them by that tag without a source: tests and pre-built images
// use it.
func StoreTag(ctx context.Context, s storage.Backend, name, tag string, m Manifests) error {
	return putRecord(ctx, s, tagObject(name, tag), toRecord(m, true, time.Now()))
}

// listTags lists the tags recorded for name.
func listTags(ctx context.Context, s storage.Backend, name string) ([]string, error) {
	prefix := tagPrefix + name + "/_/"
	names, err := s.ListObjects(ctx, prefix)
	if err != nil {
		// A name too long for an object name was never recorded.
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidName) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("listing tags of %s: %w", name, err)
	}
	tags := make([]string, 0, len(names))
	for _, n := range names {
		t := strings.TrimPrefix(n, prefix)
		if t != "" && !strings.Contains(t, "/") {
			tags = append(tags, t)
		}
	}
	return tags, nil
}
