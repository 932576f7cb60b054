package layout

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/ocilayout"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// underPre accepts the names a route "pre/" serves.
func underPre(name string) bool { return strings.HasPrefix(name, "pre/") && len(name) > len("pre/") }

func TestLayoutSourceServesAndRereadsItsManifest(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	dir := t.TempDir()
	amd, arm := testkit.GenLayout(t, bin), testkit.GenLayout(t, bin, "-platforms=arm64")
	testkit.CopyDir(t, amd, filepath.Join(dir, "layouts", "a"))
	testkit.CopyDir(t, arm, filepath.Join(dir, "layouts", "b"))
	mapping := filepath.Join(dir, "images.json")
	testkit.WriteFile(t, mapping, []byte(`{"pre/app:latest": "layouts/a", "pre/app:v1": "`+filepath.Join(dir, "layouts", "b")+`"}`))

	log, hook := logtest.NewNullLogger()
	src, err := New(Options{Route: "pre/", Manifest: mapping, Accepts: underPre, Storage: store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// serves checks that name:tag is served with architecture arch and
	// returns the key of its plan: the request is a moving one (the
	// directory may be rebuilt), the plan pinned to the index it read.
	serves := func(tag, arch string) string {
		t.Helper()
		req, err := src.Identify("pre/app", tag)
		if err != nil || req.Pinned {
			t.Fatalf("Identify pre/app:%s: %+v %v", tag, req, err)
		}
		plan, err := src.Plan(ctx, req)
		if err != nil || !plan.Pinned {
			t.Fatalf("source.Plan pre/app:%s: %+v %v", tag, plan, err)
		}
		got, err := src.Build(ctx, plan)
		if err != nil {
			t.Fatal(err)
		}
		if archs := testkit.CheckStored(t, store, got[manifest.OCI]); len(archs) != 1 || archs[0] != arch {
			t.Fatalf("pre/app:%s serves %v, want %s", tag, archs, arch)
		}
		return plan.Key
	}
	keyA := serves("latest", "amd64")
	serves("v1", "arm64")

	_, err = src.Identify("pre/app", "v2")
	testkit.WantCode(t, err, errcode.ManifestUnknown, "no pre-built image pre/app:v2")
	_, err = src.Identify("other/app", "latest")
	testkit.WantCode(t, err, errcode.NameUnknown)
	_, err = src.Identify("pre/App", "latest")
	testkit.WantCode(t, err, errcode.NameInvalid)

	// The mapping changes: the next request sees it.
	testkit.Rewrite(t, mapping, `{"pre/app:latest": "layouts/b", "pre/app:v2": "layouts/a"}`)
	if key := serves("latest", "arm64"); key == keyA {
		t.Error("a remapped tag kept its key")
	}
	serves("v2", "amd64")
	_, err = src.Identify("pre/app", "v1")
	testkit.WantCode(t, err, errcode.ManifestUnknown)

	// A layout rebuilt in place gets a new key at once.
	keyB := serves("latest", "arm64")
	testkit.CopyDir(t, amd, filepath.Join(dir, "layouts", "b"))
	if key := serves("latest", "amd64"); key == keyB {
		t.Error("a rebuilt layout kept its key")
	}

	// A broken mapping is logged once and the last valid one kept.
	testkit.Rewrite(t, mapping, `{"pre/app:latest": "layouts/b", "pre/app:latest": "layouts/a"}`)
	for range 3 {
		serves("latest", "amd64")
	}
	var logged int
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "not valid") {
			logged++
			if err, _ := e.Data["error"].(error); err == nil || !strings.Contains(err.Error(), `"pre/app:latest" is mapped twice`) {
				t.Errorf("logged %v", e.Data)
			}
		}
	}
	if logged != 1 {
		t.Errorf("a broken mapping was logged %d times, want once", logged)
	}
	// Fixed again, in place this time (same inode): seen too.
	testkit.WriteFile(t, mapping, []byte(`{"pre/app:latest": "layouts/a", "pre/app:v3": "layouts/a"}`))
	serves("v3", "amd64")

	// A mapped directory that is not a layout: the client is told.
	testkit.WriteFile(t, mapping, []byte(`{"pre/app:latest": "nowhere"}`))
	req, err := src.Identify("pre/app", "latest")
	if err != nil || req.Pinned || req.Key == "" {
		t.Errorf("Identify of a missing layout: %+v %v", req, err)
	}
	_, err = src.Plan(ctx, req)
	testkit.WantCode(t, err, errcode.BuildFailed, "the layout directory cannot be opened")
}

func TestLayoutManifestParse(t *testing.T) {
	tests := []struct {
		data    string
		want    map[string]string
		wantErr string
	}{
		{data: `{}`, want: map[string]string{}},
		{data: `{"pre/a:latest": "x", "pre/b/c:v1.0": "/abs/y"}`, want: map[string]string{"pre/a:latest": "/base/x", "pre/b/c:v1.0": "/abs/y"}},
		{data: `{"pre/a:latest": "../x"}`, want: map[string]string{"pre/a:latest": "/x"}},
		{data: `[]`, wantErr: "want a JSON object"},
		{data: ``, wantErr: "want a JSON object"},
		{data: `{"pre/a:latest": "x"} {}`, wantErr: "data after the JSON object"},
		{data: `{"pre/a:latest": "x"`, wantErr: "malformed JSON"},
		{data: `{"pre/a": "x"}`, wantErr: `"pre/a" is not repository:tag`},
		{data: `{"pre/A:latest": "x"}`, wantErr: "invalid repository name"},
		{data: `{"pre/a:-x": "x"}`, wantErr: "invalid tag"},
		{data: `{"other/a:latest": "x"}`, wantErr: "the route does not serve repository other/a"},
		{data: `{"pre/a:latest": 3}`, wantErr: "want a directory (a string)"},
		{data: `{"pre/a:latest": ""}`, wantErr: "the directory is empty"},
		{data: `{"pre/a:latest": "x", "pre/a:latest": "y"}`, wantErr: "mapped twice"},
	}
	for _, tt := range tests {
		got, err := parseLayoutManifest([]byte(tt.data), "/base", underPre)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.data, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("%s: %v %v, want %v", tt.data, got, err, tt.want)
			continue
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%s: %s → %q, want %q", tt.data, k, got[k], v)
			}
		}
	}
}

// FuzzLayoutManifest: whatever the file holds, parsing does not panic and
// accepts only valid names and tags under the route.
func FuzzLayoutManifest(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzLayoutManifest.
	f.Fuzz(func(t *testing.T, data []byte) {
		images, err := parseLayoutManifest(data, "/base", underPre)
		if err != nil {
			return
		}
		for key, dir := range images {
			i := strings.LastIndexByte(key, ':')
			if i < 0 || source.CheckNameTag(key[:i], key[i+1:]) != nil || !underPre(key[:i]) {
				t.Fatalf("accepted key %q", key)
			}
			if !filepath.IsAbs(dir) {
				t.Fatalf("directory %q is not absolute", dir)
			}
		}
	})
}

// TestLayoutRewrittenBetweenPlanAndBuild: a layout rewritten after it was
// planned is never built under the old plan's key: the build gives the
// planned content or fails, and the next plan has a new key and the new
// content.
func TestLayoutRewrittenBetweenPlanAndBuild(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	dir := t.TempDir()
	amd, arm := testkit.GenLayout(t, bin), testkit.GenLayout(t, bin, "-platforms=arm64")
	layout := filepath.Join(dir, "layouts", "a")
	testkit.CopyDir(t, amd, layout)
	mapping := filepath.Join(dir, "images.json")
	testkit.WriteFile(t, mapping, []byte(`{"pre/app:latest": "layouts/a"}`))
	src, err := New(Options{Route: "pre/", Manifest: mapping, Storage: store, Log: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		rewrite func()
	}{
		// Rewritten over the old files: the old blobs are still there.
		{"rewritten in place", func() { testkit.CopyDir(t, arm, layout) }},
		// Replaced by a new directory: the old blobs are gone.
		{"replaced", func() {
			if err := os.RemoveAll(layout); err != nil {
				t.Fatal(err)
			}
			testkit.CopyDir(t, amd, layout)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := src.Identify("pre/app", "latest")
			if err != nil {
				t.Fatal(err)
			}
			before, err := src.Plan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			wantArch := checkStoredArch(t, store, layout, before)
			tt.rewrite()
			// The old plan: its own content, or an error; never the new.
			if got, err := src.Build(ctx, before); err == nil {
				if archs := testkit.CheckStored(t, store, got[manifest.OCI]); len(archs) != 1 || archs[0] != wantArch {
					t.Errorf("the old plan built %v, want its own %s", archs, wantArch)
				}
			} else {
				testkit.WantCode(t, err, errcode.BuildFailed)
			}
			after, err := src.Plan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if after.Key == before.Key {
				t.Fatal("the rewritten layout planned the old key")
			}
			got, err := src.Build(ctx, after)
			if err != nil {
				t.Fatal(err)
			}
			newArch := "arm64"
			if tt.name == "replaced" {
				newArch = "amd64"
			}
			if archs := testkit.CheckStored(t, store, got[manifest.OCI]); len(archs) != 1 || archs[0] != newArch {
				t.Errorf("the new plan built %v, want %s", archs, newArch)
			}
		})
	}
}

// checkStoredArch is the architecture of the image a plan's index names,
// read from the layout's index as planned (not built).
func checkStoredArch(t *testing.T, store storage.Backend, layout string, plan source.Plan) string {
	t.Helper()
	lp := plan.Work.(layoutPlan)
	m, err := ocilayout.Ingest(context.Background(), store, layout, lp.index, testkit.QuietLog())
	if err != nil {
		t.Fatal(err)
	}
	archs := testkit.CheckStored(t, store, m[manifest.OCI])
	if len(archs) != 1 {
		t.Fatalf("planned image has platforms %v", archs)
	}
	return archs[0]
}
