package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/reference"
)

// MaxBytes bounds a manifest or index read into memory: the OCI
// distribution spec asks registries to accept at least 4 MiB, and no
// image needs more.
const MaxBytes = 4 << 20

// Refs is what a stored manifest or index keeps alive: the blobs of an
// image manifest (its config and layers, or an artifact's blobs) and the
// manifests of an index. A manifest's subject is not among them: a
// referrer does not keep its subject alive, the subject keeps its
// referrers (see package blobgc).
type Refs struct {
	Blobs     []digest.Digest
	Manifests []digest.Digest
}

// refsDoc is every field of the manifest formats that names content:
// OCI image manifests and indexes, Docker schema 2 manifests and manifest
// lists, and the artifact manifest of OCI 1.1's drafts ("blobs").
type refsDoc struct {
	Config    *refsDescriptor  `json:"config"`
	Layers    []refsDescriptor `json:"layers"`
	Blobs     []refsDescriptor `json:"blobs"`
	Manifests []refsDescriptor `json:"manifests"`
}

type refsDescriptor struct {
	Digest string `json:"digest"`
}

// References returns what data, the bytes of a stored manifest or index,
// references. It is lenient where a registry's check of a push is strict
// (ParsePushed, of push): whatever it can read it returns, skipping
// descriptors whose digest is not valid, since what it is for is keeping
// blobs, never refusing them. It fails only when data is not a JSON
// object, or a field that names content has the wrong shape: then what
// the manifest keeps alive is unknown.
func References(data []byte) (Refs, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Refs{}, errors.New("not a JSON object")
	}
	var doc refsDoc
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		return Refs{}, fmt.Errorf("reading the manifest's references: %w", err)
	}
	var refs Refs
	add := func(to *[]digest.Digest, ds ...refsDescriptor) {
		for _, d := range ds {
			if dg := digest.Digest(d.Digest); reference.ValidDigest(dg) == nil {
				*to = append(*to, dg)
			}
		}
	}
	if doc.Config != nil {
		add(&refs.Blobs, *doc.Config)
	}
	add(&refs.Blobs, doc.Layers...)
	add(&refs.Blobs, doc.Blobs...)
	add(&refs.Manifests, doc.Manifests...)
	return refs, nil
}
