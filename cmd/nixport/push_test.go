package main

// End-to-end tests of the push namespaces: the whole OCI conformance suite
// against a push repository, on filesystem and GCS storage, and Docker
// Engine pushing an image built FROM a nixport image.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/storage/gcs/gcstest"
	"github.com/nixport/nixport/storage/s3/s3test"
)

// TestOCIConformancePush runs the whole conformance suite (push, pull,
// content discovery, content management, sha256 and sha512, upload
// cancel) against repositories under a push namespace: every test must
// pass, none skipped, and no request be answered with a server fault.
func TestOCIConformancePush(t *testing.T) {
	suite := buildSuite(t)
	for _, tt := range []struct {
		name    string
		version string // the suite's OCI_VERSION: "dev" adds tag parameters and requires digest headers
		gcs, s3 bool
	}{
		{name: "filesystem", version: "1.1"},
		{name: "filesystem dev", version: "dev"},
		{name: "gcs", version: "1.1", gcs: true},
		{name: "s3", version: "1.1", s3: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := t.TempDir()
			env := []string{"STORAGE_PATH=" + store}
			if tt.gcs {
				emu := gcstest.Start(t)
				env = []string{"NIXERY_STORAGE_BACKEND=gcs", "GCS_BUCKET=" + emu.NewBucket(t), "STORAGE_EMULATOR_HOST=" + emu.Host}
			}
			if tt.s3 {
				srv := s3test.Start(t)
				// Streamed, as the GCS row is without a signing key:
				// behind a presigned redirect the S3 server, not
				// nixport, answers the suite's invalid ranges, and the
				// suite skips those checks.
				env = append(srv.Env(srv.NewBucket(t)), "S3_USE_PRESIGNED_URLS=false")
			}
			s := startServer(t, append(env, "NIXPORT_PUSH_NAMESPACES=local,ci")...)
			dir := t.TempDir()
			cmd := exec.Command(suite)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"OCI_REGISTRY="+s.addr,
				"OCI_TLS=disabled",
				"OCI_VERSION="+tt.version,
				"OCI_REPO1=local/conformance/one",
				"OCI_REPO2=ci/conformance/two",
				"OCI_API_BLOBS_UPLOAD_CANCEL=true",
				"OCI_HIDE_SKIPPED_WORKFLOWS=0",
				"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
			)
			out, err := cmd.CombinedOutput()
			report := string(out)
			// The suite exits 0 on a configuration error: it must also
			// have written its results.
			if st, serr := os.Stat(filepath.Join(dir, "results", "results.yaml")); err != nil || serr != nil || st.Size() == 0 {
				t.Fatalf("conformance suite: %v, results.yaml: %v\n%s", err, serr, report)
			}
			if !strings.Contains(report, "OCI Conformance Result: Pass") {
				t.Fatalf("conformance suite did not pass:\n%s", report)
			}
			for _, status := range []string{"FAIL", "Error", "Skip"} {
				if n := suiteCount(t, report, status); n != 0 {
					t.Fatalf("%d tests %s:\n%s", n, status, report)
				}
			}
			passed := suiteCount(t, report, "Pass")
			for _, branch := range []string{"sha256 blobs", "sha512 blobs", "image", "index", "nested-index", "artifacts-with-subject",
				"index-with-subject", "non-distributable-layers", "large-manifest", "sha512", "bad-digest-image", "missing-manifest"} {
				if !strings.Contains(report, "\n  OCI Conformance Test/"+branch+": Pass\n") {
					t.Errorf("branch %s did not pass", branch)
				}
			}
			if tt.version == "dev" && !strings.Contains(report, "Manifest put with tag params..:       Pass") {
				t.Errorf("tag parameters were not tested:\n%s", report)
			}
			if n := serverFaults(t, s.addr); n != 0 {
				t.Errorf("%d requests answered with a 5xx", n)
			}
			if !tt.gcs {
				// Every upload finished or cancelled left no record
				// behind.
				if entries, err := os.ReadDir(filepath.Join(store, "objects", "push", "_uploads")); err == nil && len(entries) > 0 {
					t.Errorf("%d upload records left behind", len(entries))
				}
			}
			t.Logf("OCI conformance (%s, %s): %d tests passed, 0 failed, 0 skipped", tt.name, tt.version, passed)
			s.stop(t)
		})
	}
}

// serverFaults is how many requests the server at addr has answered with
// a 5xx, from its metrics.
func serverFaults(t *testing.T, addr string) int {
	t.Helper()
	families := scrape(t, "http://"+addr+"/metrics")
	n := 0
	for _, m := range families["nixport_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && strings.HasPrefix(l.GetValue(), "5") {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// TestDockerPushFromBuiltImage builds an image FROM a nixport image with
// Docker Engine, pushes it into a push namespace of the same nixport, and
// checks in the server's log that none of the base image's layers was
// uploaded (Docker mounts them from the repository it pulled them from);
// then pulls the pushed image back and runs it.
func TestDockerPushFromBuiltImage(t *testing.T) {
	requireDocker(t)
	requireTools(t, "nix-store")
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("DOCKER_BUILDKIT", "0") // the classic builder: BuildKit may reach for the network
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXPORT_PUSH_NAMESPACES=local")
	base := s.addr + "/shell/hello/greeting"
	app := s.addr + "/local/app:v1"

	// The base image's layers, as Docker pulls them.
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/v2/shell/hello/greeting/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	decodeJSON(t, resp, &m)
	baseLayers := map[string]bool{}
	for _, l := range m.Layers {
		baseLayers[l.Digest.String()] = true
	}
	if len(baseLayers) < 2 {
		t.Fatalf("base image of %d layers", len(baseLayers))
	}
	s.drainLogs()

	if r := dockerPull(t, base); r.err != nil {
		t.Fatalf("docker pull %s: %v\n%s", base, r.err, r.output())
	}
	// Docker records where layers come from only when it fetches the
	// manifest: an engine that already holds this image under another
	// name only asks for the manifest's digest, and then has nothing to
	// mount from.
	if !s.sawRequest("GET", "/v2/shell/hello/greeting/manifests/") {
		msg := "the engine already holds " + base + "'s image under another name, so docker push cannot mount its layers: remove that image"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	ctx := t.TempDir()
	const message = "pushed to nixport\n"
	if err := os.WriteFile(filepath.Join(ctx, "message.txt"), []byte(message), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerfile := "FROM " + base + "\nCOPY message.txt /message.txt\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockerRemoveImage(t, app) })
	if r := runDocker(dockerPullTimeout, "build", "--pull=false", "--network", "none", "-t", app, ctx); r.err != nil {
		t.Fatalf("docker build: %v\n%s", r.err, r.output())
	}
	s.drainLogs()
	r := runDocker(dockerPullTimeout, "push", app)
	if r.err != nil {
		t.Fatalf("docker push %s: %v\n%s", app, r.err, r.output())
	}
	t.Logf("docker push:\n%s", r.output())

	// The server's log: each base layer mounted, none uploaded; the new
	// layer and the config uploaded.
	lines := s.requestLines(t, "PUT", "/v2/local/app/manifests/v1")
	mounted, uploaded := map[string]bool{}, map[string]bool{}
	for _, l := range lines {
		d, _ := l["digest"].(string)
		path, _ := l["path"].(string)
		status, _ := l["status"].(float64)
		switch {
		case l["method"] == "POST" && status == 201 && path == "/v2/local/app/blobs/uploads/":
			mounted[d] = true
		case l["method"] == "PUT" && status == 201 && strings.HasPrefix(path, "/v2/local/app/blobs/uploads/"):
			uploaded[d] = true
		}
	}
	for d := range baseLayers {
		if uploaded[d] {
			t.Errorf("base layer %s was uploaded", d)
		}
		if !mounted[d] {
			t.Errorf("base layer %s was not mounted", d)
		}
	}
	if len(uploaded) != 2 {
		t.Errorf("%d blobs uploaded, want 2 (the new layer and the config): %v", len(uploaded), uploaded)
	}

	// Back from the registry, and run.
	dockerRemoveImage(t, app)
	if r := dockerPull(t, app); r.err != nil {
		t.Fatalf("docker pull %s: %v\n%s", app, r.err, r.output())
	}
	name := fmt.Sprintf("nixport-push-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { dockerRemoveContainer(t, name) })
	r = runDocker(dockerRunTimeout, "run", "--rm", "--name", name, "--pull", "never", "--network", "none", app, "sh", "-c", "hello; cat /message.txt")
	if r.err != nil {
		t.Fatalf("docker run %s: %v\n%s", app, r.err, r.output())
	}
	if want := "Hello, world!\n" + message; r.stdout != want {
		t.Errorf("docker run printed %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
	dockerRemoveImage(t, app)
	dockerRemoveImage(t, base)
	s.stop(t)
}

// sawRequest reports whether a request line of method on a path starting
// with prefix comes before the server's log falls silent.
func (s *server) sawRequest(method, prefix string) bool {
	seen := false
	for {
		select {
		case l := <-s.logs:
			if p, _ := l["path"].(string); l["msg"] == "request" && l["method"] == method && strings.HasPrefix(p, prefix) {
				seen = true
			}
		case <-time.After(300 * time.Millisecond):
			return seen
		}
	}
}

// requestLines collects the server's request lines up to and including
// the one of method on path, which is the last request a client makes
// (docker push ends with its manifest); a minute without it fails.
func (s *server) requestLines(t *testing.T, method, path string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	deadline := time.After(time.Minute)
	for {
		select {
		case l := <-s.logs:
			if l["msg"] != "request" {
				continue
			}
			lines = append(lines, l)
			if l["method"] == method && l["path"] == path {
				return lines
			}
		case <-deadline:
			t.Fatalf("no request line of %s %s in a minute (%d lines)", method, path, len(lines))
		}
	}
}
