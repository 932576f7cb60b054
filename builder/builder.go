// Package builder is the build coordinator: it turns a repository name and
// tag into a stored image by asking a source (package source) to identify,
// plan and build it, and owns what every source needs around that: the
// caches (an in-memory LRU, and records in storage of tags, pinned
// requests and built plans), one build per image however many clients ask
// (in-process, and across instances through leases in storage), a global
// bound on concurrent builds, and a short memory of failed builds. It knows
// nothing of how an image is made.
package builder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// Options configure a Builder.
type Options struct {
	Storage storage.Backend
	// Source builds images. Nil serves only images recorded in storage
	// (StoreTag), which is what a registry without a build pipeline does.
	Source source.Source
	Log    logrus.FieldLogger
	// MaxBuilds bounds concurrent builds; the rest queue. Default 1.
	MaxBuilds int
	// CacheEntries bounds the in-memory LRU of image manifests.
	// Default 4096.
	CacheEntries int
	// MovingTagTTL is how long a build of a moving tag (a branch, a
	// channel, a local path) is served from memory before the source is
	// asked again. Pinned images are cached forever. Zero asks every time.
	MovingTagTTL time.Duration
	// BuildTimeout bounds one build, however many clients wait on it.
	// Default 10 minutes.
	BuildTimeout time.Duration
	// FailedBuildTTL is how long a build that failed because of what the
	// client asked for (an *errcode.Error with a 4xx status: a package
	// that does not build, a missing package) is answered with the same
	// error without running the source again, so that clients retrying
	// do not start the same failing build over and over. Server faults
	// and stopped builds are never remembered. Zero remembers nothing.
	FailedBuildTTL time.Duration
	// PullWait bounds how long a pull waits for its build: past it the
	// client is told the image is still being built (a 4xx it prints)
	// while the build goes on. Zero waits as long as the build takes.
	PullWait time.Duration
	// Clock tells the time for every TTL; nil is time.Now. Tests move it.
	Clock func() time.Time
	// Metrics, if set, counts cache lookups and builds, and shows the
	// builds queued and running.
	Metrics *metrics.Metrics
	// BuildRate bounds the builds one client (caller.Key) starts per
	// hour; ClientMaxBuilds the builds one client has queued or running
	// at once. Zero: unbounded. Work without a caller is not limited.
	BuildRate       int
	ClientMaxBuilds int
}

// Builder serves images by name and tag. It implements web.Images.
type Builder struct {
	opts  Options
	log   logrus.FieldLogger
	cache *lru.Cache[string, cacheEntry]
	// ids remembers Source.Identify by name and tag: parsing a name costs
	// more than the rest of a warm lookup.
	ids *lru.Cache[imageID, identity]
	// failures remembers recent client-caused build failures by image key
	// (FailedBuildTTL).
	failures *lru.Cache[string, failure]
	slots    *fairSlots
	limits   clientLimits
	flights  flightGroup
	builds   builds

	// base is the context builds run under: cancelled by Close, never by a
	// single client going away.
	base   context.Context
	cancel context.CancelFunc
	now    func() time.Time
	// holder names this instance in build leases.
	holder string
}

// imageID is the ids cache's key; a struct, not name+":"+tag, so that a
// lookup allocates nothing.
type imageID struct{ name, tag string }

// identity is a remembered source.Request and when the source gave it.
type identity struct {
	source.Request
	at time.Time
}

type cacheEntry struct {
	manifests source.Manifests
	pinned    bool
	at        time.Time
}

// failure is a build's client-caused error and when it happened.
type failure struct {
	err error
	at  time.Time
}

// New returns a Builder. Close it to stop builds in flight.
func New(opts Options) (*Builder, error) {
	if opts.Storage == nil {
		return nil, errors.New("builder: no storage")
	}
	if opts.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		opts.Log = l
	}
	if opts.MaxBuilds < 1 {
		opts.MaxBuilds = 1
	}
	if opts.CacheEntries < 1 {
		opts.CacheEntries = 4096
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	if opts.BuildTimeout <= 0 {
		opts.BuildTimeout = 10 * time.Minute
	}
	cache, err := lru.New[string, cacheEntry](opts.CacheEntries)
	if err != nil {
		return nil, fmt.Errorf("creating manifest cache: %w", err)
	}
	ids, err := lru.New[imageID, identity](opts.CacheEntries)
	if err != nil {
		return nil, fmt.Errorf("creating name cache: %w", err)
	}
	failures, err := lru.New[string, failure](opts.CacheEntries)
	if err != nil {
		return nil, fmt.Errorf("creating failed build cache: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	b := &Builder{
		opts:     opts,
		log:      opts.Log,
		cache:    cache,
		ids:      ids,
		failures: failures,
		slots:    newFairSlots(opts.MaxBuilds),
		limits:   clientLimits{rate: opts.BuildRate, maxActive: opts.ClientMaxBuilds},
		base:     base,
		cancel:   cancel,
		now:      clock,
		holder:   newHolderID(),
	}
	opts.Metrics.BuildStates(b.builds.counts)
	return b, nil
}

// Close cancels every build in flight and waits until they have stopped
// (a build's processes get their kill grace), so that nothing a build
// uses, such as the Nix driver or storage, is closed under it. Requests
// that need a build after Close get UNAVAILABLE.
func (b *Builder) Close() error {
	b.cancel()
	b.flights.close()
	return nil
}

// ManifestByTag returns the manifest of name:tag in format f, building the
// image if no cache has it, and until when the answer may be reused
// without asking again: the registry keeps its own tag map for that long.
// A pinned image or a moving tag is fresh for MovingTagTTL from the moment
// its name was identified (a moving tag no longer than its build's
// MovingTagTTL); the zero time means ask every time.
func (b *Builder) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	m, fresh, err := b.image(ctx, name, tag)
	if err != nil {
		return storage.BlobInfo{}, time.Time{}, err
	}
	info, ok := m.Pick(f)
	if !ok {
		return storage.BlobInfo{}, time.Time{}, errcode.New(errcode.ManifestUnknown, "no manifest for %s:%s", name, tag)
	}
	return info, fresh, nil
}

// knownID is the remembered answer of Source.Identify for id, if it is
// younger than MovingTagTTL.
func (b *Builder) knownID(id imageID, now time.Time) (identity, bool) {
	v, ok := b.ids.Get(id)
	return v, ok && now.Sub(v.at) < b.opts.MovingTagTTL
}

// cached is the in-memory image of key, if it is pinned or was built
// within MovingTagTTL.
func (b *Builder) cached(key string, now time.Time) (cacheEntry, bool) {
	e, ok := b.cache.Get(key)
	if !ok || !(e.pinned || now.Sub(e.at) < b.opts.MovingTagTTL) {
		return cacheEntry{}, false
	}
	return e, true
}

// Image returns every stored manifest of name:tag.
func (b *Builder) Image(ctx context.Context, name, tag string) (source.Manifests, error) {
	m, _, err := b.image(ctx, name, tag)
	return m, err
}

// image is Image, and until when its answer is fresh (see ManifestByTag).
func (b *Builder) image(ctx context.Context, name, tag string) (source.Manifests, time.Time, error) {
	if b.opts.Source == nil {
		m, err := b.storedTag(ctx, name, tag)
		return m, time.Time{}, err
	}
	id, err := b.identify(name, tag)
	if err != nil {
		return nil, time.Time{}, err
	}
	if e, ok := b.known(ctx, id); ok {
		return e.manifests, b.freshUntil(id, e), nil
	}
	if err := b.recentFailure(id.Key, name, tag); err != nil {
		return nil, time.Time{}, err
	}
	f, _, err := b.startFlight(ctx, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	var pullWait <-chan struct{}
	if b.opts.PullWait > 0 {
		fired := make(chan struct{})
		timer := time.AfterFunc(b.opts.PullWait, func() { close(fired) })
		defer timer.Stop()
		pullWait = fired
	}
	m, err, timedOut := b.flights.wait(ctx, f, pullWait)
	if timedOut {
		return nil, time.Time{}, stillBuilding(f.build, b.now())
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	// The build was recorded with its own time; a moving tag stays fresh
	// for MovingTagTTL from there.
	return m, b.freshUntil(id, cacheEntry{pinned: id.Pinned, at: b.now()}), nil
}

// known is the image of id without building: from memory, from a pinned
// record, or from a recent record of its moving tag (another instance on
// this storage, or this one before a restart, built it recently enough).
func (b *Builder) known(ctx context.Context, id identity) (cacheEntry, bool) {
	e, ok := b.cached(id.Key, b.now())
	b.opts.Metrics.CacheLookup(metrics.CacheMemory, ok)
	if ok {
		return e, true
	}
	if id.Pinned {
		m, err := b.pinnedRecord(ctx, id.Key)
		b.opts.Metrics.CacheLookup(metrics.CachePinned, err == nil)
		if err != nil {
			return cacheEntry{}, false
		}
		e = cacheEntry{manifests: m, pinned: true, at: b.now()}
	} else {
		m, at, ok := b.recentTagRecord(ctx, id.Name, id.Tag)
		b.opts.Metrics.CacheLookup(metrics.CacheTag, ok)
		if !ok {
			return cacheEntry{}, false
		}
		e = cacheEntry{manifests: m, at: at}
	}
	b.cache.Add(id.Key, e)
	return e, true
}

// startFlight joins the build of id, or starts it: under the lease (one
// build across instances) and the build slots, recorded in the build list.
// started says this call started it.
func (b *Builder) startFlight(ctx context.Context, id identity) (*flight, bool, error) {
	name, tag := id.Name, id.Tag
	who, limited := caller.FromContext(ctx)
	// Refreshing an image built before (a moving tag past its time in
	// memory) is not a new build a client chose: anyone may cause it, at
	// most once per image and MovingTagTTL. Only a never-built image
	// needs credentials and a build of the client's rate.
	newImage := limited && !b.builtBefore(ctx, id)
	return b.flights.join(ctx, b.base, id.Key,
		func() (*build, error) {
			if limited {
				if err := b.admit(ctx, who, name, tag, newImage); err != nil {
					return nil, err
				}
			}
			rec := newBuild(name, tag, b.sourceKind(id.Request), requestid.FromContext(ctx), b.now())
			b.builds.add(rec)
			fields := logrus.Fields{"image": name, "tag": tag, "build_id": rec.id()}
			if limited {
				fields["client"] = who.Key()
			}
			requestid.Logger(ctx, b.log).WithFields(fields).Info("build queued")
			return rec, nil
		},
		func(ctx context.Context, rec *build) (source.Manifests, error) {
			m, err := b.runFlight(ctx, id, rec)
			if limited {
				b.limits.done(who)
			}
			rec.finish(b.now(), m, err)
			b.builds.done(rec)
			b.opts.Metrics.BuildEnded(rec.snapshot(false).Source, buildResult(ctx, err))
			return m, err
		})
}

// runFlight is one build of id: the failure memory checked again (a
// failure may have been remembered since the request looked), the lease,
// the build, and what a stopped build tells the clients still waiting.
func (b *Builder) runFlight(ctx context.Context, id identity, rec *build) (source.Manifests, error) {
	if err := b.recentFailure(id.Key, id.Name, id.Tag); err != nil {
		return nil, err
	}
	m, err := b.leased(ctx, id.Key, id.Name, id.Tag, id.Pinned, func(ctx context.Context) (source.Manifests, error) {
		return b.build(ctx, id.Request, rec)
	})
	if err != nil && b.base.Err() != nil {
		if e, ok := errcode.As(err); !ok || !e.Code.ClientCaused() {
			// Whatever stopped it, the clients still waiting are told
			// the truth: try again, here after a restart or at another
			// instance.
			err = errcode.Wrap(errcode.Unavailable, err, "the registry is shutting down: try again")
		}
	}
	b.rememberFailure(id.Key, err)
	return m, err
}

// admit lets who start a build of name:tag, or says why not: a new
// image needs credentials who lacks, or one of who's limits is reached
// (the rate counts new images only). A refusal is logged and counted.
func (b *Builder) admit(ctx context.Context, who caller.Caller, name, tag string, newImage bool) error {
	limit, err := "", error(nil)
	if newImage && !who.MayBuild {
		limit = limitAuth
		err = errcode.New(errcode.Unauthorized,
			"%s:%s is not built yet, and on this registry only users with credentials start builds; anyone may pull images already built: log in (docker login) and pull again",
			name, tag)
	} else {
		limit, err = b.limits.admit(who, b.now(), newImage)
	}
	if err != nil {
		requestid.Logger(ctx, b.log).WithFields(logrus.Fields{
			"image": name, "tag": tag, "client": who.Key(), "limit": limit,
		}).Warn("build refused")
		b.opts.Metrics.Refused(limit)
	}
	return err
}

// builtBefore says whether id's image was built before, here or by
// another instance on this storage, however long ago.
func (b *Builder) builtBefore(ctx context.Context, id identity) bool {
	if _, ok := b.cache.Peek(id.Key); ok {
		return true
	}
	_, err := b.opts.Storage.GetObject(ctx, tagObject(id.Name, id.Tag))
	return err == nil
}

// buildResult is how a build ended, for metrics: ctx is the flight's
// own context, which ends when the builder closes or the lease is lost.
func buildResult(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return metrics.BuildSucceeded
	case ctx.Err() != nil:
		return metrics.BuildStopped
	}
	if e, ok := errcode.As(err); ok && e.Code.ClientCaused() {
		return metrics.BuildFailed
	}
	return metrics.BuildError
}

// sourceKind names the source of a request for the build list: the first
// part of its key ("nix", "command", "layout"), when the key has one.
func (b *Builder) sourceKind(req source.Request) string {
	if kind, _, ok := strings.Cut(req.Key, "|"); ok && !strings.ContainsAny(kind, "/:") {
		switch kind {
		case "command", "layout":
			return kind
		}
	}
	return "nix"
}

// stillBuilding is the error of a pull that waited PullWait for its
// build: a 4xx, so that docker pull prints it, saying the build goes on.
func stillBuilding(rec *build, now time.Time) error {
	s := rec.snapshot(false)
	e := errcode.New(errcode.BuildInProgress,
		"%s:%s is still being built (%s so far, now %s); the build goes on: pull again later, or follow it at /builds/%s",
		s.Image, s.Tag, now.Sub(s.QueuedAt).Round(time.Second), s.State, s.ID)
	e.Detail = map[string]string{"build": s.ID}
	return e
}

// Start starts building name:tag as a pull would (the same checks,
// caches, coalescing and bounds) without waiting for it, and returns the
// build's status. An image already built is not built again: its status
// is done, with its manifest, and built is true. A build running is
// joined, not repeated.
func (b *Builder) Start(ctx context.Context, name, tag string) (st Status, built bool, err error) {
	if b.opts.Source == nil {
		return Status{}, false, errcode.New(errcode.Unsupported, "this registry builds nothing")
	}
	id, err := b.identify(name, tag)
	if err != nil {
		return Status{}, false, err
	}
	if e, ok := b.known(ctx, id); ok {
		st := Status{Image: name, Tag: tag, Source: b.sourceKind(id.Request), State: Done}
		if info, ok := e.manifests.Pick(manifest.OCI); ok {
			st.ManifestDigest = string(info.Digest)
		}
		return st, true, nil
	}
	if err := b.recentFailure(id.Key, name, tag); err != nil {
		return Status{}, false, err
	}
	f, _, err := b.startFlight(ctx, id)
	if err != nil {
		return Status{}, false, err
	}
	return f.build.snapshot(false), false, nil
}

// Builds lists the builds of this instance, newest first: those queued
// or running, and the last 100 finished.
func (b *Builder) Builds() []Status { return b.builds.list() }

// Build is the status of one build, with the end of its output.
func (b *Builder) Build(id string) (Status, bool) {
	rec, ok := b.builds.get(id)
	if !ok {
		return Status{}, false
	}
	return rec.snapshot(true), true
}

// freshUntil is how long an answer for a name identified as id, served
// from e, may be reused: until the name must be identified again, and for
// a moving tag no longer than its build stays fresh.
func (b *Builder) freshUntil(id identity, e cacheEntry) time.Time {
	if b.opts.MovingTagTTL <= 0 || id.at.IsZero() {
		return time.Time{}
	}
	until := id.at.Add(b.opts.MovingTagTTL)
	if !e.pinned {
		if built := e.at.Add(b.opts.MovingTagTTL); built.Before(until) {
			until = built
		}
	}
	return until
}

// rememberFailure remembers err for FailedBuildTTL if the client caused
// it (a 4xx): asking again the same way would fail the same way. A server
// fault, a stopped build or a success is not remembered.
func (b *Builder) rememberFailure(key string, err error) {
	if b.opts.FailedBuildTTL <= 0 || err == nil {
		return
	}
	if e, ok := errcode.As(err); ok && e.Code.ClientCaused() {
		b.failures.Add(key, failure{err: err, at: b.now()})
	}
}

// recentFailure is the error of the image's last build if it failed
// because of what the client asked for less than FailedBuildTTL ago.
func (b *Builder) recentFailure(key, name, tag string) error {
	if b.opts.FailedBuildTTL <= 0 {
		return nil
	}
	f, ok := b.failures.Get(key)
	if !ok {
		return nil
	}
	age := b.now().Sub(f.at)
	if age >= b.opts.FailedBuildTTL {
		return nil
	}
	b.log.WithFields(logrus.Fields{
		"image": name, "tag": tag, "age_ms": age.Milliseconds(), "ttl_s": int64(b.opts.FailedBuildTTL.Seconds()),
	}).WithError(f.err).Info("build failed recently: answering its error without building again")
	return f.err
}

// identify asks the source what name:tag is. The answer is remembered for
// MovingTagTTL, the staleness already accepted for moving tags: a source's
// answer may change (a layout rebuilt in place gets a new key). An answer
// not remembered has a zero time.
func (b *Builder) identify(name, tag string) (identity, error) {
	id := imageID{name, tag}
	now := b.now()
	if v, ok := b.knownID(id, now); ok {
		return v, nil
	}
	req, err := b.opts.Source.Identify(name, tag)
	if err != nil {
		return identity{}, err
	}
	v := identity{Request: req}
	if b.opts.MovingTagTTL > 0 {
		v.at = now
		b.ids.Add(id, v)
	}
	return v, nil
}

// build runs one build under the global bound, reporting to rec, and
// records its result. A build stopped because the server is shutting
// down is logged at info: nothing went wrong. A build past BuildTimeout
// is BUILD_FAILED naming the limit.
func (b *Builder) build(ctx context.Context, req source.Request, rec *build) (source.Manifests, error) {
	key, name, tag, pinned := req.Key, req.Name, req.Tag, req.Pinned
	log := requestid.Logger(ctx, b.log).WithFields(logrus.Fields{"image": name, "tag": tag, "build_id": rec.id()})
	// Internal work (no caller) queues as a client of its own.
	who, _ := caller.FromContext(ctx)
	if err := b.slots.acquire(ctx, who.Key()); err != nil {
		err := errcode.Wrap(errcode.Unavailable, err, "gave up waiting for a build slot for %s:%s", name, tag)
		log.WithError(err).WithField("reason", b.stopReason(ctx)).Info("build stopped before it started")
		return nil, err
	}
	defer b.slots.release()

	bctx, cancel := context.WithTimeout(source.WithProgress(ctx, rec), b.opts.BuildTimeout)
	defer cancel()
	start := b.now()
	rec.started(start)
	queued := start.Sub(rec.snapshot(false).QueuedAt)
	b.opts.Metrics.BuildPhase(metrics.PhaseQueued, queued)
	log.WithField("queued_ms", queued.Milliseconds()).Info("build started")
	m, fromCache, err := b.planAndBuild(bctx, log, req)
	b.opts.Metrics.BuildPhase(metrics.PhaseTotal, b.now().Sub(start))
	if err != nil {
		log = log.WithField("duration_ms", b.now().Sub(start).Milliseconds())
		if ctx.Err() != nil {
			log.WithError(err).WithField("reason", b.stopReason(ctx)).Info("build stopped")
			return nil, err
		}
		if _, ok := errcode.As(err); !ok && errors.Is(bctx.Err(), context.DeadlineExceeded) {
			err = errcode.Wrap(errcode.BuildFailed, err,
				"building %s:%s took longer than %s, the registry's limit for one build, and was stopped: "+
					"asking again will not help unless the registry's operator raises NIX_TIMEOUT, which this limit follows",
				name, tag, b.opts.BuildTimeout)
		}
		log.WithError(err).Warn("build failed")
		return nil, err
	}
	st := rec.snapshot(false)
	log.WithFields(logrus.Fields{
		"duration_ms": b.now().Sub(start).Milliseconds(), "from_cache": fromCache,
		"layers": st.LayersTotal, "bytes_compressed": st.BytesCompressed,
	}).Info("image ready")
	now := b.now()
	// Records are written with a context of their own: a build that
	// finished is worth remembering even if every client has gone.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if pinned {
		if err := source.PutRecord(rctx, b.opts.Storage, pinnedPrefix+source.Hash(key), source.NewRecord(m, true, now)); err != nil {
			log.WithError(err).Error("persisting pinned image record")
		}
	}
	if err := source.PutRecord(rctx, b.opts.Storage, tagObject(name, tag), source.NewRecord(m, pinned, now)); err != nil {
		log.WithError(err).Error("persisting tag record")
	}
	b.cache.Add(key, cacheEntry{manifests: m, pinned: pinned, at: now})
	return m, nil
}

// planAndBuild resolves the request and builds the plan, unless a plan
// with the same content key was built before: then its record answers,
// with no build (a moving tag whose packages did not change), and
// fromCache says so.
func (b *Builder) planAndBuild(ctx context.Context, log logrus.FieldLogger, req source.Request) (m source.Manifests, fromCache bool, err error) {
	start := b.now()
	plan, err := b.opts.Source.Plan(ctx, req)
	b.opts.Metrics.BuildPhase(metrics.PhasePlan, b.now().Sub(start))
	if err != nil {
		return nil, false, err
	}
	// What the plan holds (the GC roots of a Nix plan's derivations) is
	// needed until it is built, or found built before.
	defer func() {
		if err := plan.Release(); err != nil {
			log.WithError(err).Warn("releasing the plan")
		}
	}()
	record := planPrefix + source.Hash(plan.Key)
	if plan.Pinned {
		if m, ok := b.builtPlan(ctx, record); ok {
			log.Debug("plan built before: its image is reused")
			return m, true, nil
		}
	}
	start = b.now()
	m, err = b.opts.Source.Build(ctx, plan)
	b.opts.Metrics.BuildPhase(metrics.PhaseBuild, b.now().Sub(start))
	if err != nil {
		return nil, false, err
	}
	if plan.Pinned {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := source.PutRecord(rctx, b.opts.Storage, record, source.NewRecord(m, true, b.now())); err != nil {
			log.WithError(err).Warn("persisting plan record")
		}
	}
	return m, false, nil
}

// builtPlan is the image a pinned plan was built into before, if its
// record and every blob it names are still stored.
func (b *Builder) builtPlan(ctx context.Context, record string) (source.Manifests, bool) {
	hit := false
	defer func() { b.opts.Metrics.CacheLookup(metrics.CachePlan, hit) }()
	r, err := source.GetRecord(ctx, b.opts.Storage, record)
	if err != nil {
		return nil, false
	}
	m, err := r.Manifests()
	if err != nil || source.Stored(ctx, b.opts.Storage, m) != nil {
		return nil, false
	}
	hit = true
	return m, true
}

// stopReason says why a build's context ended: the builder was closed,
// or another instance took the build's lease.
func (b *Builder) stopReason(ctx context.Context) string {
	switch cause := context.Cause(ctx); {
	case b.base.Err() != nil:
		return "the server is shutting down"
	case cause != nil && !errors.Is(cause, context.Canceled):
		return cause.Error()
	default:
		return "stopped"
	}
}

func (b *Builder) pinnedRecord(ctx context.Context, key string) (source.Manifests, error) {
	r, err := source.GetRecord(ctx, b.opts.Storage, pinnedPrefix+source.Hash(key))
	if err != nil {
		return nil, err
	}
	m, err := r.Manifests()
	if err != nil {
		return nil, err
	}
	if err := source.Stored(ctx, b.opts.Storage, m); err != nil {
		return nil, fmt.Errorf("pinned record: %w", err)
	}
	return m, nil
}

// recentTagRecord returns the tag record of name:tag if it was written
// within MovingTagTTL and the manifests it names are stored.
func (b *Builder) recentTagRecord(ctx context.Context, name, tag string) (source.Manifests, time.Time, bool) {
	if b.opts.MovingTagTTL <= 0 {
		return nil, time.Time{}, false
	}
	r, err := source.GetRecord(ctx, b.opts.Storage, tagObject(name, tag))
	if err != nil || b.now().Sub(r.BuiltAt) >= b.opts.MovingTagTTL {
		return nil, time.Time{}, false
	}
	m, err := r.Manifests()
	if err != nil || source.Stored(ctx, b.opts.Storage, m) != nil {
		return nil, time.Time{}, false
	}
	return m, r.BuiltAt, true
}

// storedTag serves an image recorded with StoreTag.
func (b *Builder) storedTag(ctx context.Context, name, tag string) (source.Manifests, error) {
	r, err := source.GetRecord(ctx, b.opts.Storage, tagObject(name, tag))
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidName) {
		return nil, errcode.New(errcode.ManifestUnknown, "unknown manifest %s:%s", name, tag)
	}
	if err != nil {
		return nil, fmt.Errorf("reading tag %s:%s: %w", name, tag, err)
	}
	return r.Manifests()
}

// Tags lists the tags built or recorded for name that its source still
// accepts: a tag the source now refuses (a record left by an older
// configuration, such as any tag of a local package set, which has only
// "latest") is left out, since pulling it would fail. A tag the source
// accepts may still fail to build (a branch deleted since); the list is
// what was pulled, not every version the source has.
func (b *Builder) Tags(ctx context.Context, name string) ([]string, error) {
	tags, err := listTags(ctx, b.opts.Storage, name)
	if err != nil || b.opts.Source == nil {
		return tags, err
	}
	kept := tags[:0]
	for _, tag := range tags {
		if _, err := b.identify(name, tag); err != nil {
			if e, ok := errcode.As(err); ok && e.Code.Status() < 500 {
				continue // refused
			}
			// A fault of the source's own is no reason to hide the tag.
			b.log.WithError(err).WithFields(logrus.Fields{"image": name, "tag": tag}).Warn("checking a recorded tag")
		}
		kept = append(kept, tag)
	}
	return kept, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
