package nix

import (
	"context"
	"errors"
)

// Image is what the Nix side contributes to an image: the resolved
// packages and the realised runtime closure, kept alive by GC roots until
// Release.
type Image struct {
	Resolution *Resolution
	Closure    *Closure
	roots      *Roots
}

// Release drops the image's GC roots; call it once the closure's paths have
// been archived. Safe on nil and more than once.
func (i *Image) Release() error {
	if i == nil {
		return nil
	}
	return i.roots.Release()
}

// Build resolves names at tag for system, realises them and reads their
// closure: exactly three Nix processes whatever the number of names (none
// when names is empty). The errors are those of Resolve, Realise and
// Closure; on error nothing stays rooted.
func (d *Driver) Build(ctx context.Context, tag, system string, names []string) (*Image, error) {
	res, err := d.Resolve(ctx, tag, system, names)
	if err != nil {
		return nil, err
	}
	return d.BuildResolved(ctx, res)
}

// BuildResolved realises what Resolve found and reads its closure: the
// second half of Build, for a caller that resolved first (to plan).
func (d *Driver) BuildResolved(ctx context.Context, res *Resolution) (*Image, error) {
	roots, err := d.Realise(ctx, res)
	if err != nil {
		return nil, err
	}
	c, err := d.Closure(ctx, res.OutputPaths())
	if err != nil {
		return nil, errors.Join(err, roots.Release())
	}
	return &Image{Resolution: res, Closure: c, roots: roots}, nil
}
