package router

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/source/command"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

func TestRoutesParse(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr string // empty: valid
		check   func(t *testing.T, cs []routeConfig)
	}{
		{name: "empty list", data: `{"routes": []}`},
		{name: "both types", data: `{"routes": [
			{"match": "bazel/", "type": "command", "argv": ["./wrap", "{name}", "{tag}", "{out}"], "timeout": "10m", "pinned": true, "dir": "ws", "env": {"B": "2", "A": "1"}},
			{"match": "prebuilt/", "type": "layout", "manifest": "layouts.json"},
			{"match": "exact/name", "type": "layout", "manifest": "/abs/l.json"}]}`,
			check: func(t *testing.T, cs []routeConfig) {
				c := cs[0]
				if !c.prefix || c.Type != RouteCommand || c.Timeout != 10*time.Minute || !c.Pinned || c.Dir != "ws" ||
					strings.Join(c.Env, ",") != "A=1,B=2" || len(c.Argv) != 4 {
					t.Errorf("command route %+v", c)
				}
				if cs[1].Manifest != "layouts.json" || cs[2].prefix || !cs[2].matches("exact/name") || cs[2].matches("exact/name/x") {
					t.Errorf("layout routes %+v", cs[1:])
				}
			}},
		{name: "not JSON", data: `{"routes": [`, wantErr: "malformed JSON"},
		{name: "no routes", data: `{}`, wantErr: `no "routes" list`},
		{name: "unknown top-level field", data: `{"routes": [], "rutes": []}`, wantErr: `unknown field "rutes"`},
		{name: "trailing data", data: `{"routes": []} {}`, wantErr: "data after the JSON value"},
		{name: "routes not a list", data: `{"routes": {}}`, wantErr: `field "routes": a JSON object where a list belongs`},
		{name: "unknown route field", data: `{"routes": [{"match": "a/", "type": "layout", "manifest": "m", "manifets": "x"}]}`,
			wantErr: `route 1 (match "a/"): unknown field "manifets"`},
		{name: "missing match", data: `{"routes": [{"type": "layout", "manifest": "m"}]}`, wantErr: `route 1: field "match" is missing`},
		{name: "bad match", data: `{"routes": [{"match": "Bazel/", "type": "layout", "manifest": "m"}]}`,
			wantErr: `route 1 (match "Bazel/"): field "match": "Bazel/" is neither a repository name nor a name prefix`},
		{name: "match only slash", data: `{"routes": [{"match": "/", "type": "layout", "manifest": "m"}]}`, wantErr: `field "match"`},
		{name: "match two slashes", data: `{"routes": [{"match": "a//", "type": "layout", "manifest": "m"}]}`, wantErr: `field "match"`},
		{name: "missing type", data: `{"routes": [{"match": "a/"}]}`, wantErr: `route 1 (match "a/"): field "type" is missing`},
		{name: "bad type", data: `{"routes": [{"match": "a/", "type": "nix"}]}`, wantErr: `field "type": "nix" is not "command" or "layout"`},
		{name: "wrong field type", data: `{"routes": [{"match": "a/", "type": "command", "argv": "/bin/x {out}"}]}`,
			wantErr: `route 1 (match "a/"): field "argv": a JSON string where a list belongs`},
		{name: "pinned not bool", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{out}"], "pinned": "yes"}]}`,
			wantErr: `field "pinned": a JSON string where a boolean belongs`},
		{name: "argv in a layout route", data: `{"routes": [{"match": "a/", "type": "layout", "manifest": "m", "argv": ["/x"]}]}`,
			wantErr: `route 1 (match "a/"): field "argv" does not belong in a layout route`},
		{name: "manifest in a command route", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{out}"], "manifest": "m"}]}`,
			wantErr: `field "manifest" does not belong in a command route`},
		{name: "no manifest", data: `{"routes": [{"match": "a/", "type": "layout"}]}`, wantErr: `field "manifest" is missing`},
		{name: "no argv", data: `{"routes": [{"match": "a/", "type": "command"}]}`, wantErr: `field "argv" is missing`},
		{name: "empty argv", data: `{"routes": [{"match": "a/", "type": "command", "argv": []}]}`, wantErr: `field "argv": name the program`},
		{name: "no out", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{name}"]}]}`, wantErr: `field "argv": no element of argv holds {out}`},
		{name: "unknown placeholder", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{nam}", "{out}"]}]}`,
			wantErr: `field "argv": argv[1] "{nam}": unknown placeholder {nam}`},
		{name: "placeholder in program", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/bin/{name}", "{out}"]}]}`,
			wantErr: `may not hold a placeholder`},
		{name: "bad timeout", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{out}"], "timeout": "10"}]}`,
			wantErr: `field "timeout": "10" is not a duration`},
		{name: "negative timeout", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{out}"], "timeout": "-1m"}]}`,
			wantErr: `field "timeout"`},
		{name: "bad env name", data: `{"routes": [{"match": "a/", "type": "command", "argv": ["/x", "{out}"], "env": {"A=B": "1"}}]}`,
			wantErr: `field "env": "A=B" is not a variable name`},
		{name: "shadowed exact", data: `{"routes": [{"match": "a/", "type": "layout", "manifest": "m"}, {"match": "a/b", "type": "layout", "manifest": "m"}]}`,
			wantErr: `route 2 (match "a/b") is never used: route 1 (match "a/") matches every name it does`},
		{name: "shadowed prefix", data: `{"routes": [{"match": "a/", "type": "layout", "manifest": "m"}, {"match": "a/b/", "type": "layout", "manifest": "m"}]}`,
			wantErr: `route 2 (match "a/b/") is never used`},
		{name: "duplicate", data: `{"routes": [{"match": "a", "type": "layout", "manifest": "m"}, {"match": "a", "type": "layout", "manifest": "m"}]}`,
			wantErr: `route 2 (match "a") is never used`},
		{name: "exact before prefix is fine", data: `{"routes": [{"match": "a/b", "type": "layout", "manifest": "m"}, {"match": "a/", "type": "layout", "manifest": "m"}, {"match": "a", "type": "layout", "manifest": "m"}]}`},
		{name: "no boundary confusion", data: `{"routes": [{"match": "a/", "type": "layout", "manifest": "m"}, {"match": "ab/", "type": "layout", "manifest": "m"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := parseRoutes([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, cs)
			}
		})
	}
}

func TestRouteMatching(t *testing.T) {
	tests := []struct {
		match string
		yes   []string
		no    []string
	}{
		{"bazel/", []string{"bazel/app", "bazel/a/b"}, []string{"bazel", "bazelisk/app", "bazel/", "x/bazel/app"}},
		{"bazel", []string{"bazel"}, []string{"bazel/app", "bazelisk"}},
		{"a/b/", []string{"a/b/c"}, []string{"a/b", "a/bc/d", "a/c"}},
	}
	for _, tt := range tests {
		m, ok := newMatcher(tt.match)
		if !ok {
			t.Fatalf("%q rejected", tt.match)
		}
		for _, n := range tt.yes {
			if !m.matches(n) {
				t.Errorf("%q does not match %q", tt.match, n)
			}
		}
		for _, n := range tt.no {
			if m.matches(n) {
				t.Errorf("%q matches %q", tt.match, n)
			}
		}
	}
}

// fakeNix stands in for the Nix source behind a Router: it counts its
// builds and stores a tiny manifest for each.
type fakeNix struct {
	store  storage.Backend
	builds atomic.Int32
}

func (f *fakeNix) Identify(name, tag string) (source.Request, error) {
	return source.Request{Name: name, Tag: tag, Key: name + ":" + tag}, nil
}

func (f *fakeNix) Plan(_ context.Context, req source.Request) (source.Plan, error) {
	return source.Plan{Request: req, Key: req.Key}, nil
}

func (f *fakeNix) Build(ctx context.Context, plan source.Plan) (source.Manifests, error) {
	n := f.builds.Add(1)
	body := fmt.Sprintf(`{"schemaVersion":2,"name":%q,"build":%d}`, plan.Request.Name, n)
	info, err := storage.PutBlob(ctx, f.store, v1.MediaTypeImageManifest, "", -1, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	return source.Manifests{manifest.OCI: info}, nil
}

func TestRouterDispatches(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	dir := t.TempDir()
	testkit.CopyDir(t, testkit.GenLayout(t, bin, "-platforms=arm64"), filepath.Join(dir, "layouts", "a"))
	testkit.WriteFile(t, filepath.Join(dir, "images.json"), []byte(`{"pre/app:latest": "layouts/a"}`))
	// A program named relative to the routes file.
	if err := os.MkdirAll(filepath.Join(dir, "tools"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tools", "gen"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	routes := writeRoutes(t, dir,
		map[string]any{"match": "pre/app", "type": "layout", "manifest": "images.json"},
		map[string]any{"match": "cmd/", "type": "command", "argv": []string{"tools/gen", "{name}", "{tag}", "{out}"}, "timeout": "45s"},
	)
	nix := &fakeNix{store: store}
	router, err := Load(routes, nix, Options{Storage: store, Log: testkit.QuietLog(), CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := router.MaxCommandTimeout(); d != 45*time.Second {
		t.Errorf("MaxCommandTimeout %s", d)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name, keyPrefix string
		pinned          bool
		nixBuilds       int32
	}{
		{"pre/app", "layout|", false, 0}, // a layout's plan is pinned, not the request
		{"cmd/app", "command|", false, 0},
		{"pre/app/x", "pre/app/x:", false, 1}, // an exact route: the name under it is Nix's
		{"shell/git", "shell/git:", false, 2},
	} {
		req, err := router.Identify(tt.name, "latest")
		if err != nil || !strings.HasPrefix(req.Key, tt.keyPrefix) || req.Pinned != tt.pinned {
			t.Errorf("Identify %s: %+v %v", tt.name, req, err)
		}
		if _, err := source.BuildOnce(ctx, router, tt.name, "latest"); err != nil {
			t.Errorf("Build %s: %v", tt.name, err)
		}
		if n := nix.builds.Load(); n != tt.nixBuilds {
			t.Errorf("after %s: %d Nix builds, want %d", tt.name, n, tt.nixBuilds)
		}
	}

	// No routes file: everything from Nix; no Nix either: NAME_UNKNOWN.
	plain, err := Load("", nix, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if req, err := plain.Identify("pre/app", "latest"); err != nil || req.Key != "pre/app:latest" {
		t.Errorf("without routes: %+v %v", req, err)
	}
	noNix, err := Load(routes, nil, Options{Storage: store, Log: testkit.QuietLog(), CommandTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noNix.Identify("shell/git", "latest")
	testkit.WantCode(t, err, errcode.NameUnknown, `no route serves repository "shell/git"`)
}

func TestRoutesLoadErrors(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, filepath.Join(dir, "images.json"), []byte(`{"pre/app:latest": "a"}`))
	testkit.WriteFile(t, filepath.Join(dir, "notexec"), []byte("#!/bin/sh\n"))
	store, _ := testkit.NewFSStore(t)
	tests := []struct {
		name    string
		route   map[string]any
		wantErr string
	}{
		{"missing program", map[string]any{"match": "a/", "type": "command", "argv": []string{"./nope", "{out}"}},
			`route 1 (match "a/"): field "argv": program ` + filepath.Join(dir, "nope")},
		{"program not executable", map[string]any{"match": "a/", "type": "command", "argv": []string{"./notexec", "{out}"}},
			"is not an executable file"},
		{"program not in PATH", map[string]any{"match": "a/", "type": "command", "argv": []string{"no-such-program-here", "{out}"}},
			`program "no-such-program-here" not found in PATH`},
		{"missing dir", map[string]any{"match": "a/", "type": "command", "argv": []string{"sh", "{out}"}, "dir": "nowhere"},
			`field "dir": ` + filepath.Join(dir, "nowhere") + " is not a directory"},
		{"missing layout manifest", map[string]any{"match": "a/", "type": "layout", "manifest": "none.json"},
			`route 1 (match "a/"): field "manifest": layout manifest: `},
		{"layout manifest outside the route", map[string]any{"match": "a/", "type": "layout", "manifest": "images.json"},
			`the route does not serve repository pre/app`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes := writeRoutes(t, dir, tt.route)
			_, err := Load(routes, nil, Options{Storage: store, Log: testkit.QuietLog(), CommandTimeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "routes file "+routes) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "none.json"), nil, Options{Storage: store}); err == nil {
		t.Error("a missing routes file was accepted")
	}
}

// FuzzParseRoutes: whatever the routes file holds, parsing does not panic
// and accepts only routes that are fully valid.
func FuzzParseRoutes(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzParseRoutes.
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := parseRoutes(data)
		if err != nil {
			return
		}
		for i, c := range cs {
			if _, ok := newMatcher(c.match); !ok {
				t.Fatalf("route %d: match %q accepted", i, c.match)
			}
			for j := range i {
				if cs[j].covers(c.matcher) {
					t.Fatalf("route %d shadowed by %d accepted", i, j)
				}
			}
			switch c.Type {
			case RouteLayout:
				if c.Manifest == "" || c.Argv != nil {
					t.Fatalf("layout route %+v", c)
				}
			case RouteCommand:
				if err := command.CheckArgv(c.Argv); err != nil || c.Manifest != "" || c.Timeout < 0 {
					t.Fatalf("command route %+v: %v", c, err)
				}
			default:
				t.Fatalf("type %q accepted", c.Type)
			}
		}
	})
}
