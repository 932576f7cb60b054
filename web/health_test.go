package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	broken := errors.New("disk full")
	ok := func(context.Context) error { return nil }
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
		{"ready", "/readyz", []Check{{Name: "storage", Run: ok}}, false, 200, ""},
		{"a check fails", "/readyz", []Check{{Name: "storage", Run: func(context.Context) error { return broken }}, {Name: "nix", Run: ok}}, false, 503, "storage: disk full"},
		{"the first failure is the reason", "/readyz", []Check{{Name: "nix", Run: ok}, {Name: "storage", Run: func(context.Context) error { return broken }}, {Name: "source", Run: func(context.Context) error { return errors.New("too new") }}}, false, 503, "storage: disk full"},
		{"shutting down", "/readyz", []Check{{Name: "storage", Run: ok}}, true, 503, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.ready = newReadiness(tt.checks, nil)
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

// TestReadinessNamesNixAndSource: /readyz says which Nix runs and which
// revision of which package source is served; /healthz does not ask.
func TestReadinessNamesNixAndSource(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	asked := 0
	h.ready = newReadiness(nil, func() Instance {
		asked++
		return Instance{NixVersion: "2.8.0", Source: "git", SourceRevision: "3f1e2a7b9c0123456789abcdef0123456789abcd"}
	})
	w := f.do("GET", "/readyz", nil)
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || body["nix_version"] != "2.8.0" || body["source"] != "git" ||
		body["source_revision"] != "3f1e2a7b9c0123456789abcdef0123456789abcd" || body["version"] == "" {
		t.Errorf("/readyz: %d %s", w.Code, w.Body)
	}
	f.do("GET", "/healthz", nil)
	if asked != 1 {
		t.Errorf("instance asked %d times, want once (by /readyz)", asked)
	}
}

// TestPeriodicCheckRunsOncePerPeriod: however often /readyz is asked, a
// periodic check runs once per period; its failure is the reason.
func TestPeriodicCheckRunsOncePerPeriod(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	var runs atomic.Int64
	h.ready = newReadiness([]Check{{Name: "source", Every: time.Hour, Run: func(context.Context) error {
		runs.Add(1)
		return errors.New("the package set at /srv/nixpkgs needs Nix 2.18 or newer; this server runs Nix 2.8.0")
	}}}, nil)
	t.Cleanup(h.ready.stop)
	for range 20 {
		w := f.do("GET", "/readyz", nil)
		var body health
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != 503 || body.Reason != "source: the package set at /srv/nixpkgs needs Nix 2.18 or newer; this server runs Nix 2.8.0" {
			t.Fatalf("%d %+v", w.Code, body)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d runs for 20 probes, want 1", n)
	}
}

// TestPeriodicCheckAnswersAtOnce: a probe gets a periodic check's last
// result at once, starting a new run when it is stale; before the first
// result it waits for it, and a probe that gives up first is told that
// the check has not finished. The runs end when a shutdown begins.
func TestPeriodicCheckAnswersAtOnce(t *testing.T) {
	runs := make(chan chan error) // each run takes its result from the test
	r := newReadiness([]Check{{Name: "source", Every: time.Nanosecond, Run: func(ctx context.Context) error {
		result := make(chan error)
		select {
		case runs <- result:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-result:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}}}, nil)
	c := r.all[0]
	// finish gives the run in progress its result and waits for its end.
	finish := func(err error) {
		t.Helper()
		result := <-runs
		c.mu.Lock()
		done := c.running
		c.mu.Unlock()
		result <- err
		<-done
	}

	gaveUp, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.result(gaveUp, r.ctx); err != errNotChecked {
		t.Errorf("before the first result: %v, want %v", err, errNotChecked)
	}
	broken := errors.New("broken")
	finish(broken) // the run started with the readiness
	if err := c.result(context.Background(), r.ctx); err != broken {
		t.Errorf("after the first run: %v, want %v", err, broken)
	}
	// That probe found the result stale and started a run.
	finish(nil)
	if err := c.result(context.Background(), r.ctx); err != nil {
		t.Errorf("after the second run: %v, want nil", err)
	}
	// A run is in progress again; a shutdown ends it.
	<-runs
	c.mu.Lock()
	done := c.running
	c.mu.Unlock()
	r.stop()
	<-done
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
