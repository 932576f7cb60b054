package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Record is the stored form of Manifests: a small JSON object in storage
// (a tag's last build, a pinned request, a built plan, a source's own
// caches), shared by every instance on the same storage.
type Record struct {
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

// NewRecord is the record of m, built at now.
func NewRecord(m Manifests, pinned bool, now time.Time) Record {
	r := Record{Pinned: pinned, BuiltAt: now.UTC()}
	if b, ok := m[manifest.OCI]; ok {
		r.OCI = &blobRecord{b.Digest, b.Size, b.MediaType}
	}
	if b, ok := m[manifest.Docker]; ok {
		r.Docker = &blobRecord{b.Digest, b.Size, b.MediaType}
	}
	return r
}

// Manifests returns the manifests the record names, checking its digests.
func (r Record) Manifests() (Manifests, error) {
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

// Stored returns an error (wrapping storage.ErrNotFound when a blob is
// missing) unless every manifest m names is in storage: a record is only as
// good as the blobs it names. A stat is enough, no refresh: every Record is
// a root of the blob collector (package blobgc), which keeps what it names.
func Stored(ctx context.Context, s storage.Backend, m Manifests) error {
	for _, info := range m {
		if _, err := s.StatBlob(ctx, info.Digest); err != nil {
			return fmt.Errorf("record names manifest %s: %w", info.Digest, err)
		}
	}
	return nil
}

// PutRecord stores a record under name.
func PutRecord(ctx context.Context, s storage.Backend, name string, r Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", name, err)
	}
	if err := s.PutObject(ctx, name, data); err != nil {
		return fmt.Errorf("storing record %s: %w", name, err)
	}
	return nil
}

// GetRecord reads the record stored under name; a missing one is an error
// wrapping storage.ErrNotFound.
func GetRecord(ctx context.Context, s storage.Backend, name string) (Record, error) {
	data, err := s.GetObject(ctx, name)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("decoding record %s: %w", name, err)
	}
	return r, nil
}

// Hash turns an arbitrary key into an object name component.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
