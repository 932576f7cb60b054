package builder

import (
	"context"
	"sync"

	"github.com/nixport/nixport/errcode"
)

// flightGroup runs one build per key however many callers ask. The build
// runs under a context of its own (derived from the builder's base), so a
// caller that goes away does not cancel a build others still wait on; when
// the last waiter leaves, the build is cancelled, since nobody wants it.
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
}

type flight struct {
	done    chan struct{}
	result  Manifests
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (g *flightGroup) do(ctx, base context.Context, key string, fn func(context.Context) (Manifests, error)) (Manifests, error) {
	g.mu.Lock()
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	f, ok := g.flights[key]
	if !ok {
		bctx, cancel := context.WithCancel(base)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		g.flights[key] = f
		go func() {
			defer cancel()
			f.result, f.err = fn(bctx)
			g.mu.Lock()
			delete(g.flights, key)
			g.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		g.leave(f)
		return f.result, f.err
	case <-ctx.Done():
		if g.leave(f) {
			f.cancel()
		}
		return nil, errcode.Wrap(errcode.Unavailable, ctx.Err(), "request ended before the image was built")
	}
}

// leave drops one waiter and reports whether it was the last.
func (g *flightGroup) leave(f *flight) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	return f.waiters == 0
}
