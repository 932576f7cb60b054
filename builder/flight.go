package builder

import (
	"context"
	"sync"

	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
)

// flightGroup runs one build per key however many callers ask. A build
// runs under a context of its own, derived from the builder's base, so it
// runs to its end (or its own limit) whether or not anyone still waits:
// a client that gives up and pulls again later finds the image built, and
// the bound on concurrent builds still holds, so walking away cannot
// multiply the work. Only closing the builder stops builds.
//
// The map is changed only under mu, and a flight removes only itself, so
// an old flight ending never removes a newer one of the same key.
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
	build   *build
}

// join returns the flight of key, starting one that runs fn with a new
// build record (from rec) when there is none; rec may refuse to start one
// (a limit), and its error is join's. The flight's context takes the
// request id and the caller of ctx, the request that started it.
func (g *flightGroup) join(ctx, base context.Context, key string, rec func() (*build, error), fn func(context.Context, *build) (source.Manifests, error)) (*flight, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false, errcode.New(errcode.Unavailable, "the registry is shutting down: try again")
	}
	if f, ok := g.flights[key]; ok {
		return f, false, nil
	}
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	r, err := rec()
	if err != nil {
		return nil, false, err
	}
	f := &flight{done: make(chan struct{}), build: r}
	g.flights[key] = f
	bctx := requestid.NewContext(base, requestid.FromContext(ctx))
	if c, ok := caller.FromContext(ctx); ok {
		bctx = caller.NewContext(bctx, c)
	}
	g.running.Go(func() {
		f.result, f.err = fn(bctx, f.build)
		g.forget(key, f)
		close(f.done)
	})
	return f, true, nil
}

// wait waits for f's result until ctx ends or timeout (if not nil) fires;
// the build goes on either way. timedOut says the timeout fired.
func (g *flightGroup) wait(ctx context.Context, f *flight, timeout <-chan struct{}) (m source.Manifests, err error, timedOut bool) {
	g.mu.Lock()
	f.waiters++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		f.waiters--
		g.mu.Unlock()
	}()
	select {
	case <-f.done:
		return f.result, f.err, false
	case <-ctx.Done():
		return nil, errcode.Wrap(errcode.Unavailable, ctx.Err(), "request ended before the image was built"), false
	case <-timeout:
		return nil, nil, true
	}
}

// forget removes f from the group if it still holds it.
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
