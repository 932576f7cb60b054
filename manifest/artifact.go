package manifest

import (
	"encoding/json"
	"errors"
	"fmt"

	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/reference"
)

// EmptyConfig is the empty JSON blob ("{}") that an artifact manifest
// names as its config (image-spec 1.1's empty descriptor); store it with
// the artifact.
var EmptyConfig = blob(v1.MediaTypeEmptyJSON, []byte("{}"))

// Artifact renders an OCI 1.1 artifact manifest: an image manifest whose
// artifactType says what it carries, whose config is EmptyConfig, whose one
// layer is content (the artifact's blob, with its media type and
// annotations) and whose subject is the manifest it is about, so that the
// referrers API lists it under the subject's digest. It returns the
// manifest and the descriptor of it that the referrers index holds (with
// its artifactType). The same arguments give the same bytes.
func Artifact(artifactType string, content, subject v1.Descriptor) (Blob, v1.Descriptor, error) {
	if artifactType == "" {
		return Blob{}, v1.Descriptor{}, errors.New("artifact: no artifact type")
	}
	for _, d := range []struct {
		what string
		d    v1.Descriptor
	}{{"content", content}, {"subject", subject}} {
		if err := reference.ValidDigest(d.d.Digest); err != nil {
			return Blob{}, v1.Descriptor{}, fmt.Errorf("artifact %s: %w", d.what, err)
		}
		if d.d.MediaType == "" || d.d.Size < 0 {
			return Blob{}, v1.Descriptor{}, fmt.Errorf("artifact %s %s: no media type, or a negative size", d.what, d.d.Digest)
		}
	}
	if !IsManifestMediaType(subject.MediaType) {
		return Blob{}, v1.Descriptor{}, fmt.Errorf("artifact subject %s has media type %q, not a manifest's", subject.Digest, subject.MediaType)
	}
	m := v1.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       EmptyConfig.Descriptor(),
		Layers:       []v1.Descriptor{content},
		Subject:      &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	}
	b, err := json.Marshal(m)
	if err != nil {
		return Blob{}, v1.Descriptor{}, fmt.Errorf("encoding an artifact manifest: %w", err)
	}
	out := blob(v1.MediaTypeImageManifest, b)
	desc := out.Descriptor()
	desc.ArtifactType = artifactType
	return out, desc, nil
}
