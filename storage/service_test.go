package storage_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/nixport/nixport/storage"
)

func TestParseEndpoint(t *testing.T) {
	for _, tt := range []struct {
		endpoint string
		ok       bool
	}{
		{"http://127.0.0.1:4443", true},
		{"https://minio.example:9000/", true},
		{"127.0.0.1:4443", false}, // no scheme: parsed as scheme "127.0.0.1"
		{"ftp://host", false},
		{"http://", false},
		{"http://[::1", false},
		{"", false},
	} {
		u, err := storage.ParseEndpoint(tt.endpoint)
		if (err == nil) != tt.ok || (err == nil) != (u != nil) {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want ok %v", tt.endpoint, u, err, tt.ok)
		}
	}
}

func TestMarkServiceError(t *testing.T) {
	err412, err404, err500 := errors.New("412"), errors.New("404"), errors.New("500")
	is := func(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }
	for _, tt := range []struct {
		err      error
		notFound func(error) bool
		want     error // nil: unmarked
	}{
		{err412, is(err404), storage.ErrConditionFailed},
		{err404, is(err404), storage.ErrNotFound},
		{err404, nil, nil},
		{err500, is(err404), nil},
	} {
		got := storage.MarkServiceError(tt.err, is(err412), tt.notFound)
		if !errors.Is(got, tt.err) {
			t.Errorf("MarkServiceError(%v) = %v, which lost the service's error", tt.err, got)
		}
		for _, sentinel := range []error{storage.ErrConditionFailed, storage.ErrNotFound} {
			if errors.Is(got, sentinel) != (sentinel == tt.want) {
				t.Errorf("MarkServiceError(%v) = %v: wraps %v: %v, want %v", tt.err, got, sentinel, errors.Is(got, sentinel), sentinel == tt.want)
			}
		}
	}
	if storage.MarkServiceError(nil, is(err412), is(err404)) != nil {
		t.Error("MarkServiceError(nil) is not nil")
	}
}

func TestListedObjectNames(t *testing.T) {
	keys := []string{"objects/b/2", "objects/a b", "objects/a/1", "leases/x", "objects/", "objects/../x", "objects/b/1"}
	got := storage.ListedObjectNames(keys, "objects/")
	want := []string{"a/1", "b/1", "b/2"}
	if !slices.Equal(got, want) {
		t.Errorf("ListedObjectNames = %q, want %q", got, want)
	}
	if got := storage.ListedObjectNames(nil, "objects/"); len(got) != 0 {
		t.Errorf("ListedObjectNames(nil) = %q, want none", got)
	}
}
