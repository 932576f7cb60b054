package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/jsonfile"
	"github.com/nixport/nixport/reference"
)

// Pushed is what a registry must know of a manifest or index a client
// pushes: its media type, what it references (the blobs of an image
// manifest, the manifests of an index), its subject, and the artifact
// type and annotations a referrers index lists it with.
type Pushed struct {
	// MediaType is the manifest's media type: the Content-Type it was
	// pushed with, or its mediaType field.
	MediaType string
	// Config and Layers are an image manifest's blobs (Config is nil for
	// an index).
	Config *v1.Descriptor
	Layers []v1.Descriptor
	// Manifests are an index's manifests (nil for an image manifest).
	Manifests []v1.Descriptor
	// Subject is the manifest this one refers to (OCI 1.1), if any.
	Subject *v1.Descriptor
	// ArtifactType is what the referrers API lists: the artifactType
	// field, or for an image manifest without one its config's media type.
	ArtifactType string
	Annotations  map[string]string
}

// IsIndex reports whether p is an index (OCI image index or Docker
// manifest list) rather than an image manifest.
func (p *Pushed) IsIndex() bool { return p.Config == nil }

// maxPushedDescriptors bounds the descriptors one pushed manifest may
// list, so that checking them stays cheap whatever the body holds.
const maxPushedDescriptors = 10000

// ParsePushed parses body, a manifest a client pushed with the
// Content-Type contentType (parameters ignored; may be empty when the body
// names its mediaType). The media type must be one of ManifestMediaTypes
// and agree with the body's mediaType field; schemaVersion must be 2; an
// image manifest needs a config; every descriptor needs a valid digest
// (sha256 or sha512), a size that is not negative and a media type.
// Fields it does not know are allowed (the OCI spec lets manifests carry
// them) and the body is never rewritten: the registry stores it as sent.
// Errors say what is wrong without quoting more than a bounded part of
// the body.
func ParsePushed(contentType string, body []byte) (*Pushed, error) {
	mediaType, err := pushedMediaType(contentType)
	if err != nil {
		return nil, err
	}
	var doc struct {
		SchemaVersion *int              `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        *v1.Descriptor    `json:"config"`
		Layers        []v1.Descriptor   `json:"layers"`
		Manifests     []v1.Descriptor   `json:"manifests"`
		Subject       *v1.Descriptor    `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}
	if err := decodeOne(body, &doc); err != nil {
		return nil, fmt.Errorf("the manifest is not a JSON object of the right shape: %w", err)
	}
	switch {
	case mediaType == "" && doc.MediaType == "":
		return nil, errors.New("the manifest has no media type: send it with Content-Type set to its media type")
	case mediaType == "":
		mediaType = doc.MediaType
	case doc.MediaType != "" && doc.MediaType != mediaType:
		return nil, fmt.Errorf("the manifest's mediaType %.100q differs from its Content-Type %.100q", doc.MediaType, mediaType)
	}
	if !IsManifestMediaType(mediaType) {
		return nil, fmt.Errorf("media type %.100q is not a manifest's: push %s", mediaType, strings.Join(ManifestMediaTypes, ", "))
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return nil, errors.New("the manifest's schemaVersion must be 2")
	}
	if doc.ArtifactType != "" && !ValidMediaType(doc.ArtifactType) {
		return nil, fmt.Errorf("artifactType %.100q is not a media type", doc.ArtifactType)
	}
	p := &Pushed{MediaType: mediaType, ArtifactType: doc.ArtifactType, Annotations: doc.Annotations}
	if doc.Subject != nil {
		if err := checkDescriptor(*doc.Subject, "subject"); err != nil {
			return nil, err
		}
		p.Subject = doc.Subject
	}
	if mediaType == v1.MediaTypeImageIndex || mediaType == DockerManifestList {
		if len(doc.Manifests) > maxPushedDescriptors {
			return nil, fmt.Errorf("the index lists %d manifests, more than %d", len(doc.Manifests), maxPushedDescriptors)
		}
		for i, d := range doc.Manifests {
			if err := checkDescriptor(d, fmt.Sprintf("manifests[%d]", i)); err != nil {
				return nil, err
			}
		}
		p.Manifests = doc.Manifests
		if p.Manifests == nil {
			p.Manifests = []v1.Descriptor{}
		}
		return p, nil
	}
	if doc.Config == nil {
		return nil, errors.New("the image manifest has no config")
	}
	if err := checkDescriptor(*doc.Config, "config"); err != nil {
		return nil, err
	}
	if len(doc.Layers) > maxPushedDescriptors {
		return nil, fmt.Errorf("the manifest lists %d layers, more than %d", len(doc.Layers), maxPushedDescriptors)
	}
	for i, d := range doc.Layers {
		if err := checkDescriptor(d, fmt.Sprintf("layers[%d]", i)); err != nil {
			return nil, err
		}
	}
	p.Config, p.Layers = doc.Config, doc.Layers
	if p.ArtifactType == "" {
		p.ArtifactType = doc.Config.MediaType
	}
	return p, nil
}

// pushedMediaType is the media type of a Content-Type header, without
// parameters (which the OCI spec says to ignore); "" for none.
func pushedMediaType(contentType string) (string, error) {
	if strings.TrimSpace(contentType) == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("Content-Type %.100q is not a media type", contentType)
	}
	return mt, nil
}

// decodeOne decodes exactly one JSON object into v.
func decodeOne(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return jsonfile.Problem(err)
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// checkDescriptor checks the fields of a descriptor that name content.
func checkDescriptor(d v1.Descriptor, what string) error {
	if err := reference.ValidDigest(d.Digest); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", what, d.Size)
	}
	if !ValidMediaType(d.MediaType) {
		return fmt.Errorf("%s: mediaType %.100q is not a media type", what, d.MediaType)
	}
	return nil
}

// ValidMediaType reports whether mt is type/subtype as RFC 6838 restricts
// them, without parameters: what descriptors and Content-Type headers of
// manifests carry.
func ValidMediaType(mt string) bool {
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && validRestrictedName(typ) && validRestrictedName(sub)
}

func validRestrictedName(s string) bool {
	if len(s) == 0 || len(s) > 127 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && strings.IndexByte("!#$&-^_.+", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// IsNonDistributable reports whether a layer of media type mt is one a
// registry need not hold (OCI non-distributable layers, deprecated in
// image-spec 1.1, and Docker's foreign layers): a manifest may name it
// without its blob having been pushed.
func IsNonDistributable(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.") ||
		mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
		mt == "application/vnd.docker.image.rootfs.foreign.diff.tar"
}
