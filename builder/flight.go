package builder

import (
	"context"
	"sync"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
)

// flightGroup runs one build per key however many callers ask. The build
// runs under a context of its own (derived from the builder's base), so a
// caller that goes away does not cancel a build others still wait on; when
// the last waiter leaves, the build is cancelled, since nobody wants it.
//
// A cancelled build leaves the group at once, although it may take a
// while to stop (a process gets SIGTERM and a grace period): a caller
// arriving meanwhile starts a live build instead of joining one that can
// only end in "context canceled". The map is changed only under mu, and
// only for the flight it still holds, so an old flight ending never
// removes a newer one of the same key.
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
	closed  bool           // set by close: no new flight starts
	running sync.WaitGroup // the flights' goroutines
}

type flight struct {
	done    chan struct{}
	result  source.Manifests
	err     error
	waiters int // guarded by the group's mu
	cancel  context.CancelFunc
}

func (g *flightGroup) do(ctx, base context.Context, key string, fn func(context.Context) (source.Manifests, error)) (source.Manifests, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, errcode.New(errcode.Unavailable, "the registry is shutting down: try again")
	}
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	f, ok := g.flights[key]
	if !ok {
		bctx, cancel := context.WithCancel(base)
		// The build's lines name the request that started it.
		bctx = requestid.NewContext(bctx, requestid.FromContext(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		g.flights[key] = f
		g.running.Go(func() {
			defer cancel()
			f.result, f.err = fn(bctx)
			g.forget(key, f)
			close(f.done)
		})
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		g.mu.Lock()
		f.waiters--
		g.mu.Unlock()
		return f.result, f.err
	case <-ctx.Done():
		g.leave(key, f)
		return nil, errcode.Wrap(errcode.Unavailable, ctx.Err(), "request ended before the image was built")
	}
}

// leave drops one waiter of a flight whose caller went away. The last one
// to leave cancels the flight and takes it out of the group, in one step
// under the lock, so that no caller can join it in between.
func (g *flightGroup) leave(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	f.cancel()
	if g.flights[key] == f {
		delete(g.flights, key)
	}
}

// forget removes f from the group if it still holds it: a cancelled
// flight was removed when it was cancelled, and key may name a newer one.
func (g *flightGroup) forget(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.flights[key] == f {
		delete(g.flights, key)
	}
}

// close stops new flights from starting and waits for those running to
// end. Their contexts derive from the builder's base: cancel it first, or
// close waits for the builds to finish.
func (g *flightGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.running.Wait()
}
