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
)

// Code is an OCI distribution-spec error code.
type Code string

// The codes nixport uses. The first group is from the OCI distribution spec;
// UNKNOWN, UNAVAILABLE and BUILD_FAILED follow distribution's conventions
// for server-side failures.
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
	RangeInvalid    Code = "RANGE_INVALID"

	// BuildFailed: the image could not be built (a package failed to build,
	// the package set failed to evaluate). Not the client's fault: 502, the
	// way a gateway reports an upstream failure.
	BuildFailed Code = "BUILD_FAILED"
	// Unavailable: the build did not finish in time, or the server is
	// shutting down.
	Unavailable Code = "UNAVAILABLE"
	// Unknown: an unexpected server fault.
	Unknown Code = "UNKNOWN"
)

// Status is the HTTP status a code is answered with.
func (c Code) Status() int {
	switch c {
	case BlobUnknown, ManifestUnknown, NameUnknown:
		return http.StatusNotFound
	case DigestInvalid, ManifestInvalid, NameInvalid, TagInvalid:
		return http.StatusBadRequest
	case Unsupported:
		return http.StatusMethodNotAllowed
	case Denied:
		return http.StatusForbidden
	case TooManyRequests:
		return http.StatusTooManyRequests
	case RangeInvalid:
		return http.StatusRequestedRangeNotSatisfiable
	case BuildFailed:
		return http.StatusBadGateway
	case Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Error is an error a client is meant to see: Code and Message go into the
// response body; Err (the cause) only into the log.
type Error struct {
	Code    Code
	Message string
	Detail  any
	Err     error
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
