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
	// ownsResolution: made by Build, the image releases its Resolution
	// too (BuildResolved's caller releases its own).
	ownsResolution bool
}

// Release drops the image's GC roots; call it once the closure's paths have
// been archived. Safe on nil and more than once.
func (i *Image) Release() error {
	if i == nil {
		return nil
	}
	err := i.roots.Release()
	if i.ownsResolution {
		err = errors.Join(err, i.Resolution.Release())
	}
	return err
}

// Build resolves names at tag for system, realises them and reads their
// closure: exactly three Nix processes whatever the number of names (none
// when names is empty). The errors are those of Resolve, Realise and
// Closure; on error nothing stays rooted. The Image owns the Resolution:
// its Release releases both.
func (d *Driver) Build(ctx context.Context, tag, system string, names []string) (*Image, error) {
	res, err := d.Resolve(ctx, tag, system, names)
	if err != nil {
		return nil, err
	}
	img, err := d.BuildResolved(ctx, res)
	if err != nil {
		if rerr := res.Release(); rerr != nil {
			d.log.WithError(rerr).Warn("releasing GC roots")
		}
		return nil, err
	}
	img.ownsResolution = true
	return img, nil
}

// BuildResolved realises what Resolve found and reads its closure: the
// second half of Build, for a caller that resolved first (to plan), and
// who releases the Resolution.
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
