package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/nixport/nixport/version"
)

// Check is one thing readiness depends on: storage that can be read and
// written, Nix that runs. Run returns nil when it is fine.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// checkTimeout bounds each readiness check: a check that hangs is a
// failed one.
const checkTimeout = 5 * time.Second

// health is what /healthz and /readyz say.
type health struct {
	Status  string            `json:"status"` // ok, unavailable
	Version string            `json:"version"`
	Go      string            `json:"go"`
	Reason  string            `json:"reason,omitempty"`
	Checks  map[string]string `json:"checks,omitempty"` // name: ok, or what is wrong
}

// serveHealth answers /healthz, 200 while the process serves, and /readyz,
// 200 only when every check passes and no shutdown has begun (a load
// balancer then drains the instance before it stops), else 503 with the
// reason. Both name the version.
func (h *handler) serveHealth(w *responseWriter, r *http.Request) {
	if !isReadMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := health{Status: "ok", Version: version.String(), Go: version.Go()}
	if r.URL.Path == "/readyz" {
		if h.draining.Load() {
			body.Status, body.Reason = "unavailable", "shutting down"
		} else {
			body.Checks = map[string]string{}
			for _, c := range h.checks {
				ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
				err := c.Run(ctx)
				cancel()
				if err != nil {
					body.Checks[c.Name] = err.Error()
					body.Status, body.Reason = "unavailable", c.Name+": "+err.Error()
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
func (h *handler) drain() { h.draining.Store(true) }
