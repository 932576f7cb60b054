// Package source is the contract between the build coordinator (package
// builder) and the image sources (packages nixsource, command, layout and
// the router that picks among them): a source identifies a request, plans
// it into a content-addressed Plan, and builds exactly that plan. It also
// holds what the coordinator and the sources share: the stored form of an
// image's manifests (records), and the checks a name and tag pass before
// they reach a command line.
package source

import (
	"context"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/storage"
)

// Source makes images for repository names, in two steps: Plan resolves
// what a name and tag mean now (the packages' derivations, a layout's
// index) into a Plan, and Build builds exactly that plan. Nothing is
// resolved twice, and a plan's Key names what its Build makes. The Nix
// pipeline is one source; external builds that emit OCI layouts are
// others. The Builder wraps any source with caching, coalescing and a
// bound on concurrent builds.
type Source interface {
	// Identify validates name:tag without running or reading anything
	// outside memory, and returns the Request: the key that identifies
	// what is asked for (two names for the same image, such as git/htop
	// and htop/git, share it), whether the answer never changes, and the
	// source's own parse of the name for Plan. Invalid names give an
	// *errcode.Error.
	Identify(name, tag string) (Request, error)
	// Plan resolves the request: everything Build needs, fixed, and the
	// key of what will be built.
	Plan(ctx context.Context, req Request) (Plan, error)
	// Build makes exactly the planned image (or finds it in the source's
	// own caches) and returns its manifests, already in storage.
	Build(ctx context.Context, plan Plan) (Manifests, error)
}

// Request is a validated name and tag, as a source identified them.
type Request struct {
	Name, Tag string
	// Key identifies what is asked for; requests with one Key share one
	// build and one cache entry.
	Key string
	// Pinned: the same Key always gives the same image (a git commit), so
	// its result may be kept for ever.
	Pinned bool
	// Parsed is the source's own reading of the name, for its Plan.
	Parsed any
}

// Plan is a resolved request: what Build will make.
type Plan struct {
	Request Request
	// Key names the content Build makes from this plan.
	Key string
	// Pinned: Key addresses content (derivations, an index's bytes), so a
	// build of an equal Key can be reused instead of building again.
	Pinned bool
	// Work is everything the source's Build needs, fixed at planning.
	Work any
	// Held is what the source keeps for the plan until it is built or
	// abandoned (the Nix source: the GC roots of its derivations), or
	// nil. Whoever called Plan calls Release once done with the plan.
	Held Releaser
}

// Releaser lets go of what a source holds for a plan.
type Releaser interface {
	Release() error
}

// Release lets go of what the source holds for the plan: call it once the
// plan is built, or will not be. Safe on a plan that holds nothing.
func (p Plan) Release() error {
	if p.Held == nil {
		return nil
	}
	return p.Held.Release()
}

// Manifests are the stored manifests of one image, one per format. A
// source that has only one form (an OCI layout) fills only that one.
type Manifests map[manifest.Format]storage.BlobInfo

// Pick returns the manifest in format f, or the one form there is.
func (m Manifests) Pick(f manifest.Format) (storage.BlobInfo, bool) {
	if b, ok := m[f]; ok {
		return b, true
	}
	for _, b := range m {
		return b, true
	}
	return storage.BlobInfo{}, false
}

// BuildOnce runs a source's three steps for name:tag, with none of the
// Builder's caches, coalescing or bounds: for benchmarks and tests.
func BuildOnce(ctx context.Context, src Source, name, tag string) (Manifests, error) {
	req, err := src.Identify(name, tag)
	if err != nil {
		return nil, err
	}
	plan, err := src.Plan(ctx, req)
	if err != nil {
		return nil, err
	}
	defer plan.Release()
	return src.Build(ctx, plan)
}

// CheckNameTag validates a repository name and a tag before they go
// anywhere near a command or a file: NAME_INVALID or TAG_INVALID.
func CheckNameTag(name, tag string) error {
	if err := reference.CheckName(name); err != nil {
		return errcode.New(errcode.NameInvalid, "invalid repository name %.100q: %v", name, err)
	}
	if !reference.ValidTag(tag) {
		return errcode.New(errcode.TagInvalid, "invalid tag %.140q: use letters, digits, _, . and -, not starting with . or -, at most 128 characters", tag)
	}
	return nil
}
