package web

import (
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/reference"
)

// maxNameLength bounds a repository name. The distribution spec suggests
// 255 for registry host plus name, but a nixport name lists packages (up to
// NIXPORT_MAX_PACKAGES of them, 64 by default), so it allows more.
const maxNameLength = 2048

// routeKind says which endpoint of the /v2/ API a path addresses.
type routeKind int

const (
	routeBase      routeKind = iota + 1 // /v2/
	routeManifest                       // /v2/<name>/manifests/<reference>
	routeBlob                           // /v2/<name>/blobs/<digest>
	routeTags                           // /v2/<name>/tags/list
	routeReferrers                      // /v2/<name>/referrers/<digest>
)

// route is a parsed /v2/ path. For manifests, exactly one of tag and digest
// is set; for blobs and referrers, digest.
type route struct {
	kind   routeKind
	name   string
	tag    string
	digest digest.Digest
}

// isRegistryPath reports whether an URL path belongs to the registry API.
func isRegistryPath(p string) bool {
	return p == "/v2" || strings.HasPrefix(p, "/v2/")
}

// parseRoute parses a registry API path ("/v2/..."). The suffix decides the
// endpoint: "/tags/list", or a last component preceded by "manifests",
// "blobs" or "referrers". Everything before it is the name, which may
// therefore hold any number of components, including ones called
// "manifests" or "blobs".
// Failures are *errcode.Error: an unknown endpoint is NAME_UNKNOWN (404), a
// malformed name, tag or digest the matching 400.
func parseRoute(p string) (route, error) {
	if p == "/v2" || p == "/v2/" {
		return route{kind: routeBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, errUnknownEndpoint
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		if err := checkName(name); err != nil {
			return route{}, err
		}
		return route{kind: routeTags, name: name}, nil
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return route{}, errUnknownEndpoint
	}
	head, ref := rest[:i], rest[i+1:]
	name, endpoint := "", head
	if j := strings.LastIndexByte(head, '/'); j >= 0 {
		name, endpoint = head[:j], head[j+1:]
	}
	var kind routeKind
	switch endpoint {
	case "manifests":
		kind = routeManifest
	case "blobs":
		kind = routeBlob
	case "referrers":
		kind = routeReferrers
	}
	if ref == "" || kind == 0 {
		return route{}, errUnknownEndpoint
	}
	if err := checkName(name); err != nil {
		return route{}, err
	}
	if kind != routeManifest {
		d, err := parseDigest(ref)
		if err != nil {
			return route{}, err
		}
		return route{kind: kind, name: name, digest: d}, nil
	}
	// A reference is a digest exactly when it holds a colon, which no tag
	// may contain.
	if strings.IndexByte(ref, ':') >= 0 {
		d, err := parseDigest(ref)
		if err != nil {
			return route{}, err
		}
		return route{kind: routeManifest, name: name, digest: d}, nil
	}
	if !validTag(ref) {
		return route{}, errcode.New(errcode.TagInvalid, "invalid tag %q", truncate(ref))
	}
	return route{kind: routeManifest, name: name, tag: ref}, nil
}

var errUnknownEndpoint = errcode.New(errcode.NameUnknown, "unknown registry API endpoint")

// isReadMethod reports whether the registry answers method at all: it is
// read-only, so only GET and HEAD.
func isReadMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

func checkName(name string) error {
	if !validName(name) {
		return errcode.New(errcode.NameInvalid, "invalid repository name %q", truncate(name))
	}
	return nil
}

// validName reports whether name is a repository name (see package
// reference) of at most maxNameLength bytes.
func validName(name string) bool {
	return len(name) <= maxNameLength && reference.ValidName(name)
}

func validTag(tag string) bool { return reference.ValidTag(tag) }

// parseDigest accepts "sha256:<64 hex>" and "sha512:<128 hex>" (lower-case
// hex, as the OCI image spec requires) and nothing else; the result also
// passes go-digest's Validate (the tests check that).
func parseDigest(s string) (digest.Digest, error) {
	alg, hex, ok := strings.Cut(s, ":")
	want := 0
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	}
	if !ok || want == 0 || len(hex) != want || !isLowerHex(hex) {
		return "", errcode.New(errcode.DigestInvalid, "invalid digest %q: want sha256:<64 hex> or sha512:<128 hex>", truncate(s))
	}
	// What go-digest's Validate checks, without its regular expression
	// (the hex was checked above): the algorithm is linked in and the
	// encoded part has its size.
	d := digest.Digest(s)
	if a := d.Algorithm(); !a.Available() || len(d.Encoded()) != a.Size()*2 {
		return "", errcode.New(errcode.DigestInvalid, "invalid digest %q: algorithm not available", truncate(s))
	}
	return d, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// truncate shortens client text quoted back in error messages.
func truncate(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
