// Package web is every HTTP surface of nixport: the read side of the OCI
// distribution API under /v2/, the build status API under /api/ and its
// pages under /builds, and the documentation site at /.
//
// It exists so that HTTP concerns (routing, validation of names, tags and
// digests, content negotiation, error bodies, request logging) live in one
// place, while what an image is and where bytes are kept stay behind small
// interfaces: Images and Builds (the builder) and storage.Backend. Routing
// is a small hand-written matcher on the standard library: registry names
// hold any number of path components, so the endpoint is decided by the
// path's suffix.
//
// Every error a registry or API client sees is written by writeError as
// an OCI error body; every request passes the one chain of middleware
// (request id, access log, recovery, bounds: middleware.go) and gets one
// log line. Server is the one HTTP server: net/http, with TLS when
// configured.
package web

import (
	// go-digest needs the hash implementations linked in, else it panics
	// ("sha256 not available") on the first digest it validates.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/push"
	"github.com/nixport/nixport/storage"
)

// Options configure New.
type Options struct {
	// Storage holds the blobs (manifests included) that are served.
	Storage storage.Backend
	// Images resolves tags to manifests, building images as needed.
	Images Images
	// Log receives one line per request. Nil discards.
	Log logrus.FieldLogger
	// WebDir, if set, is a directory served at / instead of the embedded
	// docs site (Nixery's WEB_DIR).
	WebDir string
	// Checks are what /readyz runs: the instance is ready when all pass.
	Checks []Check
	// Instance, if set, says what /readyz reports of the Nix version and
	// the package source.
	Instance func() Instance
	// Builds, if set, serves the build status API (/api/builds) and the
	// build pages (/builds); without it they are not found.
	Builds Builds
	// Metrics, if set, counts every request. It is served at /metrics
	// when ServeMetrics is true (else elsewhere, or not at all).
	Metrics      *metrics.Metrics
	ServeMetrics bool
	// Auth, if set, checks the credentials clients send; AuthMode says
	// which requests need them (none when empty).
	Auth     Verifier
	AuthMode auth.Mode
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, for per-client limits.
	TrustedProxies []netip.Prefix
	// Push, if set, takes the push half of the API for the names under its
	// namespaces, which never reach Images; every other name stays
	// read-only. Its owner closes it.
	Push *push.Registry
}

// handler is the http.Handler returned by New.
type handler struct {
	storage   storage.Backend
	images    Images
	builds    Builds // nil: no build API or pages
	log       logrus.FieldLogger
	manifests *manifestCache
	tags      *tagCache
	site      *site
	pages     *buildTemplates // with builds
	serve     handlerFunc     // the middleware chain around route
	checks    []Check
	metrics   *metrics.Metrics
	// metricsHandler serves /metrics; nil: not found here.
	metricsHandler http.Handler
	push           *push.Registry // nil: no push namespaces
	verifier       Verifier       // nil: credentials are not checked
	authMode       auth.Mode
	trustedProxies []netip.Prefix
	draining       atomic.Bool // a shutdown has begun: /readyz answers 503
	// logger and logBase are log's logger and fields when log is a
	// *logrus.Logger or *logrus.Entry: request lines are built on them
	// directly (see logRequest); nil for another FieldLogger.
	logger  *logrus.Logger
	logBase logrus.Fields

	// ready is the state of the checks, and what /readyz says of the
	// instance (health.go).
	ready *readiness
}

// New returns the handler of the whole HTTP surface.
func New(opts Options) (http.Handler, error) {
	if opts.Storage == nil {
		return nil, errors.New("web: no storage backend")
	}
	if opts.Images == nil {
		return nil, errors.New("web: no image source")
	}
	log := orDiscard(opts.Log)
	s, err := newSite(opts.WebDir)
	if err != nil {
		return nil, fmt.Errorf("web: docs site: %w", err)
	}
	var pages *buildTemplates
	if opts.Builds != nil {
		if pages, err = newBuildTemplates(); err != nil {
			return nil, fmt.Errorf("web: build pages: %w", err)
		}
	}
	h := &handler{
		storage:   opts.Storage,
		images:    opts.Images,
		builds:    opts.Builds,
		log:       log,
		manifests: newManifestCache(defaultManifestCacheBytes),
		tags:      newTagCache(defaultTagCacheEntries),
		site:      s,
		pages:     pages,
	}
	h.setLog(log)
	h.checks = opts.Checks
	h.metrics = opts.Metrics
	h.push = opts.Push
	h.verifier, h.authMode, h.trustedProxies = opts.Auth, opts.AuthMode, opts.TrustedProxies
	if h.authMode == "" {
		h.authMode = auth.None
	}
	if h.authMode != auth.None && h.verifier == nil {
		return nil, fmt.Errorf("web: authentication mode %s needs a verifier", h.authMode)
	}
	if opts.Metrics != nil && opts.ServeMetrics {
		h.metricsHandler = opts.Metrics.Handler()
	}
	h.serve = h.chain(h.route)
	h.ready = newReadiness(h.checks, opts.Instance)
	return h, nil
}

// Header values shared by every response. Assigning a shared slice to a
// header saves an allocation per request; net/http only reads it.
var (
	apiVersionValue = []string{"registry/2.0"}
	jsonType        = []string{"application/json"}
	baseLength      = []string{"2"}
)

// serveRegistry answers everything under /v2: the names under the push
// namespaces through servePush, every other name read-only.
func (h *handler) serveRegistry(w *responseWriter, r *http.Request) {
	w.Header()["Docker-Distribution-Api-Version"] = apiVersionValue
	if !isReadMethod(r.Method) && !(h.push != nil && isWriteMethod(r.Method)) {
		writeError(w, errcode.New(errcode.Unsupported, "method %s is not supported: this registry is read-only", truncate(r.Method)))
		return
	}
	rt, err := parseRoute(r.URL.Path)
	if err != nil {
		writeError(w, err)
		return
	}
	w.image = rt.name
	w.route = rt.kind.name()
	switch {
	case rt.kind == routeBase && !isReadMethod(r.Method):
		writeError(w, errcode.New(errcode.Unsupported, "method %s is not supported on /v2/", r.Method))
		return
	case rt.kind != routeBase && h.push.Owns(rt.name):
		h.servePush(w, r, rt)
		return
	case !isReadMethod(r.Method) || rt.kind == routeUploads || rt.kind == routeUpload:
		writeError(w, errcode.New(errcode.Unsupported, "%s is built on demand and read-only: %s", rt.name, h.pushHint()))
		return
	}
	switch rt.kind {
	case routeBase:
		serveBase(w)
	case routeManifest:
		h.serveManifest(w, r, rt)
	case routeBlob:
		h.serveBlob(w, r, rt)
	case routeTags:
		h.serveTags(w, r, rt)
	case routeReferrers:
		h.serveReferrers(w, r, rt)
	}
}

var baseBody = []byte("{}")

// serveBase answers GET /v2/: the API version check clients start with.
func serveBase(w *responseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = baseLength
	w.WriteHeader(http.StatusOK)
	if !w.head {
		w.Write(baseBody)
	}
}

// setLog makes log the handler's logger.
func (h *handler) setLog(log logrus.FieldLogger) {
	h.log, h.logger, h.logBase = log, nil, nil
	switch l := log.(type) {
	case *logrus.Logger:
		h.logger = l
	case *logrus.Entry:
		h.logger, h.logBase = l.Logger, l.Data
	}
}

// orDiscard is log, or a logger that writes nothing when log is nil.
func orDiscard(log logrus.FieldLogger) logrus.FieldLogger {
	if log != nil {
		return log
	}
	discard := logrus.New()
	discard.Out = io.Discard
	return discard
}
