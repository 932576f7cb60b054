// Package ocilayout ingests OCI image layouts: how an image built outside
// nixport (by a command such as a Bazel wrapper, or ahead of time) enters
// storage, and later how pushed content is checked.
//
// A layout is untrusted input. Everything in it is checked before a single
// byte enters storage: oci-layout and index.json are read with bounded
// sizes and parsed into the shapes the image spec defines, every manifest
// and index is walked (nested indexes too), and every blob they reference
// is hashed and measured against its descriptor. Only then are the blobs
// copied, each at most once (a blob storage already holds is skipped), in
// an order that never publishes a manifest before the blobs it names.
//
// Paths inside the layout come only from digests that passed validation
// (sha256: and 64 lower-case hex digits), and every file is opened through
// an os.Root on the layout directory, so neither a descriptor nor a planted
// symbolic link can reach outside it.
//
// A layout may carry referrers beside its image (an SBOM, a signature):
// manifests listed in index.json that name a subject. They are not
// platforms of the image; they are checked and stored like everything
// else, their subject must be a manifest of the same layout (a layout
// cannot attach anything to another image), and each is added to the
// referrers index of its subject once every blob is stored.
package ocilayout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/jsonfile"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/parallel"
	"github.com/nixport/nixport/referrers"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// Bounds on what a layout may hold.
const (
	maxOCILayoutBytes = 4 << 10
	// maxLayoutJSONBytes bounds index.json and every manifest or index
	// (the size registries must accept for a manifest).
	maxLayoutJSONBytes = 4 << 20
	maxLayoutBlobs     = 10000
	// maxLayoutDepth bounds the nesting of indexes.
	maxLayoutDepth = 8
	maxBlobBytes   = 1 << 40
)

// Manifest and index media types a layout may serve, and the format each is.
var (
	imageManifestTypes = map[string]manifest.Format{
		v1.MediaTypeImageManifest: manifest.OCI,
		manifest.DockerManifest:   manifest.Docker,
	}
	imageIndexTypes = map[string]manifest.Format{
		v1.MediaTypeImageIndex:      manifest.OCI,
		manifest.DockerManifestList: manifest.Docker,
	}
)

// refNameAnnotation tags a manifest inside a layout; it means nothing once
// the manifest is served from a registry.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// ReadLayoutIndex reads the index.json of the layout in dir (bounded, and
// never through a link out of dir): what IngestLayout is then given, so
// that an ingest is pinned to the index read once.
func ReadIndex(dir string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, badLayout(err, "the layout directory cannot be opened")
	}
	defer root.Close()
	l := &checkedLayout{dir: dir, root: root}
	return l.readFile("index.json", maxLayoutJSONBytes)
}

// IngestLayout checks the OCI image layout in dir, whose index.json is
// index (as ReadLayoutIndex read it; the file is not read again), copies
// its blobs into store and returns the manifests to serve: the layout's
// only manifest or index, or, when index.json lists several platform
// manifests, an image index of them (stored as a blob). A layout that
// fails any check is an *errcode.Error BUILD_FAILED naming the problem
// (and the bad blob), and nothing of it enters storage.
func Ingest(ctx context.Context, store storage.Backend, dir string, index []byte, log logrus.FieldLogger) (source.Manifests, error) {
	m, _, err := ingestLayout(ctx, store, dir, index, log)
	return m, err
}

// ingestStats count what one ingest did.
type ingestStats struct {
	blobs  int   // distinct blobs in the layout
	hashed int   // non-manifest blobs hashed (the rest were in storage)
	copied int   // blobs copied into storage (the rest were there)
	bytes  int64 // bytes copied
}

func ingestLayout(ctx context.Context, store storage.Backend, dir string, index []byte, log logrus.FieldLogger) (source.Manifests, ingestStats, error) {
	start := time.Now()
	l, err := checkLayout(ctx, dir, index, store)
	if err != nil {
		return nil, ingestStats{}, err
	}
	defer l.close()
	stats, err := l.copyBlobs(ctx, store)
	if err != nil {
		return nil, stats, err
	}
	if err := l.addReferrers(ctx, store); err != nil {
		return nil, stats, err
	}
	m, err := l.manifests(ctx, store)
	if err != nil {
		return nil, stats, err
	}
	log.WithFields(logrus.Fields{
		"blobs": stats.blobs, "hashed": stats.hashed, "copied": stats.copied, "bytes_copied": stats.bytes,
		"duration_ms": time.Since(start).Milliseconds(),
	}).Debug("OCI layout ingested")
	return m, stats, nil
}

// badLayout is the error of a layout that fails a check: the client sees
// the message, the log also the cause (which may name host paths).
func badLayout(cause error, format string, args ...any) error {
	return errcode.Wrap(errcode.BuildFailed, cause, "invalid OCI image layout: "+format, args...)
}

// layoutBlob is one blob of a checked layout.
type layoutBlob struct {
	digest    digest.Digest
	size      int64
	mediaType string
	what      string // where it was first referenced, for errors
	data      []byte // a manifest's or index's bytes (verified); nil for other blobs
	held      bool   // storage already holds it: not hashed, not copied
	// What a manifest or index says that makes it a referrer: its
	// subject, and what the referrers index lists of it.
	subject      *v1.Descriptor
	artifactType string
	annotations  map[string]string
}

// checkedLayout is a layout whose every blob has been verified.
type checkedLayout struct {
	dir  string
	root *os.Root
	top  []v1.Descriptor // index.json's manifests that are the image
	// referrers are index.json's manifests that name a subject.
	referrers []v1.Descriptor
	blobs     map[digest.Digest]*layoutBlob
	// order holds every blob once, each after the blobs it references.
	order []*layoutBlob
}

func (l *checkedLayout) close() { l.root.Close() }

// checkLayout reads and verifies the layout in dir without writing
// anything anywhere. Blobs store already holds are checked for presence
// and size only; store may be nil.
func checkLayout(ctx context.Context, dir string, index []byte, store storage.Backend) (*checkedLayout, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, badLayout(err, "the layout directory cannot be opened")
	}
	l := &checkedLayout{dir: dir, root: root, blobs: map[digest.Digest]*layoutBlob{}}
	if err := l.check(ctx, index, store); err != nil {
		root.Close()
		return nil, err
	}
	return l, nil
}

func (l *checkedLayout) check(ctx context.Context, indexJSON []byte, store storage.Backend) error {
	data, err := l.readFile("oci-layout", maxOCILayoutBytes)
	if err != nil {
		return err
	}
	if err := parseOCILayout(data); err != nil {
		return err
	}
	index, err := parseLayoutIndex(indexJSON)
	if err != nil {
		return err
	}
	for i, d := range index.Manifests {
		if err := l.walk(ctx, d, 1, fmt.Sprintf("manifest %d of index.json", i+1), true); err != nil {
			return err
		}
	}
	if err := l.splitReferrers(index.Manifests); err != nil {
		return err
	}
	if len(l.top) > 1 {
		if err := checkPlatforms(l.top); err != nil {
			return err
		}
	}
	jobs := make([]func(context.Context) error, len(l.order))
	for i, b := range l.order {
		jobs[i] = func(ctx context.Context) error { return l.verifyBlob(ctx, store, b) }
	}
	if err := parallel.Run(ctx, runtime.NumCPU(), jobs); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("verifying layout blobs: %w", ctx.Err())
		}
		return err
	}
	return nil
}

// parseOCILayout checks the oci-layout file.
func parseOCILayout(data []byte) error {
	var v struct {
		Version *string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return badLayout(err, "oci-layout is not a JSON object of the right shape")
	}
	if v.Version == nil {
		return badLayout(nil, "oci-layout has no imageLayoutVersion")
	}
	if !strings.HasPrefix(*v.Version, "1.") {
		return badLayout(nil, "oci-layout has imageLayoutVersion %.40q; 1.x is supported", *v.Version)
	}
	return nil
}

// parseLayoutIndex parses index.json: an image index (schemaVersion 2, the
// index media type if any) listing at least one manifest.
func parseLayoutIndex(data []byte) (v1.Index, error) {
	index, err := parseIndex(data, v1.MediaTypeImageIndex, "index.json")
	if err != nil {
		return v1.Index{}, err
	}
	if len(index.Manifests) == 0 {
		return v1.Index{}, badLayout(nil, "index.json lists no manifest")
	}
	return index, nil
}

// parseIndex parses an image index (or Docker manifest list) of the
// given media type.
func parseIndex(data []byte, mediaType, what string) (v1.Index, error) {
	var index v1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return v1.Index{}, badLayout(err, "%s is not an image index: %s", what, jsonfile.Problem(err))
	}
	if index.SchemaVersion != 2 {
		return v1.Index{}, badLayout(nil, "%s has schemaVersion %d, not 2", what, index.SchemaVersion)
	}
	if index.MediaType != "" && index.MediaType != mediaType {
		return v1.Index{}, badLayout(nil, "%s has media type %.100q, not %s", what, index.MediaType, mediaType)
	}
	if len(index.Manifests) > maxLayoutBlobs {
		return v1.Index{}, badLayout(nil, "%s lists %d manifests, more than %d", what, len(index.Manifests), maxLayoutBlobs)
	}
	return index, nil
}

// parseImageManifest parses an image manifest (OCI or Docker schema 2) of
// the given media type.
func parseImageManifest(data []byte, mediaType, what string) (v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return v1.Manifest{}, badLayout(err, "%s is not an image manifest: %s", what, jsonfile.Problem(err))
	}
	if m.SchemaVersion != 2 {
		return v1.Manifest{}, badLayout(nil, "%s has schemaVersion %d, not 2", what, m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != mediaType {
		return v1.Manifest{}, badLayout(nil, "%s has media type %.100q, not %s", what, m.MediaType, mediaType)
	}
	if len(m.Layers) > maxLayoutBlobs {
		return v1.Manifest{}, badLayout(nil, "%s lists %d layers, more than %d", what, len(m.Layers), maxLayoutBlobs)
	}
	return m, nil
}

// checkDescriptor checks the fields of a descriptor that name a blob.
func checkDescriptor(d v1.Descriptor, what string) error {
	if !validSHA256(string(d.Digest)) {
		return badLayout(nil, "%s: digest %.100q is not sha256: and 64 lower-case hex digits", what, string(d.Digest))
	}
	if d.Size < 0 || d.Size > maxBlobBytes {
		return badLayout(nil, "%s: blob %s has an impossible size %d", what, d.Digest, d.Size)
	}
	if !manifest.ValidMediaType(d.MediaType) {
		return badLayout(nil, "%s: blob %s has an invalid media type %.100q", what, d.Digest, d.MediaType)
	}
	return nil
}

// validSHA256 reports whether d is "sha256:" and 64 lower-case hex digits:
// the only digests whose hex part becomes a path inside a layout.
func validSHA256(d string) bool {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// walk checks descriptor d and, for a manifest or index, reads and
// verifies it and walks what it references. At the top (index.json) and
// in indexes only manifests and indexes may be named; in a manifest (its
// config and layers) only other blobs.
func (l *checkedLayout) walk(ctx context.Context, d v1.Descriptor, depth int, what string, wantManifest bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checking layout: %w", err)
	}
	if err := checkDescriptor(d, what); err != nil {
		return err
	}
	_, isManifest := imageManifestTypes[d.MediaType]
	_, isIndex := imageIndexTypes[d.MediaType]
	if wantManifest && !isManifest && !isIndex {
		return badLayout(nil, "%s: blob %s has media type %.100q, not an image manifest or index", what, d.Digest, d.MediaType)
	}
	if !wantManifest && (isManifest || isIndex) {
		return badLayout(nil, "%s: blob %s has a manifest media type %s", what, d.Digest, d.MediaType)
	}
	if b, ok := l.blobs[d.Digest]; ok {
		if b.size != d.Size {
			return badLayout(nil, "%s: blob %s has size %d, but %d in %s", what, d.Digest, d.Size, b.size, b.what)
		}
		return nil
	}
	if len(l.blobs) >= maxLayoutBlobs {
		return badLayout(nil, "the layout references more than %d blobs", maxLayoutBlobs)
	}
	b := &layoutBlob{digest: d.Digest, size: d.Size, mediaType: d.MediaType, what: what}
	l.blobs[d.Digest] = b
	if !isManifest && !isIndex {
		l.order = append(l.order, b)
		return nil
	}
	if depth > maxLayoutDepth {
		return badLayout(nil, "%s: indexes are nested more than %d deep", what, maxLayoutDepth)
	}
	if d.Size > maxLayoutJSONBytes {
		return badLayout(nil, "%s: manifest %s is %d bytes, more than %d", what, d.Digest, d.Size, maxLayoutJSONBytes)
	}
	data, err := l.readBlob(ctx, b)
	if err != nil {
		return err
	}
	b.data = data
	self := fmt.Sprintf("manifest %s", d.Digest)
	if isIndex {
		self = fmt.Sprintf("index %s", d.Digest)
		index, err := parseIndex(data, d.MediaType, self)
		if err != nil {
			return err
		}
		b.subject, b.artifactType, b.annotations = index.Subject, index.ArtifactType, index.Annotations
		if len(index.Manifests) == 0 {
			return badLayout(nil, "%s: index %s lists no manifest", what, d.Digest)
		}
		for i, c := range index.Manifests {
			if err := l.walk(ctx, c, depth+1, fmt.Sprintf("manifest %d of index %s", i+1, d.Digest), true); err != nil {
				return err
			}
		}
	} else {
		m, err := parseImageManifest(data, d.MediaType, self)
		if err != nil {
			return err
		}
		b.subject, b.artifactType, b.annotations = m.Subject, m.ArtifactType, m.Annotations
		if b.artifactType == "" {
			b.artifactType = m.Config.MediaType
		}
		if err := l.walk(ctx, m.Config, depth+1, "config of "+self, false); err != nil {
			return err
		}
		for i, c := range m.Layers {
			if err := l.walk(ctx, c, depth+1, fmt.Sprintf("layer %d of %s", i+1, self), false); err != nil {
				return err
			}
		}
	}
	l.order = append(l.order, b)
	return nil
}

// splitReferrers sorts index.json's manifests into the image (l.top) and
// the referrers the layout carries (l.referrers): those naming a subject,
// which must be a manifest or index of the layout, of the size it has
// there. A layout of referrers alone holds no image.
func (l *checkedLayout) splitReferrers(ds []v1.Descriptor) error {
	for i, d := range ds {
		b := l.blobs[d.Digest]
		if b == nil || b.subject == nil {
			l.top = append(l.top, d)
			continue
		}
		s := b.subject
		what := fmt.Sprintf("manifest %d of index.json (%s)", i+1, d.Digest)
		if !validSHA256(string(s.Digest)) {
			return badLayout(nil, "%s names a subject with digest %.100q, not sha256: and 64 lower-case hex digits", what, string(s.Digest))
		}
		target := l.blobs[s.Digest]
		if target == nil || target.data == nil {
			return badLayout(nil, "%s names subject %s, which is no manifest of the layout: a layout may carry referrers of its own image only", what, s.Digest)
		}
		if target.size != s.Size {
			return badLayout(nil, "%s names subject %s of size %d, but it is %d bytes", what, s.Digest, s.Size, target.size)
		}
		l.referrers = append(l.referrers, d)
	}
	if len(l.top) == 0 {
		return badLayout(nil, "index.json lists only referrers (manifests with a subject), no image")
	}
	return nil
}

// addReferrers adds the referrers the layout carries to the referrers
// index of their subjects: their descriptor with the artifact type (the
// manifest's, else its config's media type) and annotations, as the
// referrers API lists them. Call it once every blob is stored.
func (l *checkedLayout) addReferrers(ctx context.Context, store storage.Backend) error {
	for _, d := range l.referrers {
		b := l.blobs[d.Digest]
		desc := v1.Descriptor{MediaType: b.mediaType, Digest: b.digest, Size: b.size, ArtifactType: b.artifactType, Annotations: b.annotations}
		if err := referrers.Add(ctx, store, b.subject.Digest, desc); err != nil {
			return fmt.Errorf("recording a referrer the layout carries: %w", err)
		}
	}
	return nil
}

// checkPlatforms checks that the several manifests of index.json are an
// image's platforms: each an image manifest naming a platform, no platform
// twice.
func checkPlatforms(ds []v1.Descriptor) error {
	seen := map[string]int{}
	for i, d := range ds {
		if _, ok := imageManifestTypes[d.MediaType]; !ok {
			return badLayout(nil, "index.json lists %d entries and entry %d is an image index: list one image index, or one image manifest per platform", len(ds), i+1)
		}
		p := d.Platform
		if p == nil || p.OS == "" || p.Architecture == "" {
			return badLayout(nil, "index.json lists %d manifests and manifest %d (%s) names no platform: a layout served as one image holds one manifest, one image index, or one manifest per platform", len(ds), i+1, d.Digest)
		}
		key := strings.Join([]string{p.OS, p.Architecture, p.Variant, p.OSVersion}, "/")
		if j, dup := seen[key]; dup {
			return badLayout(nil, "index.json manifests %d and %d are both for %s/%s%s", j, i+1, p.OS, p.Architecture, variantSuffix(p.Variant))
		}
		seen[key] = i + 1
	}
	return nil
}

func variantSuffix(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

// blobName is the path of a blob inside the layout: built only from a
// digest validSHA256 accepted.
func blobName(d digest.Digest) string {
	return "blobs/sha256/" + strings.TrimPrefix(string(d), "sha256:")
}

// open opens a regular file of the layout. O_NONBLOCK keeps a FIFO planted
// in the layout from blocking the open; it changes nothing for a regular
// file.
func (l *checkedLayout) open(name string) (*os.File, int64, error) {
	f, err := l.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file (%s)", name, st.Mode().Type())
	}
	return f, st.Size(), nil
}

// readFile reads one of the layout's small files (oci-layout, index.json).
func (l *checkedLayout) readFile(name string, max int64) ([]byte, error) {
	f, size, err := l.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, badLayout(err, "%s is missing", name)
	}
	if err != nil {
		return nil, badLayout(err, "%s cannot be read", name)
	}
	defer f.Close()
	if size > max {
		return nil, badLayout(nil, "%s is %d bytes, more than %d", name, size, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, badLayout(err, "%s cannot be read", name)
	}
	if int64(len(data)) > max {
		return nil, badLayout(nil, "%s is more than %d bytes", name, max)
	}
	return data, nil
}

// openBlob opens blob b, checking that its file has the descriptor's size.
func (l *checkedLayout) openBlob(b *layoutBlob) (*os.File, error) {
	f, size, err := l.open(blobName(b.digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, badLayout(err, "%s: blob %s is missing", b.what, b.digest)
	}
	if err != nil {
		return nil, badLayout(err, "%s: blob %s cannot be read", b.what, b.digest)
	}
	if size != b.size {
		f.Close()
		if size < b.size {
			return nil, badLayout(nil, "%s: blob %s is truncated: %d bytes, its descriptor says %d", b.what, b.digest, size, b.size)
		}
		return nil, badLayout(nil, "%s: blob %s is %d bytes, its descriptor says %d", b.what, b.digest, size, b.size)
	}
	return f, nil
}

// readBlob reads a manifest or index blob and verifies its digest.
func (l *checkedLayout) readBlob(ctx context.Context, b *layoutBlob) ([]byte, error) {
	f, err := l.openBlob(b)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(ctxReader{ctx, f}, b.size+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading layout blob %s: %w", b.digest, ctx.Err())
		}
		return nil, badLayout(err, "%s: blob %s cannot be read", b.what, b.digest)
	}
	if err := checkContent(b, int64(len(data)), sha256.Sum256(data)); err != nil {
		return nil, err
	}
	return data, nil
}

// verifyBlob finishes checking blob b, and asks storage, once, whether it
// holds b already (refreshing it if so: the image about to name it is not
// recorded yet, and a blob collection under way must see it in use). source.Manifests and indexes were verified as they were read.
// Other blobs are hashed, unless storage holds them: what is served is
// storage's copy, verified when it was stored, so only the layout file's
// presence and size are checked, and the descriptor's size against
// storage's. A layout rebuilt with one layer changed thus costs the
// hashing of that layer alone. store may be nil: then nothing is held.
func (l *checkedLayout) verifyBlob(ctx context.Context, store storage.Backend, b *layoutBlob) error {
	if store != nil {
		info, err := store.RefreshBlob(ctx, b.digest)
		switch {
		case err == nil:
			if info.Size != b.size {
				return badLayout(nil, "%s: blob %s has size %d, but the blob of that digest is %d bytes", b.what, b.digest, b.size, info.Size)
			}
			b.held = true
		case !errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("looking up blob %s in storage: %w", b.digest, err)
		}
	}
	switch {
	case b.data != nil:
		return nil
	case b.held:
		f, err := l.openBlob(b)
		if err != nil {
			return err
		}
		f.Close()
		return nil
	}
	return l.verifyFile(ctx, b)
}

// verifyFile hashes blob b's file and checks it against its descriptor.
func (l *checkedLayout) verifyFile(ctx context.Context, b *layoutBlob) error {
	f, err := l.openBlob(b)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(ctxReader{ctx, f}, b.size+1))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("hashing layout blob %s: %w", b.digest, ctx.Err())
		}
		return badLayout(err, "%s: blob %s cannot be read", b.what, b.digest)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return checkContent(b, n, sum)
}

func checkContent(b *layoutBlob, n int64, sum [sha256.Size]byte) error {
	if n != b.size {
		return badLayout(nil, "%s: blob %s changed while being read: %d bytes, its descriptor says %d", b.what, b.digest, n, b.size)
	}
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != string(b.digest) {
		return badLayout(nil, "%s: blob %s does not match its digest: its content hashes to %s", b.what, b.digest, got)
	}
	return nil
}

// copyBlobs copies into store, the one checkLayout asked, every blob it
// did not hold, each after the blobs it references. A blob another writer
// stored meanwhile is no harm: committing a blob that exists leaves it as
// it is.
func (l *checkedLayout) copyBlobs(ctx context.Context, store storage.Backend) (ingestStats, error) {
	stats := ingestStats{blobs: len(l.order)}
	for _, b := range l.order {
		if b.held {
			continue
		}
		if b.data == nil {
			stats.hashed++
		}
		if err := l.copyBlob(ctx, store, b); err != nil {
			return stats, err
		}
		stats.copied++
		stats.bytes += b.size
	}
	return stats, nil
}

func (l *checkedLayout) copyBlob(ctx context.Context, store storage.Backend, b *layoutBlob) error {
	var r io.Reader
	if b.data != nil {
		r = bytes.NewReader(b.data)
	} else {
		f, err := l.openBlob(b)
		if err != nil {
			return err
		}
		defer f.Close()
		r = ctxReader{ctx, f}
	}
	if _, err := storage.PutBlob(ctx, store, b.mediaType, b.digest, b.size, r); err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) {
			return badLayout(err, "%s: blob %s changed while being copied", b.what, b.digest)
		}
		return fmt.Errorf("storing layout blob %s: %w", b.digest, err)
	}
	return nil
}

// manifests returns what to serve: index.json's only manifest or index as
// it is, or an image index of its platform manifests, stored now.
func (l *checkedLayout) manifests(ctx context.Context, store storage.Backend) (source.Manifests, error) {
	if len(l.top) == 1 {
		d := l.top[0]
		f, ok := imageManifestTypes[d.MediaType]
		if !ok {
			f = imageIndexTypes[d.MediaType]
		}
		return source.Manifests{f: {Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}}, nil
	}
	data, err := platformIndex(l.top)
	if err != nil {
		return nil, err
	}
	info, err := storage.PutBlob(ctx, store, v1.MediaTypeImageIndex, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("storing the image index of a layout: %w", err)
	}
	info.MediaType = v1.MediaTypeImageIndex
	return source.Manifests{manifest.OCI: info}, nil
}

// platformIndex renders the image index of index.json's platform
// manifests, without what only meant something inside the layout.
func platformIndex(ds []v1.Descriptor) ([]byte, error) {
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: make([]v1.Descriptor, 0, len(ds)),
	}
	for _, d := range ds {
		var annotations map[string]string
		for k, v := range d.Annotations {
			if k == refNameAnnotation {
				continue
			}
			if annotations == nil {
				annotations = map[string]string{}
			}
			annotations[k] = v
		}
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType:    d.MediaType,
			Digest:       d.Digest,
			Size:         d.Size,
			Platform:     d.Platform,
			ArtifactType: d.ArtifactType,
			Annotations:  annotations,
		})
	}
	data, err := json.Marshal(index)
	if err != nil {
		return nil, fmt.Errorf("rendering an image index: %w", err)
	}
	return data, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
