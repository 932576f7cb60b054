package builder

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
)

// State is where a build is; Status is what the status API says of one
// build. Both are package buildstatus's, which web shares.
type (
	State  = buildstatus.State
	Status = buildstatus.Status
)

// The states of a build (buildstatus's).
const (
	Queued    = buildstatus.Queued
	Resolving = buildstatus.Resolving
	Realising = buildstatus.Realising
	Archiving = buildstatus.Archiving
	Done      = buildstatus.Done
	Failed    = buildstatus.Failed
)

// logKeep bounds the build output a build keeps: its end, where the
// reason of a failure is.
const logKeep = 64 << 10

// finishedKept is how many finished builds stay listed.
const finishedKept = 100

// build is one build's live record: the flight running it updates it,
// the status API reads it. It is the build's source.Progress.
type build struct {
	mu     sync.Mutex
	status Status
	log    []byte // the last logKeep bytes of output, at most 2*logKeep before a cut
}

var _ source.Progress = (*build)(nil)

func newBuild(image, tag, sourceKind, requestID string, now time.Time) *build {
	var id [8]byte
	rand.Read(id[:])
	return &build{status: Status{
		ID: hex.EncodeToString(id[:]), Image: image, Tag: tag, Source: sourceKind,
		State: Queued, QueuedAt: now.UTC(), RequestID: requestID,
	}}
}

func (b *build) id() string { return b.status.ID } // immutable

// snapshot is the build's status now; withLog adds its output's end.
func (b *build) snapshot(withLog bool) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.status
	if withLog {
		s.Log = tailText(b.log, logKeep)
	}
	return s
}

func (b *build) started(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := now.UTC()
	b.status.StartedAt = &t
	b.status.State = Resolving
}

func (b *build) finish(now time.Time, m source.Manifests, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := now.UTC()
	b.status.FinishedAt = &t
	if err != nil {
		b.status.State = Failed
		b.status.Error = clientMessage(err)
		return
	}
	b.status.State = Done
	if info, ok := m.Pick(manifest.OCI); ok {
		b.status.ManifestDigest = string(info.Digest)
	}
}

// Phase implements source.Progress.
func (b *build) Phase(p source.Phase) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.status.State.Finished() {
		b.status.State = State(p)
	}
}

// Paths implements source.Progress.
func (b *build) Paths(done, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status.PathsDone, b.status.PathsTotal = done, total
}

// Layers implements source.Progress.
func (b *build) Layers(done, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status.LayersDone, b.status.LayersTotal = done, total
}

// Compressed implements source.Progress.
func (b *build) Compressed(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status.BytesCompressed += n
}

// Output implements source.Progress.
func (b *build) Output(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = append(b.log, p...)
	if len(b.log) > 2*logKeep {
		b.log = append(b.log[:0], b.log[len(b.log)-logKeep:]...)
	}
}

// tailText is the last max bytes of p, from a line start when cut.
func tailText(p []byte, max int) string {
	if len(p) <= max {
		return string(p)
	}
	p = p[len(p)-max:]
	for i, c := range p {
		if c == '\n' {
			return string(p[i+1:])
		}
	}
	return string(p)
}

// builds lists the builds of this instance: those queued or running, and
// the last finishedKept finished ones.
type builds struct {
	mu       sync.Mutex
	active   map[string]*build
	finished []*build // oldest first
}

func (r *builds) add(b *build) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == nil {
		r.active = map[string]*build{}
	}
	r.active[b.id()] = b
}

// done moves b to the finished list.
func (r *builds) done(b *build) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, b.id())
	r.finished = append(r.finished, b)
	if len(r.finished) > finishedKept {
		r.finished = slices.Delete(r.finished, 0, len(r.finished)-finishedKept)
	}
}

// counts is how many builds are queued (waiting for a slot or a lease)
// and how many are running.
func (r *builds) counts() (queued, running int) {
	r.mu.Lock()
	active := make([]*build, 0, len(r.active))
	for _, b := range r.active {
		active = append(active, b)
	}
	r.mu.Unlock()
	for _, b := range active {
		if b.snapshot(false).State == Queued {
			queued++
		} else {
			running++
		}
	}
	return queued, running
}

func (r *builds) get(id string) (*build, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.active[id]; ok {
		return b, true
	}
	for _, b := range r.finished {
		if b.id() == id {
			return b, true
		}
	}
	return nil, false
}

// list is every build's status, newest first.
func (r *builds) list() []Status {
	r.mu.Lock()
	all := make([]*build, 0, len(r.active)+len(r.finished))
	for _, b := range r.active {
		all = append(all, b)
	}
	all = append(all, r.finished...)
	r.mu.Unlock()
	out := make([]Status, len(all))
	for i, b := range all {
		out[i] = b.snapshot(false)
	}
	slices.SortStableFunc(out, func(a, b Status) int { return b.QueuedAt.Compare(a.QueuedAt) })
	return out
}

// clientMessage is what a client is told of err: an *errcode.Error's
// message; anything else is a server fault whose cause is for the log.
func clientMessage(err error) string {
	if e, ok := errcode.As(err); ok {
		return e.Message
	}
	return "internal server error (the registry's log has the cause)"
}
