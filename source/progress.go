package source

import "context"

// Phase is what a build is doing.
type Phase string

// The phases of a build, in order; a source reports those it has.
const (
	Resolving Phase = "resolving" // finding what the name means (Plan)
	Realising Phase = "realising" // building or fetching what it needs
	Archiving Phase = "archiving" // making and storing layers and manifests
)

// Progress hears what a build is doing, as far as its source knows: the
// build status API and page show it. Every method is safe to call from
// any goroutine, and a source calls only those it has figures for.
type Progress interface {
	// Phase says the build entered phase p.
	Phase(p Phase)
	// Paths says done of total store paths (or steps) are realised.
	Paths(done, total int)
	// Layers says done of total layers are archived.
	Layers(done, total int)
	// Compressed adds n bytes to the bytes compressed so far.
	Compressed(n int64)
	// Output is more of the build's own output (Nix's log, a command's
	// output), in the order written.
	Output(p []byte)
}

type progressKey struct{}

// WithProgress returns ctx carrying p, for the source building under it.
func WithProgress(ctx context.Context, p Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

// ProgressOf returns the Progress ctx carries, or one that hears nothing.
func ProgressOf(ctx context.Context) Progress {
	if p, ok := ctx.Value(progressKey{}).(Progress); ok {
		return p
	}
	return noProgress{}
}

type noProgress struct{}

func (noProgress) Phase(Phase)      {}
func (noProgress) Paths(int, int)   {}
func (noProgress) Layers(int, int)  {}
func (noProgress) Compressed(int64) {}
func (noProgress) Output([]byte)    {}
