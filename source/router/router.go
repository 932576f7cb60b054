// Package router decides which source makes the images of which
// repository names. The routes file (NIXPORT_ROUTES) is a small JSON
// document:
//
//	{"routes": [
//	  {"match": "bazel/", "type": "command",
//	   "argv": ["/srv/bazel-image", "{name}", "{tag}", "{out}"],
//	   "timeout": "10m", "pinned": false, "dir": "/srv/monorepo",
//	   "env": {"BAZEL_OUTPUT_USER_ROOT": "/var/cache/bazel"}},
//	  {"match": "prebuilt/", "type": "layout", "manifest": "layouts.json"}
//	]}
//
// match is a repository-name prefix ending in "/" (it matches the names
// under it, at a component boundary: "bazel/" matches "bazel/app" but
// neither "bazel" nor "bazelisk/app") or an exact repository name. Routes
// are tried in order and the first match wins; a route that an earlier one
// makes unreachable is an error. A name no route matches goes to the Nix
// source, so without a routes file everything is built from Nix.
//
// A command route runs argv (see package command for the placeholders) with the
// route's timeout (default NIX_TIMEOUT), working directory (default the
// routes file's directory) and environment (PATH, HOME, USER, LOGNAME,
// LANG, LC_ALL, TZ and TMPDIR of the server's, plus env). pinned says its
// output is a pure function of name and tag (default false: a moving tag).
// A program given as a relative path with a "/" is relative to the routes
// file's directory, one without "/" is looked up in PATH when the file is
// loaded. A layout route serves the pre-built layouts its manifest file
// maps (see package layout); a relative path is relative to the routes
// file's directory. Unknown fields, and fields of the other type, are
// errors: the file is checked strictly, and every error names the route
// and the field.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/jsonfile"
	"github.com/nixport/nixport/reference"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/command"
	"github.com/nixport/nixport/source/layout"
	"github.com/nixport/nixport/storage"
)

// Bounds of a routes file.
const (
	maxRoutesFileBytes = 1 << 20
	maxRoutes          = 1000
	maxRouteTimeout    = 24 * time.Hour
)

// Route types.
const (
	RouteCommand = "command"
	RouteLayout  = "layout"
)

// Options configure Load.
type Options struct {
	Storage storage.Backend
	Log     logrus.FieldLogger
	// CommandTimeout is the deadline of a command route that sets none
	// (NIX_TIMEOUT). Required when the file has command routes.
	CommandTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL to a command's
	// process group. Zero means command.DefaultKillGrace.
	KillGrace time.Duration
	// TempDir is where commands' output directories are made. Empty:
	// os.TempDir().
	TempDir string
}

// Router is a Source that hands each repository name to the source of the
// first route matching it, or to the fallback (the Nix source).
type Router struct {
	routes   []route
	fallback source.Source
}

type route struct {
	matcher
	typ     string
	src     source.Source
	timeout time.Duration // of a command route
}

// matcher matches repository names: a prefix ending in "/" matches the
// names under it, anything else one exact name.
type matcher struct {
	match  string
	prefix bool
}

func newMatcher(match string) (matcher, bool) {
	base, prefix := strings.CutSuffix(match, "/")
	if !validRepoName(base) {
		return matcher{}, false
	}
	return matcher{match: match, prefix: prefix}, true
}

func (m matcher) matches(name string) bool {
	if m.prefix {
		return len(name) > len(m.match) && strings.HasPrefix(name, m.match)
	}
	return name == m.match
}

// covers reports whether m matches every name o matches.
func (m matcher) covers(o matcher) bool {
	if !m.prefix {
		return !o.prefix && o.match == m.match
	}
	return strings.HasPrefix(o.match, m.match)
}

// Load reads the routes file at path and returns a Router over its
// routes, with fallback serving every other name. An empty path means no
// routes: everything goes to fallback. A nil fallback answers other names
// NAME_UNKNOWN.
func Load(path string, fallback source.Source, opts Options) (*Router, error) {
	r := &Router{fallback: fallback}
	if path == "" {
		return r, nil
	}
	if opts.Storage == nil {
		return nil, errors.New("routes: no storage")
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("routes file %s: %w", path, err)
	}
	data, err := jsonfile.Read(abs, maxRoutesFileBytes)
	if err != nil {
		return nil, fmt.Errorf("routes file: %w", err)
	}
	configs, err := parseRoutes(data)
	if err != nil {
		return nil, fmt.Errorf("routes file %s: %w", abs, err)
	}
	base := filepath.Dir(abs)
	for i, c := range configs {
		rt, err := c.open(base, opts)
		if err != nil {
			return nil, fmt.Errorf("routes file %s: %s: %w", abs, c.label(i), err)
		}
		r.routes = append(r.routes, rt)
	}
	opts.Log.WithFields(logrus.Fields{"file": abs, "routes": len(r.routes)}).Info("image routes loaded")
	return r, nil
}

// pick returns the source serving name.
func (r *Router) pick(name string) (source.Source, error) {
	for _, rt := range r.routes {
		if rt.matches(name) {
			return rt.src, nil
		}
	}
	if r.fallback == nil {
		return nil, errcode.New(errcode.NameUnknown, "no route serves repository %.100q", name)
	}
	return r.fallback, nil
}

// Identify asks the source of name's route; source.Plan and Build go to the same
// source, whatever the routes are by then.
func (r *Router) Identify(name, tag string) (source.Request, error) {
	src, err := r.pick(name)
	if err != nil {
		return source.Request{}, err
	}
	req, err := src.Identify(name, tag)
	if err != nil {
		return source.Request{}, err
	}
	inner := req
	req.Parsed = routed{src: src, req: inner}
	return req, nil
}

// routed is a request or plan and the source it belongs to.
type routed struct {
	src  source.Source
	req  source.Request
	plan source.Plan
}

// source.Plan asks the source that identified the request.
func (r *Router) Plan(ctx context.Context, req source.Request) (source.Plan, error) {
	rt, ok := req.Parsed.(routed)
	if !ok {
		return source.Plan{}, fmt.Errorf("router: request %s:%s was not identified by the router", req.Name, req.Tag)
	}
	plan, err := rt.src.Plan(ctx, rt.req)
	if err != nil {
		return source.Plan{}, err
	}
	inner := plan
	plan.Request = req
	plan.Work = routed{src: rt.src, plan: inner}
	return plan, nil
}

// Build asks the source that made the plan.
func (r *Router) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	rt, ok := plan.Work.(routed)
	if !ok {
		return nil, fmt.Errorf("router: plan for %s:%s was not made by the router", plan.Request.Name, plan.Request.Tag)
	}
	return rt.src.Build(ctx, rt.plan)
}

// MaxCommandTimeout is the longest deadline of a command route (zero when
// there is none): the Builder's BuildTimeout must leave a command that
// long, plus its kill grace and the ingest.
func (r *Router) MaxCommandTimeout() time.Duration {
	var max time.Duration
	for _, rt := range r.routes {
		max = maxDuration(max, rt.timeout)
	}
	return max
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// routeConfig is one checked route of the file, before it is opened.
type routeConfig struct {
	matcher
	Type     string
	Argv     []string
	Timeout  time.Duration // zero: the default
	Pinned   bool
	Dir      string
	Env      []string // KEY=value, sorted
	Manifest string
}

func (c routeConfig) label(i int) string {
	return fmt.Sprintf("route %d (match %.100q)", i+1, c.match)
}

// routeSpec is a route as written; pointers tell absent fields.
type routeSpec struct {
	Match    *string            `json:"match"`
	Type     *string            `json:"type"`
	Argv     *[]string          `json:"argv"`
	Timeout  *string            `json:"timeout"`
	Pinned   *bool              `json:"pinned"`
	Dir      *string            `json:"dir"`
	Env      *map[string]string `json:"env"`
	Manifest *string            `json:"manifest"`
}

// parseRoutes parses and checks a routes file, without touching anything
// it names.
func parseRoutes(data []byte) ([]routeConfig, error) {
	var file struct {
		Routes *[]json.RawMessage `json:"routes"`
	}
	if err := jsonfile.DecodeStrict(data, &file); err != nil {
		return nil, err
	}
	if file.Routes == nil {
		return nil, errors.New(`no "routes" list`)
	}
	if len(*file.Routes) > maxRoutes {
		return nil, fmt.Errorf("%d routes, more than %d", len(*file.Routes), maxRoutes)
	}
	configs := make([]routeConfig, 0, len(*file.Routes))
	for i, raw := range *file.Routes {
		c, err := parseRoute(raw)
		if err != nil {
			label := fmt.Sprintf("route %d", i+1)
			if c.match != "" {
				label = c.label(i)
			}
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		for j, earlier := range configs {
			if earlier.covers(c.matcher) {
				return nil, fmt.Errorf("%s is never used: %s matches every name it does", c.label(i), earlier.label(j))
			}
		}
		configs = append(configs, c)
	}
	return configs, nil
}

func parseRoute(raw json.RawMessage) (routeConfig, error) {
	var s routeSpec
	var c routeConfig
	err := jsonfile.DecodeStrict(raw, &s)
	if s.Match != nil {
		// Set even when invalid: errors name the route by it.
		c.match = *s.Match
	}
	if err != nil {
		return c, err
	}
	if s.Match == nil {
		return c, errors.New(`field "match" is missing`)
	}
	m, ok := newMatcher(*s.Match)
	if !ok {
		return c, fmt.Errorf(`field "match": %.100q is neither a repository name nor a name prefix ending in "/"`, *s.Match)
	}
	c.matcher = m
	if s.Type == nil {
		return c, errors.New(`field "type" is missing: "command" or "layout"`)
	}
	c.Type = *s.Type
	// Fields each type allows.
	fields := map[string]bool{"argv": s.Argv != nil, "timeout": s.Timeout != nil, "pinned": s.Pinned != nil,
		"dir": s.Dir != nil, "env": s.Env != nil, "manifest": s.Manifest != nil}
	var allowed []string
	switch c.Type {
	case RouteCommand:
		allowed = []string{"argv", "timeout", "pinned", "dir", "env"}
	case RouteLayout:
		allowed = []string{"manifest"}
	default:
		return c, fmt.Errorf(`field "type": %.40q is not "command" or "layout"`, c.Type)
	}
	for _, f := range []string{"argv", "timeout", "pinned", "dir", "env", "manifest"} {
		if fields[f] && !slices.Contains(allowed, f) {
			return c, fmt.Errorf("field %q does not belong in a %s route", f, c.Type)
		}
	}
	if c.Type == RouteLayout {
		if s.Manifest == nil || *s.Manifest == "" {
			return c, errors.New(`field "manifest" is missing: name the file mapping repository:tag to layout directories`)
		}
		if strings.IndexByte(*s.Manifest, 0) >= 0 {
			return c, errors.New(`field "manifest" holds a NUL byte`)
		}
		c.Manifest = *s.Manifest
		return c, nil
	}

	if s.Argv == nil {
		return c, errors.New(`field "argv" is missing: the program and its arguments`)
	}
	c.Argv = *s.Argv
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return c, errors.New(`field "argv": name the program to run first`)
	}
	if err := command.CheckArgv(c.Argv); err != nil {
		return c, fmt.Errorf(`field "argv": %w`, err)
	}
	if s.Timeout != nil {
		d, err := time.ParseDuration(*s.Timeout)
		if err != nil || d <= 0 || d > maxRouteTimeout {
			return c, fmt.Errorf(`field "timeout": %.40q is not a duration between 0 and %s, such as "10m"`, *s.Timeout, maxRouteTimeout)
		}
		c.Timeout = d
	}
	if s.Pinned != nil {
		c.Pinned = *s.Pinned
	}
	if s.Dir != nil {
		if *s.Dir == "" || strings.IndexByte(*s.Dir, 0) >= 0 {
			return c, errors.New(`field "dir" is empty or holds a NUL byte`)
		}
		c.Dir = *s.Dir
	}
	if s.Env != nil {
		for k, v := range *s.Env {
			if !command.ValidEnvName(k) {
				return c, fmt.Errorf(`field "env": %.100q is not a variable name`, k)
			}
			if strings.IndexByte(v, 0) >= 0 {
				return c, fmt.Errorf(`field "env": the value of %s holds a NUL byte`, k)
			}
			c.Env = append(c.Env, k+"="+v)
		}
		slices.Sort(c.Env)
	}
	return c, nil
}

// open makes the route's source: paths resolved against base (the routes
// file's directory), programs and manifest files checked now, so that a
// mistake stops the server at start-up rather than failing requests.
func (c routeConfig) open(base string, opts Options) (route, error) {
	rt := route{matcher: c.matcher, typ: c.Type}
	log := opts.Log.WithField("route", c.match)
	if c.Type == RouteLayout {
		src, err := layout.New(layout.Options{
			Route:    c.match,
			Manifest: resolvePath(base, c.Manifest),
			Accepts:  c.matches,
			Storage:  opts.Storage,
			Log:      log,
		})
		if err != nil {
			return rt, fmt.Errorf(`field "manifest": %w`, err)
		}
		rt.src = src
		return rt, nil
	}

	program, err := resolveProgram(base, c.Argv[0])
	if err != nil {
		return rt, fmt.Errorf(`field "argv": %w`, err)
	}
	dir := base
	if c.Dir != "" {
		dir = resolvePath(base, c.Dir)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return rt, fmt.Errorf(`field "dir": %s is not a directory`, dir)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = opts.CommandTimeout
	}
	if timeout <= 0 {
		return rt, errors.New(`field "timeout": none given and no default (NIX_TIMEOUT)`)
	}
	env := mergeEnv(command.DefaultEnv(), c.Env)
	src, err := command.New(command.Options{
		Route:     c.match,
		Argv:      append([]string{program}, c.Argv[1:]...),
		Dir:       dir,
		Env:       env,
		Timeout:   timeout,
		KillGrace: opts.KillGrace,
		Pinned:    c.Pinned,
		TempDir:   opts.TempDir,
		Storage:   opts.Storage,
		Log:       log,
	})
	if err != nil {
		return rt, fmt.Errorf(`field "argv": %w`, err)
	}
	rt.src, rt.timeout = src, timeout
	return rt, nil
}

func resolvePath(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// resolveProgram finds an executable: a path with a "/" relative to base,
// a bare name in PATH.
func resolveProgram(base, program string) (string, error) {
	if !strings.Contains(program, "/") {
		p, err := exec.LookPath(program)
		if err != nil {
			return "", fmt.Errorf("program %q not found in PATH: %w", program, err)
		}
		return filepath.Abs(p)
	}
	p := resolvePath(base, program)
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("program %s: %w", p, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("program %s is not an executable file", p)
	}
	return p, nil
}

// mergeEnv returns base with the KEY=value entries of extra added,
// replacing entries of the same key.
func mergeEnv(base, extra []string) []string {
	env := make([]string, 0, len(base)+len(extra))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// validRepoName reports whether name is a repository name within the one
// bound (reference.CheckName).
func validRepoName(name string) bool { return reference.CheckName(name) == nil }
