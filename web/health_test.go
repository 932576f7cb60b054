package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

func TestHealth(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	broken := errors.New("disk full")
	tests := []struct {
		name     string
		path     string
		checks   []Check
		draining bool
		status   int
		reason   string
	}{
		{"alive", "/healthz", nil, false, 200, ""},
		{"alive while draining", "/healthz", nil, true, 200, ""},
		{"ready", "/readyz", []Check{{"storage", func(context.Context) error { return nil }}}, false, 200, ""},
		{"a check fails", "/readyz", []Check{{"storage", func(context.Context) error { return broken }}, {"nix", func(context.Context) error { return nil }}}, false, 503, "storage: disk full"},
		{"shutting down", "/readyz", []Check{{"storage", func(context.Context) error { return nil }}}, true, 503, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.checks = tt.checks
			h.draining.Store(tt.draining)
			w := f.do("GET", tt.path, nil)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			var body health
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Version == "" || body.Reason != tt.reason {
				t.Errorf("body %+v, want reason %q and a version", body, tt.reason)
			}
			if tt.path == "/readyz" && !tt.draining && len(body.Checks) != len(tt.checks) {
				t.Errorf("checks %v, want one per check", body.Checks)
			}
		})
	}
	if w := f.do("POST", "/readyz", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", w.Code)
	}
}

// TestShutdownDrainsReadiness: once Shutdown has begun, /readyz is 503.
func TestShutdownDrainsReadiness(t *testing.T) {
	f := newFixture(t)
	s, err := NewServer(ServerOptions{Handler: f.handler})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := f.do("GET", "/readyz", nil); w.Code != http.StatusServiceUnavailable {
		t.Errorf("after Shutdown /readyz answers %d, want 503", w.Code)
	}
}
