package prewarm

import (
	"strings"
	"testing"

	"github.com/nixport/nixport/errcode"
)

func TestAPIErrorText(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  apiError
		want []string
		not  []string
	}{
		{"an OCI error", apiError{status: 422, code: errcode.BuildFailed, message: "building failed"}, []string{"BUILD_FAILED: building failed"}, []string{"USER:PASSWORD", "request"}},
		{"credentials needed", apiError{status: 401, code: errcode.Unauthorized, message: "authentication required"},
			[]string{"UNAUTHORIZED: authentication required", "https://USER:PASSWORD@HOST"}, nil},
		{"a server fault", apiError{status: 500, code: errcode.Unknown, message: "internal server error", requestID: "req-7"}, []string{"(request req-7)"}, nil},
		{"no error body", apiError{status: 502, message: "POST /api/builds answered without an error body"}, []string{"HTTP 502 Bad Gateway: POST"}, nil},
	} {
		got := tt.err.Error()
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tt.name, got, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: %q holds %q", tt.name, got, n)
			}
		}
	}
}
