// Package layout is the layout source: it serves OCI image layouts built
// ahead of time, the way build systems hand test images to a cluster. A
// manifest file maps repository:tag to a layout directory:
//
//	{
//	  "prebuilt/app:latest": "out/app",
//	  "prebuilt/app:v1.2": "/srv/images/app-1.2"
//	}
//
// A relative directory is relative to the manifest file. The file is
// checked strictly (every key a valid name:tag under the route, no key
// twice) and re-read when it changes: every request compares its size,
// modification time and inode with the last read, a stat and nothing
// more, so no goroutine watches it. A changed file that is not valid (a
// writer caught half-way) is logged and the previous mapping kept.
//
// A request for name:tag is a moving one (the directory may be rebuilt in
// place). Its plan is the layout's index.json, read once: the same bytes
// name the same manifests by digest, so the plan's key holds their hash,
// and the build ingests (verifies and copies into storage) exactly what
// that index names. A layout rebuilt in place plans a new key at once; one
// rewritten between planning and building cannot end up under the old
// key. The Builder reuses the image of a key it has built.
package layout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/jsonfile"
	"github.com/nixport/nixport/ocilayout"
	"github.com/nixport/nixport/requestid"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
)

// maxLayoutManifestBytes bounds a layout manifest file.
const maxLayoutManifestBytes = 4 << 20

// Options configure a layout source.
type Options struct {
	// Route names the route in keys and logs.
	Route string
	// Manifest is the path of the file mapping repository:tag to layout
	// directories.
	Manifest string
	// Accepts reports whether a repository name belongs to the route; the
	// manifest may map no other. Nil accepts every name.
	Accepts func(name string) bool
	Storage storage.Backend
	Log     logrus.FieldLogger
}

// Source serves pre-built OCI image layouts.
type Source struct {
	opts Options
	log  logrus.FieldLogger

	mu      sync.Mutex
	stamp   fileStamp         // of the manifest file when images was read
	images  map[string]string // "name:tag" → layout directory
	statErr string            // the last failure to stat the file, logged once
}

// fileStamp tells whether a file changed, as cheaply as a stat can.
type fileStamp struct {
	size, mtime int64
	dev, ino    uint64
}

func statStamp(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(sys.Dev), sys.Ino
	}
	return s, nil
}

// New reads the manifest file (an error if it is missing or
// invalid) and returns the source.
func New(opts Options) (*Source, error) {
	if opts.Storage == nil {
		return nil, errors.New("layout source: no storage")
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	abs, err := filepath.Abs(opts.Manifest)
	if err != nil {
		return nil, fmt.Errorf("layout manifest %s: %w", opts.Manifest, err)
	}
	opts.Manifest = abs
	s := &Source{opts: opts, log: opts.Log.WithField("layout_manifest", abs)}
	stamp, err := statStamp(abs)
	if err != nil {
		return nil, fmt.Errorf("layout manifest: %w", err)
	}
	images, err := readLayoutManifest(abs, opts.Accepts)
	if err != nil {
		return nil, err
	}
	s.stamp, s.images = stamp, images
	return s, nil
}

// readLayoutManifest reads and checks a layout manifest file.
func readLayoutManifest(path string, accepts func(string) bool) (map[string]string, error) {
	data, err := jsonfile.Read(path, maxLayoutManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("layout manifest: %w", err)
	}
	images, err := parseLayoutManifest(data, filepath.Dir(path), accepts)
	if err != nil {
		return nil, fmt.Errorf("layout manifest %s: %w", path, err)
	}
	return images, nil
}

// parseLayoutManifest parses a layout manifest: one JSON object whose keys
// are repository:tag and values directories (relative ones relative to
// base). A key twice, an invalid name or tag, a name accepts refuses, or
// anything but strings is an error.
func parseLayoutManifest(data []byte, base string, accepts func(string) bool) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New(`want a JSON object mapping "repository:tag" to a layout directory`)
	}
	images := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonfile.Problem(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("malformed JSON: want a key")
		}
		var dir string
		if err := dec.Decode(&dir); err != nil {
			return nil, fmt.Errorf("%.300q: want a directory (a string): %w", key, jsonfile.Problem(err))
		}
		i := strings.LastIndexByte(key, ':')
		if i < 0 {
			return nil, fmt.Errorf("%.300q is not repository:tag", key)
		}
		name, tag := key[:i], key[i+1:]
		if err := source.CheckNameTag(name, tag); err != nil {
			msg := err.Error()
			if e, ok := errcode.As(err); ok {
				msg = e.Message
			}
			return nil, fmt.Errorf("%.300q: %s", key, msg)
		}
		if accepts != nil && !accepts(name) {
			return nil, fmt.Errorf("%.300q: the route does not serve repository %s", key, name)
		}
		if _, dup := images[key]; dup {
			return nil, fmt.Errorf("%.300q is mapped twice", key)
		}
		if dir == "" || strings.IndexByte(dir, 0) >= 0 {
			return nil, fmt.Errorf("%.300q: the directory is empty or holds a NUL byte", key)
		}
		images[key] = resolveDir(base, dir)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("malformed JSON: the object does not end")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return images, nil
}

// lookup returns the layout directory of name:tag, re-reading the
// manifest file first if it changed.
func (s *Source) lookup(name, tag string) (string, error) {
	if err := source.CheckNameTag(name, tag); err != nil {
		return "", err
	}
	if s.opts.Accepts != nil && !s.opts.Accepts(name) {
		return "", errcode.New(errcode.NameUnknown, "repository %s is not served by layout route %s", name, s.opts.Route)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	dir, ok := s.images[name+":"+tag]
	if !ok {
		return "", errcode.New(errcode.ManifestUnknown, "no pre-built image %s:%s", name, tag)
	}
	return dir, nil
}

// refresh re-reads the manifest file if it changed. Called with mu held.
func (s *Source) refresh() {
	stamp, err := statStamp(s.opts.Manifest)
	if err != nil {
		if msg := err.Error(); msg != s.statErr {
			s.statErr = msg
			s.log.WithError(err).Warn("layout manifest unreadable: serving the last mapping read")
		}
		return
	}
	s.statErr = ""
	if stamp == s.stamp {
		return
	}
	// Taken as read even if invalid: a broken file is logged once, not
	// on every request, and read again when it changes again.
	s.stamp = stamp
	images, err := readLayoutManifest(s.opts.Manifest, s.opts.Accepts)
	if err != nil {
		s.log.WithError(err).Error("layout manifest changed but is not valid: serving the last valid mapping")
		return
	}
	s.images = images
	s.log.WithField("images", len(images)).Info("layout manifest re-read")
}

// Identify validates name:tag and finds its layout directory. The request
// is a moving one: the directory may be rebuilt in place.
func (s *Source) Identify(name, tag string) (source.Request, error) {
	dir, err := s.lookup(name, tag)
	if err != nil {
		return source.Request{}, err
	}
	key := "layout|" + source.Hash(s.opts.Manifest) + "|" + name + ":" + tag + "|" + dir
	return source.Request{Name: name, Tag: tag, Key: key, Parsed: dir}, nil
}

// layoutPlan is what Build ingests: the directory, and its index.json as
// source.Plan read it, once.
type layoutPlan struct {
	dir   string
	index []byte
}

// source.Plan reads the layout's index.json: its hash is the plan's key, and Build
// ingests exactly the manifests it lists (blobs are checked against their
// digests), so a layout rewritten after planning cannot end up under this
// plan's key.
func (s *Source) Plan(_ context.Context, req source.Request) (source.Plan, error) {
	dir, ok := req.Parsed.(string)
	if !ok {
		return source.Plan{}, fmt.Errorf("layout source: request %s:%s was not identified here", req.Name, req.Tag)
	}
	index, err := ocilayout.ReadIndex(dir)
	if err != nil {
		return source.Plan{}, err
	}
	sum := sha256.Sum256(index)
	return source.Plan{
		Request: req,
		Key:     req.Key + "|" + hex.EncodeToString(sum[:]),
		Pinned:  true,
		Work:    layoutPlan{dir: dir, index: index},
	}, nil
}

// Build ingests the planned layout.
func (s *Source) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	lp, ok := plan.Work.(layoutPlan)
	if !ok {
		return nil, fmt.Errorf("layout source: plan for %s:%s was not made here", plan.Request.Name, plan.Request.Tag)
	}
	name, tag, dir := plan.Request.Name, plan.Request.Tag, lp.dir
	log := requestid.Logger(ctx, s.log).WithFields(logrus.Fields{"image": name, "tag": tag, "layout": dir})
	source.ProgressOf(ctx).Phase(source.Archiving)
	m, err := ocilayout.Ingest(ctx, s.opts.Storage, dir, lp.index, log)
	if err != nil {
		if ctx.Err() != nil {
			log.WithError(err).Info("layout ingest stopped")
		} else {
			log.WithError(err).Warn("pre-built layout rejected")
		}
		return nil, err
	}
	return m, nil
}

// resolveDir is dir, relative to base unless it is absolute.
func resolveDir(base, dir string) string {
	if filepath.IsAbs(dir) {
		return filepath.Clean(dir)
	}
	return filepath.Join(base, dir)
}
