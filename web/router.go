package web

import (
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/reference"
)

// routeKind says which endpoint of the /v2/ API a path addresses.
type routeKind int

const (
	routeBase      routeKind = iota + 1 // /v2/
	routeManifest                       // /v2/<name>/manifests/<reference>
	routeBlob                           // /v2/<name>/blobs/<digest>
	routeTags                           // /v2/<name>/tags/list
	routeReferrers                      // /v2/<name>/referrers/<digest>
	routeUploads                        // /v2/<name>/blobs/uploads/ (push repositories: start an upload or mount)
	routeUpload                         // /v2/<name>/blobs/uploads/<id> (push repositories: an upload session)
)

// name is the route's name in metrics: a bounded label, never a path.
func (k routeKind) name() string {
	switch k {
	case routeBase:
		return routeNameBase
	case routeManifest:
		return "manifest"
	case routeBlob:
		return routeNameBlob
	case routeTags:
		return "tags"
	case routeReferrers:
		return "referrers"
	case routeUploads, routeUpload:
		return "upload"
	}
	return routeNameRegistry
}

// Route names of metrics for what is not a parsed /v2/ path. Every request
// gets one of these or a routeKind's name.
const (
	routeNameBase     = "v2"
	routeNameBlob     = "blob"
	routeNameRegistry = "v2_other" // under /v2/ but no endpoint, or refused before parsing
	routeNameAPI      = "api_builds"
	routeNamePages    = "build_pages"
	routeNameHealth   = "health"
	routeNameToken    = "auth_token"
	routeNameMetrics  = "metrics"
	routeNameSite     = "site"
)

// route is a parsed /v2/ path. For manifests, exactly one of tag and digest
// is set; for blobs and referrers, digest; for an upload session, upload.
type route struct {
	kind   routeKind
	name   string
	tag    string
	digest digest.Digest
	upload string
}

// isRegistryPath reports whether an URL path belongs to the registry API.
func isRegistryPath(p string) bool {
	return p == "/v2" || strings.HasPrefix(p, "/v2/")
}

// parseRoute parses a registry API path ("/v2/..."). The suffix decides the
// endpoint: "/tags/list", "/blobs/uploads/" (with or without the slash),
// "/blobs/uploads/<id>", or a last component preceded by "manifests",
// "blobs" or "referrers". Everything before it is the name, which may
// therefore hold any number of components, including ones called
// "manifests" or "blobs". An upload id is any non-empty last component
// here: whether it names a session is the push registry's to say.
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
	if name, ok := cutSuffixes(rest, "/blobs/uploads/", "/blobs/uploads"); ok {
		if err := checkName(name); err != nil {
			return route{}, err
		}
		return route{kind: routeUploads, name: name}, nil
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
	if endpoint == "uploads" && ref != "" {
		if name, ok := strings.CutSuffix(name, "/blobs"); ok {
			if err := checkName(name); err != nil {
				return route{}, err
			}
			return route{kind: routeUpload, name: name, upload: ref}, nil
		}
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
	if err := checkTag(ref); err != nil {
		return route{}, err
	}
	return route{kind: routeManifest, name: name, tag: ref}, nil
}

// cutSuffixes is strings.CutSuffix with the first of suffixes s has.
func cutSuffixes(s string, suffixes ...string) (string, bool) {
	for _, suffix := range suffixes {
		if before, ok := strings.CutSuffix(s, suffix); ok {
			return before, true
		}
	}
	return s, false
}

var errUnknownEndpoint = errcode.New(errcode.NameUnknown, "unknown registry API endpoint")

// isReadMethod reports whether method only reads: all a name outside the
// push namespaces answers.
func isReadMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

// isWriteMethod reports whether method is one the push half of the API
// uses to change a repository.
func isWriteMethod(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// checkName answers a name outside reference.CheckName's bounds with
// NAME_INVALID: the one limit, at the edge.
func checkName(name string) error {
	if err := reference.CheckName(name); err != nil {
		return errcode.New(errcode.NameInvalid, "invalid repository name %q: %v", truncate(name), err)
	}
	return nil
}

func validTag(tag string) bool { return reference.ValidTag(tag) }

// checkTag answers a tag outside reference.ValidTag with TAG_INVALID.
func checkTag(tag string) error {
	if !validTag(tag) {
		return errcode.New(errcode.TagInvalid, "invalid tag %q", truncate(tag))
	}
	return nil
}

// parseDigest answers a digest reference.ParseDigest refuses with
// DIGEST_INVALID.
func parseDigest(s string) (digest.Digest, error) {
	d, err := reference.ParseDigest(s)
	if err != nil {
		return "", errcode.Wrap(errcode.DigestInvalid, err, "%v", err)
	}
	return d, nil
}

// truncate shortens client text quoted back in error messages.
func truncate(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
