package nixsource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/bytesize"
	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/layers"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/metrics"
	"github.com/nixport/nixport/nix"
	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/nixsource/archive"
	"github.com/nixport/nixport/storage"
)

// pipelineVersion is part of every cache key of the Nix source: bump it
// when a change to layering, archiving or rendering changes what the same
// closure produces. nixport-3: provenance labels in the config, and an
// SBOM with every image.
const pipelineVersion = "nixport-3"

// Persisted caches of the Nix source (see records.go for the others).
const (
	layerRecordPrefix    = "layers/"
	manifestRecordPrefix = "manifests/"
)

// Options configure the Nix source.
type Options struct {
	Driver  *nix.Driver
	Storage storage.Backend
	Log     logrus.FieldLogger
	Names   NameOptions
	// LayerBudget bounds the store-path layers of an image (the
	// customisation layer comes on top). Zero means layers.DefaultBudget.
	LayerBudget int
	// Popularity is the popularity data for layering (may be nil).
	Popularity map[string]int
	// Parallelism bounds layers archived at once. Zero means the cores.
	Parallelism int
	Archive     archive.Options
	// Metrics, if set, counts lookups in the manifest and layer caches.
	Metrics *metrics.Metrics
	// MaxImageBytes bounds an image's closure (the sum of its store
	// paths' NAR sizes), checked once the closure is known and before
	// anything is archived; zero: no bound.
	MaxImageBytes int64
	// AfterBuild, if set, is called after every build that realised
	// something, whether it succeeded or not: the Nix store may have
	// grown (the store's collector measures it again).
	AfterBuild func()
}

// Source builds images from Nix packages: the image name is a list of
// packages, the tag a version of the package set.
type Source struct {
	opts    Options
	log     logrus.FieldLogger
	popHash string
	stats   Stats
}

// Stats count the Nix source's work, for tests, benchmarks and logs.
type Stats struct {
	LayersArchived  atomic.Int64 // layers compressed
	LayersReused    atomic.Int64 // layers found in the layer cache
	BytesArchived   atomic.Int64 // uncompressed tar bytes compressed
	ManifestsReused atomic.Int64 // builds answered by the manifest cache
}

// New returns the Nix source.
func New(opts Options) (*Source, error) {
	if opts.Driver == nil || opts.Storage == nil {
		return nil, errors.New("nix source: driver and storage are required")
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.LayerBudget <= 0 {
		opts.LayerBudget = layers.DefaultBudget
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = runtime.NumCPU()
	}
	pop, err := json.Marshal(opts.Popularity) // map keys are sorted
	if err != nil {
		return nil, fmt.Errorf("hashing popularity data: %w", err)
	}
	return &Source{opts: opts, log: opts.Log, popHash: source.Hash(string(pop))}, nil
}

// Stats returns the source's counters.
func (s *Source) Stats() *Stats { return &s.stats }

// Identify parses the image name and checks the tag against the package
// source without running anything (nix.Driver.CheckTag): a tag that cannot
// name a version of it is TAG_INVALID or MANIFEST_UNKNOWN here, before any
// cache or build. The key holds the package source, so instances
// configured differently never share pinned records.
func (s *Source) Identify(name, tag string) (source.Request, error) {
	req, err := ParseImageName(name, s.opts.Names)
	if err != nil {
		return source.Request{}, err
	}
	if err := s.opts.Driver.CheckTag(tag); err != nil {
		return source.Request{}, err
	}
	src := s.opts.Driver.Source()
	key := strings.Join([]string{string(src.Kind), src.Value, req.Key(), tag}, "|")
	return source.Request{Name: name, Tag: tag, Key: key, Pinned: s.opts.Driver.Pinned(tag), Parsed: req}, nil
}

// source.Plan resolves the packages at the tag (one Nix evaluation). Store paths
// are input-addressed, so the plan's key, the resolved outputs and how
// layers are made, names the image: a moving tag whose packages did not
// change plans the same key, and the Builder reuses its image.
func (s *Source) Plan(ctx context.Context, req source.Request) (source.Plan, error) {
	ir, ok := req.Parsed.(ImageRequest)
	if !ok {
		return source.Plan{}, fmt.Errorf("nix source: request %s:%s was not identified here", req.Name, req.Tag)
	}
	progress := source.ProgressOf(ctx)
	progress.Phase(source.Resolving)
	res, err := s.opts.Driver.Resolve(nix.WithObserver(ctx, progress), req.Tag, ir.System, ir.Packages)
	if err != nil {
		return source.Plan{}, err
	}
	// The plan holds the GC roots of its derivations until the caller
	// releases it.
	w := &work{res: res, nonRoot: ir.NonRoot}
	return source.Plan{Request: req, Key: "nix|" + s.planKey(w), Pinned: true, Work: w, Held: res}, nil
}

// work is what a plan of the Nix source fixes: the resolution, and how
// the image is made of it.
type work struct {
	res     *nix.Resolution
	nonRoot bool // the nonroot meta-package
}

// Build realises the planned packages, then makes the image from the
// closure, reusing every layer (and the whole manifest) already built.
func (s *Source) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	w, ok := plan.Work.(*work)
	if !ok {
		return nil, fmt.Errorf("nix source: plan for %s:%s was not made here", plan.Request.Name, plan.Request.Tag)
	}
	res := w.res
	log := requestid.Logger(ctx, s.log).WithFields(logrus.Fields{"image": plan.Request.Name, "tag": plan.Request.Tag})
	progress := source.ProgressOf(ctx)
	progress.Phase(source.Realising)
	if s.opts.AfterBuild != nil {
		defer s.opts.AfterBuild()
	}
	img, err := s.opts.Driver.BuildResolved(nix.WithObserver(ctx, progress), res)
	if err != nil {
		return nil, err
	}
	defer img.Release()
	if err := s.checkSize(ctx, log, plan.Request, img.Closure.NarSize()); err != nil {
		return nil, err
	}

	inputKey := s.inputKey(w, img)
	recordName := manifestRecordPrefix + inputKey
	if r, err := source.GetRecord(ctx, s.opts.Storage, recordName); err == nil {
		if m, err := r.Manifests(); err == nil && source.Stored(ctx, s.opts.Storage, m) == nil {
			s.stats.ManifestsReused.Add(1)
			s.opts.Metrics.CacheLookup(metrics.CacheManifest, true)
			log.Debug("closure unchanged: manifest reused")
			return m, nil
		}
	}
	s.opts.Metrics.CacheLookup(metrics.CacheManifest, false)

	m, err := s.render(ctx, log, w, img)
	if err != nil {
		return nil, err
	}
	if err := source.PutRecord(ctx, s.opts.Storage, recordName, source.NewRecord(m, false, time.Now())); err != nil {
		log.WithError(err).Warn("persisting manifest cache record")
	}
	return m, nil
}

// planKey identifies what an image is planned from: which outputs of which
// packages are installed, and how the image is made of them.
func (s *Source) planKey(wk *work) string {
	h := sha256.New()
	s.writePlan(h, wk)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Source) writePlan(w io.Writer, wk *work) {
	res := wk.res
	fmt.Fprintf(w, "%s\n%s\n%d\n%s\n%s\n", pipelineVersion, s.opts.Archive.Format(), s.opts.LayerBudget, s.popHash, res.System)
	if wk.nonRoot {
		fmt.Fprintln(w, "nonroot")
	}
	for _, p := range res.Packages {
		fmt.Fprintf(w, "pkg %s", p.Attr)
		for _, o := range p.Outputs {
			fmt.Fprintf(w, " %s", o.Path)
		}
		fmt.Fprintln(w)
	}
}

// inputKey identifies everything an image is made from: its plan and the
// closure's content (paths and content hashes).
func (s *Source) inputKey(wk *work, img *nix.Image) string {
	h := sha256.New()
	s.writePlan(h, wk)
	for _, p := range img.Closure.Paths {
		fmt.Fprintf(h, "path %s %s\n", p.Path, p.NarHash)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// render groups the closure into layers, archives those not yet in the
// layer cache (in parallel), adds the customisation layer, stores the
// config and both manifests, and publishes the image's SBOM (sbom.go).
func (s *Source) render(ctx context.Context, log logrus.FieldLogger, wk *work, img *nix.Image) (source.Manifests, error) {
	arch, osName, err := manifest.Platform(img.Resolution.System)
	if err != nil {
		return nil, fmt.Errorf("image platform: %w", err)
	}
	graph := layers.Graph{Roots: img.Resolution.OutputPaths(), Paths: make(map[string]layers.PathInfo, len(img.Closure.Paths))}
	for _, p := range img.Closure.Paths {
		graph.Paths[p.Path] = layers.PathInfo{Size: p.NarSize, References: p.References}
	}
	groups, err := layers.Group(graph, s.opts.Popularity, s.opts.LayerBudget)
	if err != nil {
		return nil, fmt.Errorf("grouping layers: %w", err)
	}

	progress := source.ProgressOf(ctx)
	progress.Phase(source.Archiving)
	total := len(groups) + 1
	var doneMu sync.Mutex
	done := 0
	layerDone := func() {
		doneMu.Lock()
		done++
		progress.Layers(done, total)
		doneMu.Unlock()
	}
	progress.Layers(0, total)
	built := make([]manifest.Layer, total)
	jobs := make([]func(context.Context) error, 0, total)
	for i, g := range groups {
		jobs = append(jobs, func(ctx context.Context) error {
			l, err := s.layer(ctx, log, "paths", g.Paths, func(w io.Writer) (archive.Result, error) {
				return archive.WriteLayer(w, g.Paths, s.opts.Archive)
			})
			built[i] = l
			if err == nil {
				layerDone()
			}
			return err
		})
	}
	var outputs [][]string
	var customKey []string
	for _, p := range img.Resolution.Packages {
		var paths []string
		for _, o := range p.Outputs {
			paths = append(paths, o.Path)
		}
		outputs = append(outputs, paths)
		customKey = append(customKey, strings.Join(paths, " "))
	}
	var own []archive.Entry
	user := ""
	if wk.nonRoot {
		own, user = nonRootEntries(), NonRootUser
		customKey = append(customKey, "nonroot "+NonRootUser)
	}
	jobs = append(jobs, func(ctx context.Context) error {
		l, err := s.layer(ctx, log, "customisation", customKey, func(w io.Writer) (archive.Result, error) {
			return archive.WriteCustomisation(w, outputs, own, s.opts.Archive, log)
		})
		l.Comment = "customisation layer: " + strings.Join(packageAttrs(img.Resolution), " ")
		built[len(groups)] = l
		if err == nil {
			layerDone()
		}
		return err
	})
	if err := parallel.Run(ctx, s.opts.Parallelism, jobs); err != nil {
		return nil, err
	}

	rendered, err := manifest.Build(manifest.Image{
		Architecture: arch, OS: osName, Layers: built,
		User: user, Labels: provenanceLabels(img.Resolution),
	})
	if err != nil {
		return nil, fmt.Errorf("rendering manifests: %w", err)
	}
	for _, b := range []manifest.Blob{rendered.Config, rendered.OCI, rendered.Docker} {
		if _, err := storage.PutBlob(ctx, s.opts.Storage, b.MediaType, b.Digest, b.Size, strings.NewReader(string(b.Bytes))); err != nil {
			return nil, fmt.Errorf("storing %s %s: %w", b.MediaType, b.Digest, err)
		}
	}
	if err := s.publishSBOM(ctx, img, rendered); err != nil {
		return nil, err
	}
	return source.Manifests{
		manifest.OCI:    {Digest: rendered.OCI.Digest, Size: rendered.OCI.Size, MediaType: rendered.OCI.MediaType},
		manifest.Docker: {Digest: rendered.Docker.Digest, Size: rendered.Docker.Size, MediaType: rendered.Docker.MediaType},
	}, nil
}

// provenanceLabels are the image config's labels (OCI annotation keys):
// where its packages come from, and which they are. Nothing in them
// changes between two builds of the same closure from the same source:
//
//	org.opencontainers.image.source    the git repository (without
//	                                   credentials) or channel archive;
//	                                   "path" or "builtin" for those
//	                                   sources (never a server's path)
//	org.opencontainers.image.revision  the commit, where it is known
//	org.opencontainers.image.title     the packages' attribute paths
//
// A closure already built is reused as it is: an image whose packages
// did not change at a newer commit keeps its digest, and so the revision
// of the build that first made it.
func provenanceLabels(r *nix.Resolution) map[string]string {
	src := r.Source.URL
	if src == "" {
		src = r.Source.Kind
	}
	return map[string]string{
		v1.AnnotationSource:   src,
		v1.AnnotationRevision: r.Source.Rev,
		v1.AnnotationTitle:    imageTitle(r),
	}
}

// imageTitle names an image by its packages' attribute paths.
func imageTitle(r *nix.Resolution) string {
	return strings.Join(packageAttrs(r), " ")
}

func packageAttrs(r *nix.Resolution) []string {
	attrs := make([]string, 0, len(r.Packages))
	for _, p := range r.Packages {
		attrs = append(attrs, p.Attr)
	}
	return attrs
}

// checkSize refuses an image whose closure is over MaxImageBytes: DENIED,
// naming both sizes, logged with who asked and counted.
func (s *Source) checkSize(ctx context.Context, log logrus.FieldLogger, req source.Request, size int64) error {
	if s.opts.MaxImageBytes <= 0 || size <= s.opts.MaxImageBytes {
		return nil
	}
	fields := logrus.Fields{"limit": "image_size", "closure_bytes": size, "max_bytes": s.opts.MaxImageBytes}
	if who, ok := caller.FromContext(ctx); ok {
		fields["client"] = who.Key()
	}
	log.WithFields(fields).Warn("build refused")
	s.opts.Metrics.Refused("image_size")
	return errcode.New(errcode.Denied,
		"the packages of %s:%s come to %s, over this registry's limit of %s per image (NIXPORT_MAX_IMAGE_BYTES): ask for fewer or smaller packages",
		req.Name, req.Tag, bytesize.Format(size), bytesize.Format(s.opts.MaxImageBytes))
}

// layerRecord is the layer cache entry: a layer made once, ever, for the
// same inputs and format.
type layerRecord struct {
	Digest           string `json:"digest"`
	Size             int64  `json:"size"`
	DiffID           string `json:"diffID"`
	UncompressedSize int64  `json:"uncompressedSize"`
}

// layer returns the layer of the given inputs from the layer cache, or
// writes it with write and caches it.
func (s *Source) layer(ctx context.Context, log logrus.FieldLogger, kind string, inputs []string, write func(io.Writer) (archive.Result, error)) (manifest.Layer, error) {
	comment := strings.Join(inputs, "\n")
	key := source.Hash(pipelineVersion + "\n" + s.opts.Archive.Format() + "\n" + kind + "\n" + comment)
	name := layerRecordPrefix + key
	if data, err := s.opts.Storage.GetObject(ctx, name); err == nil {
		var r layerRecord
		if json.Unmarshal(data, &r) == nil {
			l := manifest.Layer{Size: r.Size, Comment: comment}
			l.Digest, l.DiffID = digestOf(r.Digest), digestOf(r.DiffID)
			if reference.ValidDigest(l.Digest) == nil && reference.ValidDigest(l.DiffID) == nil {
				// Refreshed, not only found: the image about to name it
				// is not recorded yet, and a blob collection under way
				// must see that the layer is in use again.
				if _, err := s.opts.Storage.RefreshBlob(ctx, l.Digest); err == nil {
					s.stats.LayersReused.Add(1)
					s.opts.Metrics.CacheLookup(metrics.CacheLayer, true)
					return l, nil
				}
			}
		}
	}
	s.opts.Metrics.CacheLookup(metrics.CacheLayer, false)

	start := time.Now()
	w, err := s.opts.Storage.NewBlobWriter(ctx, v1.MediaTypeImageLayerGzip)
	if err != nil {
		return manifest.Layer{}, fmt.Errorf("storing %s layer: %w", kind, err)
	}
	res, err := write(w)
	if err != nil {
		w.Cancel()
		return manifest.Layer{}, fmt.Errorf("archiving %s layer: %w", kind, err)
	}
	if _, err := w.Commit(ctx, res.Digest, res.Size); err != nil {
		return manifest.Layer{}, fmt.Errorf("persisting layer %s: %w", res.Digest, err)
	}
	s.stats.LayersArchived.Add(1)
	s.stats.BytesArchived.Add(res.UncompressedSize)
	source.ProgressOf(ctx).Compressed(res.Size)
	log.WithFields(logrus.Fields{
		"digest": res.Digest.String(), "size": res.Size, "uncompressed": res.UncompressedSize,
		"paths": len(inputs), "duration_ms": time.Since(start).Milliseconds(),
	}).Debug("layer archived")
	data, _ := json.Marshal(layerRecord{Digest: res.Digest.String(), Size: res.Size, DiffID: res.DiffID.String(), UncompressedSize: res.UncompressedSize})
	if err := s.opts.Storage.PutObject(ctx, name, data); err != nil {
		log.WithError(err).Warn("persisting layer cache record")
	}
	return manifest.Layer{Digest: res.Digest, DiffID: res.DiffID, Size: res.Size, Comment: comment}, nil
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }
