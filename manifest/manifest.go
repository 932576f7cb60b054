// Package manifest renders a built image as registry documents: the image
// configuration and the image manifest, in the OCI form and in the Docker
// schema2 form for clients that accept only that, with their digests and
// sizes.
//
// It exists so that the one place that decides what an image looks like on
// the wire is pure and reproducible: given the same layers it produces the
// same bytes, hence the same manifest digest, on any machine and at any
// time (the creation time is fixed). It also renders OCI 1.1 artifact
// manifests (an SBOM attached to an image). It uses the opencontainers/image-spec
// types; it knows nothing of Nix, archives, storage or HTTP.
package manifest

import (
	_ "crypto/sha256" // digest.FromBytes needs sha256 registered
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/reference"
)

// Created is the creation time written into every image: fixed, so that
// builds are reproducible. One second after the epoch, because some clients
// treat the zero Unix time as unset.
var Created = time.Unix(1, 0).UTC()

// DefaultPath is the PATH put into an image's environment when Image.Env has
// none: the customisation layer links the packages' bin and sbin
// directories at the image root.
const DefaultPath = "/bin:/usr/bin:/sbin:/usr/sbin"

// CreatedBy is the created_by field of every history entry.
const CreatedBy = "nixport"

// Layer is one layer blob of an image.
type Layer struct {
	// Digest and Size are those of the compressed (gzip) blob.
	Digest digest.Digest
	Size   int64
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest
	// Comment is the history comment of the layer: the store paths it holds.
	Comment string
}

// Image is what an image is made of.
type Image struct {
	// Architecture and OS are OCI platform values (see Platform).
	Architecture, OS string
	// Env is the environment, "NAME=value" entries in order. A PATH is added
	// (DefaultPath) when none is given.
	Env []string
	// User is the config's User ("uid:gid"), or "" for root.
	User string
	// Labels are the config's labels (provenance: the OCI annotation
	// keys); empty ones are left out.
	Labels map[string]string
	// Layers are the layers, base first.
	Layers []Layer
}

// Blob is one serialised document.
type Blob struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
	Bytes     []byte
}

// Descriptor returns the OCI descriptor of b.
func (b Blob) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: b.Size}
}

// Built is an image rendered in both formats. Both manifests refer to the
// same config bytes (Config) and the same layer blobs; only the media types
// differ.
type Built struct {
	// Config is the image configuration, with the OCI media type. The Docker
	// manifest refers to the same bytes as DockerConfig.
	Config Blob
	// OCI is the OCI image manifest.
	OCI Blob
	// Docker is the Docker image manifest v2 schema 2.
	Docker Blob
}

// Manifest returns the manifest in format f.
func (b *Built) Manifest(f Format) Blob {
	if f == Docker {
		return b.Docker
	}
	return b.OCI
}

// Build renders img. Serialisation is deterministic: the same Image gives
// the same bytes. It fails on a missing platform, a malformed environment
// entry, an invalid digest or a negative size, and on an image without
// layers.
func Build(img Image) (*Built, error) {
	if img.Architecture == "" || img.OS == "" {
		return nil, fmt.Errorf("image platform %q/%q: architecture and os are required", img.Architecture, img.OS)
	}
	if len(img.Layers) == 0 {
		return nil, errors.New("image has no layers")
	}
	env, err := environment(img.Env)
	if err != nil {
		return nil, err
	}
	for i, l := range img.Layers {
		if err := reference.ValidDigest(l.Digest); err != nil {
			return nil, fmt.Errorf("layer %d digest %q: %w", i, l.Digest, err)
		}
		if err := reference.ValidDigest(l.DiffID); err != nil {
			return nil, fmt.Errorf("layer %d diff_id %q: %w", i, l.DiffID, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %d: negative size %d", i, l.Size)
		}
	}

	created := Created
	config := v1.Image{
		Created:  &created,
		Platform: v1.Platform{Architecture: img.Architecture, OS: img.OS},
		Config:   v1.ImageConfig{Env: env, User: img.User, Labels: labels(img.Labels)},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, len(img.Layers))},
		History:  make([]v1.History, len(img.Layers)),
	}
	for i, l := range img.Layers {
		config.RootFS.DiffIDs[i] = l.DiffID
		config.History[i] = v1.History{Created: &created, CreatedBy: CreatedBy, Comment: l.Comment}
	}
	configBytes, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	b := &Built{Config: blob(v1.MediaTypeImageConfig, configBytes)}

	b.OCI, err = render(v1.MediaTypeImageManifest, v1.MediaTypeImageConfig, v1.MediaTypeImageLayerGzip, configBytes, img.Layers)
	if err != nil {
		return nil, err
	}
	b.Docker, err = render(DockerManifest, DockerConfig, DockerLayerGzip, configBytes, img.Layers)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func blob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data)), Bytes: data}
}

// render serialises one manifest form.
func render(manifestType, configType, layerType string, config []byte, layers []Layer) (Blob, error) {
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestType,
		Config:    blob(configType, config).Descriptor(),
		Layers:    make([]v1.Descriptor, len(layers)),
	}
	for i, l := range layers {
		m.Layers[i] = v1.Descriptor{MediaType: layerType, Digest: l.Digest, Size: l.Size}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return Blob{}, fmt.Errorf("encoding %s manifest: %w", manifestType, err)
	}
	return blob(manifestType, data), nil
}

// labels drops empty labels; nil when none is left (no "Labels" key).
func labels(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if k == "" || v == "" {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(in))
		}
		out[k] = v
	}
	return out
}

// environment validates env and adds PATH when it has none.
func environment(env []string) ([]string, error) {
	seen := make(map[string]bool, len(env))
	for _, e := range env {
		name, _, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("environment entry %q: want NAME=value", e)
		}
		if seen[name] {
			return nil, fmt.Errorf("environment entry %q: %s set twice", e, name)
		}
		seen[name] = true
	}
	out := make([]string, 0, len(env)+1)
	if !seen["PATH"] {
		out = append(out, "PATH="+DefaultPath)
	}
	return append(out, env...), nil
}

// Platform maps a Nix system string to the OCI architecture and os:
// "x86_64-linux" is amd64/linux and "aarch64-linux" is arm64/linux. Other
// systems have no image form here and are an error.
func Platform(system string) (architecture, os string, err error) {
	switch system {
	case "x86_64-linux":
		return "amd64", "linux", nil
	case "aarch64-linux":
		return "arm64", "linux", nil
	}
	return "", "", fmt.Errorf("nix system %q: no image platform (supported: x86_64-linux, aarch64-linux)", system)
}
