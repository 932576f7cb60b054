package errcode

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		code         Code
		want         int
		clientCaused bool
	}{
		{BlobUnknown, http.StatusNotFound, true},
		{ManifestUnknown, http.StatusNotFound, true},
		{NameUnknown, http.StatusNotFound, true},
		{DigestInvalid, http.StatusBadRequest, true},
		{NameInvalid, http.StatusBadRequest, true},
		{TagInvalid, http.StatusBadRequest, true},
		{ManifestInvalid, http.StatusBadRequest, true},
		{Unsupported, http.StatusMethodNotAllowed, true},
		{Denied, http.StatusForbidden, true},
		{TooManyRequests, http.StatusTooManyRequests, false},
		{Unauthorized, http.StatusUnauthorized, false},
		{RangeInvalid, http.StatusRequestedRangeNotSatisfiable, true},
		{BlobUploadUnknown, http.StatusNotFound, true},
		{BlobUploadInvalid, http.StatusBadRequest, true},
		{ManifestBlobUnknown, http.StatusBadRequest, true},
		{SizeInvalid, http.StatusBadRequest, true},
		{RequestTooLarge, http.StatusRequestEntityTooLarge, true},
		// A 4xx: clients show the message of a 4xx only.
		{BuildFailed, http.StatusUnprocessableEntity, true},
		{Unavailable, http.StatusServiceUnavailable, false},
		{Unknown, http.StatusInternalServerError, false},
		{Code("SOMETHING_ELSE"), http.StatusInternalServerError, false},
	}
	for _, tt := range tests {
		if got := tt.code.Status(); got != tt.want {
			t.Errorf("%s.Status() = %d, want %d", tt.code, got, tt.want)
		}
		if got := tt.code.ClientCaused(); got != tt.clientCaused {
			t.Errorf("%s.ClientCaused() = %v, want %v", tt.code, got, tt.clientCaused)
		}
	}
}

func TestWrapAndAs(t *testing.T) {
	cause := errors.New("disk on fire")
	err := fmt.Errorf("building: %w", Wrap(BuildFailed, cause, "package %s failed", "broken"))
	e, ok := As(err)
	if !ok || e.Code != BuildFailed || e.Message != "package broken failed" {
		t.Fatalf("As = %+v, %v", e, ok)
	}
	if !errors.Is(err, cause) {
		t.Error("cause lost")
	}
	if _, ok := As(cause); ok {
		t.Error("plain error seen as client error")
	}
	if got := New(NameInvalid, "bad %q", "x").Error(); got != `NAME_INVALID: bad "x"` {
		t.Errorf("Error() = %q", got)
	}
}
