package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nixport/nixport/storage"
)

func TestCreateObjectOnce(t *testing.T) {
	errDown := errors.New("service unavailable")
	conflict := fmt.Errorf("%w: 412", storage.ErrConditionFailed)
	const ours, theirs = "<ours>", "theirs"
	tests := []struct {
		name      string
		objName   string
		createErr error
		stored    string // the token tokenOf answers; ours: the one create was given
		tokenErr  error
		wantErrIs error // nil: success
		wantErrIn string
		wantCheck bool // tokenOf is asked
	}{
		{name: "created", objName: "tags/x"},
		{name: "our create, its response lost", objName: "tags/x", createErr: conflict, stored: ours, wantCheck: true},
		{name: "another's", objName: "tags/x", createErr: conflict, stored: theirs, wantErrIs: storage.ErrExists, wantCheck: true},
		{name: "another's, removed meanwhile", objName: "tags/x", createErr: conflict, tokenErr: fmt.Errorf("head: %w", storage.ErrNotFound), wantErrIs: storage.ErrExists, wantCheck: true},
		{name: "exists, and the check fails", objName: "tags/x", createErr: conflict, tokenErr: errDown, wantErrIs: errDown, wantErrIn: "checking whose it is", wantCheck: true},
		{name: "create fails", objName: "tags/x", createErr: errDown, wantErrIs: errDown, wantErrIn: "creating object tags/x"},
		{name: "invalid name", objName: "../x", wantErrIs: storage.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var given string
			var created, checked bool
			create := func(_ context.Context, token string) error {
				created, given = true, token
				return tt.createErr
			}
			tokenOf := func(context.Context) (string, error) {
				checked = true
				if tt.stored == ours {
					return given, tt.tokenErr
				}
				return tt.stored, tt.tokenErr
			}
			err := storage.CreateObjectOnce(t.Context(), tt.objName, create, tokenOf)
			switch {
			case tt.wantErrIs == nil && err != nil:
				t.Errorf("CreateObjectOnce: %v, want success", err)
			case tt.wantErrIs != nil && !errors.Is(err, tt.wantErrIs):
				t.Errorf("CreateObjectOnce: %v, want an error wrapping %v", err, tt.wantErrIs)
			case err != nil && !strings.Contains(err.Error(), tt.wantErrIn):
				t.Errorf("CreateObjectOnce: %v, want it to say %q", err, tt.wantErrIn)
			}
			if tt.wantErrIs != storage.ErrExists && errors.Is(err, storage.ErrExists) {
				t.Errorf("CreateObjectOnce: %v, which wrongly says the object exists", err)
			}
			if created != (tt.wantErrIs != storage.ErrInvalidName) {
				t.Errorf("create called: %v", created)
			}
			if created && given == "" {
				t.Error("create was given no token")
			}
			if checked != tt.wantCheck {
				t.Errorf("tokenOf called: %v, want %v", checked, tt.wantCheck)
			}
		})
	}
}
