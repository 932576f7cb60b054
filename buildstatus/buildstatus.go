// Package buildstatus is what the build status API says of a build: the
// one definition of its JSON, whose field names are stable (CI pipelines
// and the status pages read them). The builder fills it; the web package
// serves it. It lives apart from both so that web, which must not import
// the builder, and the builder, which must not know HTTP, share one type
// rather than two copies that could drift.
package buildstatus

import (
	"time"

	"github.com/nixport/nixport/source"
)

// State is where a build is.
type State string

// The states of a build: queued (waiting for a build slot, or for another
// instance's build), then the source's phases, then done or failed.
const (
	Queued    State = "queued"
	Resolving State = State(source.Resolving)
	Realising State = State(source.Realising)
	Archiving State = State(source.Archiving)
	Done      State = "done"
	Failed    State = "failed"
)

// Finished reports whether the state is final.
func (s State) Finished() bool { return s == Done || s == Failed }

// Status is one build as the status API shows it.
type Status struct {
	// ID names the build; empty in the answer for an image already built,
	// which no build of this instance made.
	ID     string `json:"id"`
	Image  string `json:"image"`
	Tag    string `json:"tag"`
	Source string `json:"source,omitempty"`
	State  State  `json:"state"`
	// Progress, where the source knows it.
	PathsDone       int   `json:"paths_done,omitempty"`
	PathsTotal      int   `json:"paths_total,omitempty"`
	LayersDone      int   `json:"layers_done,omitempty"`
	LayersTotal     int   `json:"layers_total,omitempty"`
	BytesCompressed int64 `json:"bytes_compressed,omitempty"`

	// QueuedAt is left out only for an image already built.
	QueuedAt   time.Time  `json:"queued_at,omitzero"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	ManifestDigest string `json:"manifest_digest,omitempty"`
	Error          string `json:"error,omitempty"`
	// RequestID is the request that started the build.
	RequestID string `json:"request_id,omitempty"`
	// Log is the end of the build's output (up to 64 KiB); only in the
	// status of one build.
	Log string `json:"log,omitempty"`
}
