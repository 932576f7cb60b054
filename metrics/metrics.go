// Package metrics is nixport's Prometheus instrumentation: the one place
// where every nixport_* metric is defined, with its help text and its
// bounded label values, and the handler that exposes them with the Go and
// process collectors.
//
// The packages that do the work (web, builder, the sources, storage through
// a wrapper) call small methods here instead of touching Prometheus types,
// so a metric's name and labels cannot drift between the places that feed
// it. Every method is safe on a nil *Metrics, which records nothing: a
// component built without metrics (a test, a subcommand) needs no stub.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Cache levels, the values of nixport_cache_lookups_total's level label:
// from the front of a pull to the back.
const (
	CacheTagMap   = "tag_map"  // web: a fresh tag → manifest answer
	CacheMemory   = "memory"   // builder: the in-memory image LRU
	CachePinned   = "pinned"   // builder: the stored record of a pinned image
	CacheTag      = "tag"      // builder: a recent stored record of a moving tag
	CachePlan     = "plan"     // builder: a plan with the same content built before
	CacheManifest = "manifest" // Nix source: the stored manifests of a resolution
	CacheLayer    = "layer"    // Nix source: a layer made before from the same paths
)

var cacheLevels = []string{CacheTagMap, CacheMemory, CachePinned, CacheTag, CachePlan, CacheManifest, CacheLayer}

// Build results, the values of nixport_builds_total's result label.
const (
	BuildSucceeded = "succeeded" // an image was built (or a built plan reused)
	BuildFailed    = "failed"    // what the client asked for cannot be built (a 4xx)
	BuildError     = "error"     // a fault of the server or its storage
	BuildStopped   = "stopped"   // the server shut down, or another instance took over
)

// Build phases, the values of nixport_build_duration_seconds's phase label.
const (
	PhaseQueued = "queued" // from the request to a free build slot
	PhasePlan   = "plan"   // the source's resolution (Nix: one evaluation)
	PhaseBuild  = "build"  // building the plan: realise, archive, store
	PhaseTotal  = "total"  // from the slot to the image (plan and build)
)

// Metrics holds nixport's collectors in a registry of their own (not the
// global one), so that two servers in one process, as in tests, do not
// collide.
type Metrics struct {
	registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	blobBytes    prometheus.Counter

	builds        *prometheus.CounterVec
	buildDuration *prometheus.HistogramVec

	cacheHits, cacheMisses map[string]prometheus.Counter

	storageOps *prometheus.CounterVec

	refusals *prometheus.CounterVec

	nixStoreBytes prometheus.Gauge
	nixGCRuns     *prometheus.CounterVec
	nixGCFreed    prometheus.Counter

	blobGCRuns         *prometheus.CounterVec
	blobGCDeletedBlobs prometheus.Counter
	blobGCDeletedBytes prometheus.Counter
}

// New makes the collectors and registers them, with Go's runtime and the
// process's collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_http_requests_total",
			Help: "HTTP requests answered, by route (an endpoint's name, never a path), method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nixport_http_request_duration_seconds",
			Help: "Time from a request's arrival to the end of its answer, by route. A pull that waits for a build includes the build.",
			// From a warm manifest (well under a millisecond) to a pull
			// waiting out a long build.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"route"}),
		blobBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixport_blob_bytes_served_total",
			Help: "Bytes of blobs (layers, configs) sent to clients; redirects to signed URLs send none.",
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_builds_total",
			Help: "Builds that ended, by source (nix, command, layout) and result (succeeded, failed: the client's request cannot be built, error: a server fault, stopped).",
		}, []string{"source", "result"}),
		buildDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nixport_build_duration_seconds",
			Help:    "Time builds spent in each phase: queued (waiting for a build slot), plan, build, and total (plan and build).",
			Buckets: prometheus.ExponentialBucketsRange(0.05, 3600, 16),
		}, []string{"phase"}),
		storageOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_storage_operations_total",
			Help: "Operations on the storage backend, by backend, operation and result (ok, not_found, exists, held, mismatch, recent, error).",
		}, []string{"backend", "op", "result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_refusals_total",
			Help: "Requests refused by access control or a limit, by limit (auth: missing or wrong credentials, build_rate, client_builds, image_size).",
		}, []string{"limit"}),
		nixStoreBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixport_nix_store_bytes",
			Help: "Size of the Nix store (the sum of its valid paths' NAR sizes), as last measured.",
		}),
		nixGCRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_nix_gc_runs_total",
			Help: "Garbage collections of the Nix store nixport ran, by result (ok, error).",
		}, []string{"result"}),
		nixGCFreed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixport_nix_gc_freed_bytes_total",
			Help: "Bytes the Nix store's garbage collections freed.",
		}),
		blobGCRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixport_gc_runs_total",
			Help: "Garbage collections of storage's blobs this process ran to their end, by result (ok, error); dry runs are not counted.",
		}, []string{"result"}),
		blobGCDeletedBlobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixport_gc_deleted_blobs_total",
			Help: "Blobs the garbage collections of storage deleted.",
		}),
		blobGCDeletedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixport_gc_deleted_bytes_total",
			Help: "Bytes of the blobs the garbage collections of storage deleted.",
		}),
	}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nixport_cache_lookups_total",
		Help: "Cache lookups on the way to an image, by level (tag_map, memory, pinned, tag, plan, manifest, layer) and result (hit, miss).",
	}, []string{"level", "result"})
	// Bound once: a lookup on the hot path then costs an atomic add.
	m.cacheHits = make(map[string]prometheus.Counter, len(cacheLevels))
	m.cacheMisses = make(map[string]prometheus.Counter, len(cacheLevels))
	for _, l := range cacheLevels {
		m.cacheHits[l] = lookups.WithLabelValues(l, "hit")
		m.cacheMisses[l] = lookups.WithLabelValues(l, "miss")
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration, m.blobBytes,
		m.builds, m.buildDuration, lookups, m.storageOps, m.refusals,
		m.nixStoreBytes, m.nixGCRuns, m.nixGCFreed,
		m.blobGCRuns, m.blobGCDeletedBlobs, m.blobGCDeletedBytes,
	)
	// Both results exist from the start, so a rate over them does not
	// wait for the first failure.
	m.blobGCRuns.WithLabelValues("ok")
	m.blobGCRuns.WithLabelValues("error")
	return m
}

// Handler serves the registry in Prometheus's text format (or the
// protobuf and OpenMetrics formats a scraper may ask for).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		// A failing collector costs its series, not the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// BuildStates registers gauges of the builds now queued and running,
// read from counts at every scrape: the builder's own list is the truth,
// so there is no second count to drift from it. Call it once.
func (m *Metrics) BuildStates(counts func() (queued, running int)) {
	if m == nil {
		return
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nixport_builds_queued",
			Help: "Builds waiting for a build slot (NIXPORT_MAX_BUILDS) or for another instance's lease.",
		}, func() float64 { q, _ := counts(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nixport_builds_running",
			Help: "Builds holding a build slot.",
		}, func() float64 { _, r := counts(); return float64(r) }),
	)
}

// Request records one answered HTTP request. route is the endpoint's name
// (bounded by the caller), method any request method (folded here to the
// known ones), code the status sent, bytes what the body held.
func (m *Metrics) Request(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(route, knownMethod(method), codeLabel(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// BlobBytes records bytes of a blob sent to a client.
func (m *Metrics) BlobBytes(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.blobBytes.Add(float64(n))
}

// codeLabels are the status codes as label values, made once: a request
// then allocates nothing to be counted.
var codeLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// knownMethod folds a client's method into a bounded set: a label value
// must not be whatever a client sends.
func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// CacheLookup records a lookup at one of the cache levels (Cache*).
func (m *Metrics) CacheLookup(level string, hit bool) {
	if m == nil {
		return
	}
	c := m.cacheMisses[level]
	if hit {
		c = m.cacheHits[level]
	}
	if c != nil {
		c.Inc()
	}
}

// BuildEnded records a build that ended with result (Build*), from
// source (nix, command, layout).
func (m *Metrics) BuildEnded(source, result string) {
	if m == nil {
		return
	}
	m.builds.WithLabelValues(source, result).Inc()
}

// BuildPhase records the time a build spent in a phase (Phase*).
func (m *Metrics) BuildPhase(phase string, d time.Duration) {
	if m == nil {
		return
	}
	m.buildDuration.WithLabelValues(phase).Observe(d.Seconds())
}

// Refusal limits, the values of nixport_refusals_total's limit label.
var refusalLimits = map[string]bool{"auth": true, "build_rate": true, "client_builds": true, "image_size": true}

// Refused records a request refused by limit (auth, build_rate,
// client_builds, image_size); other names are not counted.
func (m *Metrics) Refused(limit string) {
	if m == nil || !refusalLimits[limit] {
		return
	}
	m.refusals.WithLabelValues(limit).Inc()
}

// NixStore returns what the Nix store's collector reports to (its
// nixgc.Observer): the store's size and what each collection freed.
func (m *Metrics) NixStore() NixStoreObserver { return NixStoreObserver{m} }

// NixStoreObserver hears the Nix store's collector.
type NixStoreObserver struct{ m *Metrics }

// StoreBytes records the store's measured size.
func (o NixStoreObserver) StoreBytes(n int64) { o.m.NixStoreBytes(n) }

// Collected records one collection.
func (o NixStoreObserver) Collected(freed int64, _ time.Duration, err error) {
	o.m.NixCollected(freed, err)
}

// NixStoreBytes records the Nix store's measured size.
func (m *Metrics) NixStoreBytes(n int64) {
	if m == nil {
		return
	}
	m.nixStoreBytes.Set(float64(n))
}

// NixCollected records one garbage collection of the Nix store and what
// it freed.
func (m *Metrics) NixCollected(freed int64, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.nixGCRuns.WithLabelValues("error").Inc()
	} else {
		m.nixGCRuns.WithLabelValues("ok").Inc()
	}
	if freed > 0 {
		m.nixGCFreed.Add(float64(freed))
	}
}

// BlobGCRun records one garbage collection of storage's blobs that ran to
// its end (err nil) or failed.
func (m *Metrics) BlobGCRun(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.blobGCRuns.WithLabelValues("error").Inc()
	} else {
		m.blobGCRuns.WithLabelValues("ok").Inc()
	}
}

// BlobGCDeleted records one blob of size bytes a collection deleted.
func (m *Metrics) BlobGCDeleted(size int64) {
	if m == nil {
		return
	}
	m.blobGCDeletedBlobs.Inc()
	if size > 0 {
		m.blobGCDeletedBytes.Add(float64(size))
	}
}
