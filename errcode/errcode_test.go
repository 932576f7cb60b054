package errcode

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		code Code
		want int
	}{
		{BlobUnknown, http.StatusNotFound},
		{ManifestUnknown, http.StatusNotFound},
		{NameUnknown, http.StatusNotFound},
		{DigestInvalid, http.StatusBadRequest},
		{NameInvalid, http.StatusBadRequest},
		{TagInvalid, http.StatusBadRequest},
		{ManifestInvalid, http.StatusBadRequest},
		{Unsupported, http.StatusMethodNotAllowed},
		{Denied, http.StatusForbidden},
		{TooManyRequests, http.StatusTooManyRequests},
		{RangeInvalid, http.StatusRequestedRangeNotSatisfiable},
		{BuildFailed, http.StatusBadGateway},
		{Unavailable, http.StatusServiceUnavailable},
		{Unknown, http.StatusInternalServerError},
		{Code("SOMETHING_ELSE"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		if got := tt.code.Status(); got != tt.want {
			t.Errorf("%s.Status() = %d, want %d", tt.code, got, tt.want)
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
