// Package errcode names the errors a registry client can see, as the OCI
// distribution spec defines them. Lower layers (builder, nix, storage users)
// return *errcode.Error to say what the client should be told, without
// knowing anything of HTTP; the web package turns them into OCI error bodies
// with the right status. Any other error reaching a client is a server fault.
package errcode

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Code is an OCI distribution-spec error code.
type Code string

// The codes nixport uses. The first group is from the OCI distribution spec;
// BUILD_FAILED, UNAVAILABLE and UNKNOWN are nixport's own, after
// distribution's conventions.
//
// How a status is chosen: registry clients show the registry's message only
// for a 4xx. distribution's HandleErrorResponse (used by Docker) parses the
// error body for 400-499 only, and skopeo (containers/image) was seen
// printing nothing but "received unexpected HTTP status: 502 Bad Gateway"
// for a 5xx. So
// every failure caused by what the client asked for is a 4xx whose message
// says what happened and what to do; a 5xx is kept for faults of the server
// itself (storage unreachable, a panic, shutting down), whose details are
// for the log, not the client.
const (
	BlobUnknown     Code = "BLOB_UNKNOWN"
	DigestInvalid   Code = "DIGEST_INVALID"
	ManifestInvalid Code = "MANIFEST_INVALID"
	ManifestUnknown Code = "MANIFEST_UNKNOWN"
	NameInvalid     Code = "NAME_INVALID"
	NameUnknown     Code = "NAME_UNKNOWN"
	TagInvalid      Code = "TAG_INVALID"
	Unsupported     Code = "UNSUPPORTED"
	Denied          Code = "DENIED"
	TooManyRequests Code = "TOOMANYREQUESTS"
	// Unauthorized: the request needs credentials it did not bring, or
	// brought wrong ones. 401 with a WWW-Authenticate challenge (web adds
	// it), which is what makes docker login and credential helpers work.
	Unauthorized Code = "UNAUTHORIZED"
	RangeInvalid Code = "RANGE_INVALID"

	// The codes of pushes (the push namespaces): an upload id this
	// instance does not hold (gone, expired, cancelled, or started on
	// another instance), an upload that cannot go on, a manifest naming
	// blobs or manifests the repository does not hold, and a length that
	// does not match what was sent.
	BlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	BlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	ManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	SizeInvalid         Code = "SIZE_INVALID"
	// RequestTooLarge: a request body over a bound of the registry (a
	// manifest over 4 MiB, an upload over NIXPORT_MAX_UPLOAD_BYTES).
	// nixport's own code, with the 413 the OCI spec asks for.
	RequestTooLarge Code = "REQUEST_TOO_LARGE"

	// BuildFailed: the image the client named cannot be built. A package
	// fails to evaluate or is refused by the package set (unfree, broken),
	// a build fails (the message names the package or image and ends with
	// the last lines of its build output, where the reason is), a build
	// ran past its time limit (the message names the limit and NIX_TIMEOUT),
	// or a build command wrote an invalid image layout.
	//
	// 422 Unprocessable Content: the request is well-formed (the name
	// passed validation) but what it names cannot be made. A 4xx, so that
	// clients show the message. Not 400 (nothing is wrong with the request
	// as such), not 404 (that says no such image exists, and the cause is
	// elsewhere), not 408 or 429 (clients retry those: go-containerregistry
	// retries 408, 429, 500, 502, 503 and 504, and any UNKNOWN or
	// UNAVAILABLE body). HTTP caches do not store a 422 on their own (it is
	// not heuristically cacheable, RFC 9110 section 15.1), so a package
	// fixed later is not hidden by a cached failure; the builder itself
	// remembers a failure for a short while (NIXPORT_FAILED_BUILD_TTL)
	// against clients that retry anyway.
	BuildFailed Code = "BUILD_FAILED"
	// BuildInProgress: the image is being built, and the pull waited as
	// long as the registry lets a pull wait (NIXPORT_PULL_WAIT). The
	// message says for how long so far and where to follow the build,
	// which goes on; pulling again later gets the image. 409 Conflict: the
	// image is not in a state to be served yet. A 4xx, so that docker and
	// skopeo print the message, and not one clients retry at once (408,
	// 429): the next pull should come when the build is done.
	BuildInProgress Code = "BUILD_IN_PROGRESS"
	// Unavailable: the server cannot build now for reasons of its own: it
	// is shutting down. Also the code of a request that ended (its client
	// gave up) before its image was built; that client sees nothing. 503,
	// a server condition worth retrying elsewhere or later.
	Unavailable Code = "UNAVAILABLE"
	// Unknown: an unexpected server fault. 500, with a generic message;
	// the cause goes to the log only.
	Unknown Code = "UNKNOWN"
)

// Status is the HTTP status a code is answered with.
func (c Code) Status() int {
	switch c {
	case BlobUnknown, ManifestUnknown, NameUnknown, BlobUploadUnknown:
		return http.StatusNotFound
	case DigestInvalid, ManifestInvalid, NameInvalid, TagInvalid,
		BlobUploadInvalid, ManifestBlobUnknown, SizeInvalid:
		return http.StatusBadRequest
	case RequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case Unsupported:
		return http.StatusMethodNotAllowed
	case Unauthorized:
		return http.StatusUnauthorized
	case Denied:
		return http.StatusForbidden
	case TooManyRequests:
		return http.StatusTooManyRequests
	case RangeInvalid:
		return http.StatusRequestedRangeNotSatisfiable
	case BuildInProgress:
		return http.StatusConflict
	case BuildFailed:
		return http.StatusUnprocessableEntity
	case Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// ClientCaused says whether the code is answered with a 4xx because the
// failure follows from what the client asked for, so that asking again the
// same way fails the same way: not BUILD_IN_PROGRESS, which is no
// failure, and not a refusal of who asked or how often (UNAUTHORIZED,
// TOOMANYREQUESTS), which says nothing of the image.
func (c Code) ClientCaused() bool {
	s := c.Status()
	return s >= 400 && s < 500 && c != BuildInProgress && c != Unauthorized && c != TooManyRequests
}

// Error is an error a client is meant to see: Code and Message go into the
// response body; Err (the cause) only into the log.
type Error struct {
	Code    Code
	Message string
	Detail  any
	Err     error
	// RetryAfter, when positive, is when asking again may succeed: the
	// answer's Retry-After (a limit's refill).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with a formatted message and a cause for the log.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// As returns the first *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
