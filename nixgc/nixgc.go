// Package nixgc keeps the Nix store under a size (NIXPORT_NIX_STORE_MAX):
// it measures the store at start-up, periodically and after builds, and
// when the store is over the size it has Nix collect garbage down to the
// low-water mark (NIXPORT_NIX_STORE_LOW). A public registry's store only
// grows, one package set after another, until the disk is full: the
// outage that took nixery.dev down.
//
// Collection is safe by construction: Nix deletes only paths nothing
// roots, and the nix package roots every path a planned or running build
// needs from the moment the Nix process that creates it exits (see
// nix/gcroots.go), while Nix's own temporary roots cover the process's
// lifetime. So the collector needs no lock against builds, and builds
// never wait for a collection. Images already built do not need the
// store: their layers are in storage.
//
// The collector's cost is bounded: measuring a store takes Nix about 40 µs
// a path, so the next measurement waits at least Cost times as long as
// the last measurement and collection took (with the default 20, the
// collector spends at most about 5% of its time working) as well as
// Interval between periodic ones. Builds ask for a measurement (Poke);
// requests while one is due are one request.
package nixgc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/bytesize"
	"github.com/nixport/nixport/nix"
)

// Store is the Nix store as the collector uses it; *nix.Driver is one.
type Store interface {
	StoreSize(ctx context.Context) (nix.StoreUsage, error)
	CollectGarbage(ctx context.Context, maxFreed int64) (nix.Collected, error)
}

// Observer hears what the collector measures and does, for metrics
// (nixport_nix_store_bytes, the bytes freed). Its methods are called from
// the collector's goroutine and must not block.
type Observer interface {
	// StoreBytes is the store's size, after every measurement.
	StoreBytes(bytes int64)
	// Collected is called after every collection: what it freed, how long
	// it took, and its error (nil when it succeeded).
	Collected(freedBytes int64, d time.Duration, err error)
}

// Defaults of Options.
const (
	DefaultInterval = time.Minute
	DefaultCost     = 20
)

// Options configure a Collector.
type Options struct {
	Store Store
	// Max is the size over which the store is collected; Low the size a
	// collection frees it down to (0 <= Low < Max).
	Max, Low int64
	// Interval is the time between periodic measurements; zero means
	// DefaultInterval.
	Interval time.Duration
	// Cost: the collector waits at least Cost times as long as its last
	// round of work took before it measures again; zero means
	// DefaultCost.
	Cost int
	// Observer, if set, hears every measurement and collection.
	Observer Observer
	Log      logrus.FieldLogger
}

// Stats count what the collector has done.
type Stats struct {
	Measurements int64 // measurements of the store that succeeded
	Collections  int64 // collections run (failed ones included)
	Failures     int64 // measurements and collections that failed
	FreedBytes   int64 // bytes freed, as Nix reports them
	FreedPaths   int64
	StoreBytes   int64 // the last size measured
}

// Collector is the running collector. Close stops it.
type Collector struct {
	opts   Options
	log    logrus.FieldLogger
	poke   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	close  sync.Once

	measurements, collections, failures atomic.Int64
	freedBytes, freedPaths, storeBytes  atomic.Int64
}

// Start checks the options and starts the collector's goroutine, which
// measures the store at once.
func Start(opts Options) (*Collector, error) {
	if opts.Store == nil {
		return nil, errors.New("nixgc: no store")
	}
	if opts.Max <= 0 || opts.Low < 0 || opts.Low >= opts.Max {
		return nil, errors.New("nixgc: the low-water mark must be at least 0 and below the maximum, which must be positive")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Cost <= 0 {
		opts.Cost = DefaultCost
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{
		opts:   opts,
		log:    opts.Log.WithField("component", "nixgc"),
		poke:   make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	c.log.WithFields(logrus.Fields{"max": opts.Max, "low": opts.Low, "interval_s": opts.Interval.Seconds()}).
		Info("collecting the Nix store's garbage when it holds more than NIXPORT_NIX_STORE_MAX")
	go c.run(ctx)
	return c, nil
}

// Poke asks for a measurement soon: a build has ended and the store may
// have grown. It never blocks; pokes while one is pending are one.
func (c *Collector) Poke() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Close stops the collector, a collection in progress included (Nix
// stops it cleanly), and waits for its goroutine. Safe more than once.
func (c *Collector) Close() error {
	c.close.Do(c.cancel)
	<-c.done
	return nil
}

// Stats returns the collector's counters.
func (c *Collector) Stats() Stats {
	return Stats{
		Measurements: c.measurements.Load(),
		Collections:  c.collections.Load(),
		Failures:     c.failures.Load(),
		FreedBytes:   c.freedBytes.Load(),
		FreedPaths:   c.freedPaths.Load(),
		StoreBytes:   c.storeBytes.Load(),
	}
}

func (c *Collector) run(ctx context.Context) {
	defer close(c.done)
	for {
		start := time.Now()
		c.round(ctx)
		took := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		// Not again before the cost bound allows; then at the next
		// period, or at a poke.
		earliest := time.NewTimer(time.Duration(c.opts.Cost) * took)
		select {
		case <-ctx.Done():
			earliest.Stop()
			return
		case <-earliest.C:
		}
		period := time.NewTimer(max(c.opts.Interval-time.Since(start), 0))
		select {
		case <-ctx.Done():
			period.Stop()
			return
		case <-period.C:
		case <-c.poke:
			period.Stop()
		}
	}
}

// round measures the store and collects it if it is over the maximum.
func (c *Collector) round(ctx context.Context) {
	u, ok := c.measure(ctx)
	if !ok || u.Bytes <= c.opts.Max {
		return
	}
	target := u.Bytes - c.opts.Low
	log := c.log.WithFields(logrus.Fields{
		"store_bytes": u.Bytes, "store_paths": u.Paths, "max": c.opts.Max, "low": c.opts.Low, "max_freed": target,
	})
	log.Info("the Nix store holds more than NIXPORT_NIX_STORE_MAX: collecting garbage")
	start := time.Now()
	freed, err := c.opts.Store.CollectGarbage(ctx, target)
	took := time.Since(start)
	c.collections.Add(1)
	if c.opts.Observer != nil {
		c.opts.Observer.Collected(freed.Bytes, took, err)
	}
	if err != nil {
		if ctx.Err() != nil {
			log.WithError(err).Info("garbage collection stopped: the server is shutting down")
			return
		}
		c.failures.Add(1)
		log.WithError(err).WithField("duration_ms", took.Milliseconds()).Error("collecting the Nix store's garbage failed")
		return
	}
	c.freedBytes.Add(freed.Bytes)
	c.freedPaths.Add(int64(freed.Paths))
	after, ok := c.measure(ctx)
	log = log.WithFields(logrus.Fields{
		"freed_bytes": freed.Bytes, "freed_paths": freed.Paths, "freed": bytesize.Format(freed.Bytes),
		"duration_ms": took.Milliseconds(),
	})
	if ok {
		log = log.WithFields(logrus.Fields{"store_bytes_after": after.Bytes, "store_paths_after": after.Paths})
	}
	log.Info("Nix store garbage collected")
	if ok && after.Bytes > c.opts.Max {
		log.Warn("the Nix store still holds more than NIXPORT_NIX_STORE_MAX after a collection: the rest is in use " +
			"(roots of builds in progress, or of other programs); raise NIXPORT_NIX_STORE_MAX or find the roots with nix-store --gc --print-roots")
	}
}

// measure measures the store, counts and reports it.
func (c *Collector) measure(ctx context.Context) (nix.StoreUsage, bool) {
	start := time.Now()
	u, err := c.opts.Store.StoreSize(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.failures.Add(1)
			c.log.WithError(err).Error("measuring the Nix store failed")
		}
		return nix.StoreUsage{}, false
	}
	c.measurements.Add(1)
	c.storeBytes.Store(u.Bytes)
	if c.opts.Observer != nil {
		c.opts.Observer.StoreBytes(u.Bytes)
	}
	c.log.WithFields(logrus.Fields{"store_bytes": u.Bytes, "store_paths": u.Paths, "duration_ms": time.Since(start).Milliseconds()}).
		Debug("Nix store measured")
	return u, true
}
