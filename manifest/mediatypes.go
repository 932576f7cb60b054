package manifest

import (
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Format is the manifest format an image is rendered in. Every nixport
// image exists in both forms; the registry picks by the client's Accept.
type Format int

const (
	// OCI is the OCI image manifest (the default).
	OCI Format = iota
	// Docker is Docker image manifest v2 schema 2, for clients that accept
	// only that.
	Docker
)

func (f Format) String() string {
	if f == Docker {
		return "docker"
	}
	return "oci"
}

// Media types of the Docker schema2 format. The OCI ones come from
// image-spec (v1.MediaTypeImageManifest and friends).
const (
	DockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfig       = "application/vnd.docker.container.image.v1+json"
	DockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// ManifestMediaTypes are the media types served from /manifests/.
var ManifestMediaTypes = []string{
	v1.MediaTypeImageManifest,
	v1.MediaTypeImageIndex,
	DockerManifest,
	DockerManifestList,
}

// IsManifestMediaType reports whether mt is a manifest or index media type.
func IsManifestMediaType(mt string) bool {
	for _, m := range ManifestMediaTypes {
		if m == mt {
			return true
		}
	}
	return false
}

// Negotiate picks the format to answer a client with, from its Accept
// header values. A client that names the OCI manifest (or names nothing, or
// a wildcard) gets OCI; a client that names only Docker schema2 gets Docker.
func Negotiate(accept []string) Format {
	// Implemented in negotiate.go.
	return negotiate(accept)
}
