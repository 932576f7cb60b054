package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nixport/nixport/version"
)

// Check is one thing readiness depends on: storage that can be read and
// written, Nix that runs, the package source that evaluates. Run returns
// nil when it is fine.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Every, if set, makes the check periodic, for what is too costly to
	// do at every probe (load balancers probe every few seconds): its
	// result is kept for Every, and Run runs at most once per Every, in
	// the background under the handler's lifetime rather than a probe's,
	// so that a slow run (a package set's first fetch) is not cut short
	// by checkTimeout; its own limits bound it. The first run starts when
	// the handler is made. A probe is answered with the last result at
	// once (a stale one starts a new run); before the first result it
	// waits up to checkTimeout for it.
	Every time.Duration
}

// checkTimeout bounds each readiness check that runs at a probe, and a
// probe's wait for a periodic check's first result: a check that hangs is
// a failed one.
const checkTimeout = 5 * time.Second

// Instance is what /readyz says of the instance besides its version: the
// Nix it runs and the package source it serves, at which revision.
type Instance struct {
	NixVersion     string `json:"nix_version,omitempty"`
	Source         string `json:"source,omitempty"`
	SourceRevision string `json:"source_revision,omitempty"`
}

// health is what /healthz and /readyz say.
type health struct {
	Status  string `json:"status"` // ok, unavailable
	Version string `json:"version"`
	Go      string `json:"go"`
	Instance
	Reason string            `json:"reason,omitempty"`
	Checks map[string]string `json:"checks,omitempty"` // name: ok, or what is wrong
}

// serveHealth answers /healthz, 200 while the process serves, and /readyz,
// 200 only when every check passes and no shutdown has begun (a load
// balancer then drains the instance before it stops), else 503 with the
// reason. Both name the version; /readyz also the Nix version and the
// package source's revision.
func (h *handler) serveHealth(w *responseWriter, r *http.Request) {
	if !isReadMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := health{Status: "ok", Version: version.String(), Go: version.Go()}
	if r.URL.Path == "/readyz" {
		if h.ready.instance != nil {
			body.Instance = h.ready.instance()
		}
		if h.draining.Load() {
			body.Status, body.Reason = "unavailable", "shutting down"
		} else {
			body.Checks = map[string]string{}
			for _, c := range h.ready.all {
				if err := c.result(r.Context(), h.ready.ctx); err != nil {
					body.Checks[c.Name] = err.Error()
					if body.Reason == "" {
						body.Status, body.Reason = "unavailable", c.Name+": "+err.Error()
					}
					continue
				}
				body.Checks[c.Name] = "ok"
			}
		}
	}
	data, _ := json.Marshal(body)
	data = append(data, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	if body.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if !w.head {
		w.Write(data)
	}
}

func isHealthPath(p string) bool { return p == "/healthz" || p == "/readyz" }

// drain makes /readyz answer 503 from now on: a shutdown has begun.
// Periodic checks stop.
func (h *handler) drain() {
	h.draining.Store(true)
	h.ready.stop()
}

// readiness is the handler's checks with their state, what /readyz says
// of the instance, and the lifetime of the periodic checks' runs: it ends
// when a shutdown begins.
type readiness struct {
	all      []*check
	instance func() Instance // nil: /readyz names no Nix or source
	ctx      context.Context
	stop     context.CancelFunc
}

// newReadiness makes the checks and starts the first run of the periodic
// ones.
func newReadiness(checks []Check, instance func() Instance) *readiness {
	ctx, stop := context.WithCancel(context.Background())
	r := &readiness{instance: instance, ctx: ctx, stop: stop}
	for _, c := range checks {
		ch := &check{Check: c}
		if c.Every > 0 {
			ch.mu.Lock()
			ch.start(ctx)
			ch.mu.Unlock()
		}
		r.all = append(r.all, ch)
	}
	return r
}

// errNotChecked is a periodic check's answer before its first run ends.
var errNotChecked = errors.New("not checked yet: the first check is still running")

// check is a Check and, for a periodic one, its last result.
type check struct {
	Check
	mu      sync.Mutex
	err     error         // the last result
	checked time.Time     // when it ended; zero before the first
	running chan struct{} // closed when the run in progress ends; nil when none
}

// result is the check's answer to a probe: Run under checkTimeout, or a
// periodic check's last result (see Check.Every), runs of which are
// started under bg.
func (c *check) result(probe, bg context.Context) error {
	if c.Every <= 0 {
		ctx, cancel := context.WithTimeout(probe, checkTimeout)
		defer cancel()
		return c.Run(ctx)
	}
	c.mu.Lock()
	if c.running == nil && (c.checked.IsZero() || time.Since(c.checked) >= c.Every) {
		c.start(bg)
	}
	if !c.checked.IsZero() {
		defer c.mu.Unlock()
		return c.err
	}
	running := c.running
	c.mu.Unlock()

	wait := time.NewTimer(checkTimeout)
	defer wait.Stop()
	select {
	case <-running:
	case <-wait.C:
	case <-probe.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked.IsZero() {
		return errNotChecked
	}
	return c.err
}

// start runs the check in the background under ctx; c.mu is held.
func (c *check) start(ctx context.Context) {
	done := make(chan struct{})
	c.running = done
	go func() {
		defer close(done)
		err := c.Run(ctx)
		c.mu.Lock()
		c.err, c.checked, c.running = err, time.Now(), nil
		c.mu.Unlock()
	}()
}
