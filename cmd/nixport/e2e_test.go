package main

// End-to-end tests of the whole product: the real binary, real Nix building
// the offline test package set, real HTTP on 127.0.0.1 and real clients
// (skopeo, the OCI conformance suite).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/testkit"
)

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/setup.sh installs it): %v", tool, err)
		}
	}
}

// countLogs counts, until the log channel is idle for a moment, the log
// lines with the given message.
func (s *server) drainCount(msg string) int {
	n := 0
	for {
		select {
		case line := <-s.logs:
			if line["msg"] == msg {
				n++
			}
		case <-time.After(300 * time.Millisecond):
			return n
		}
	}
}

// skopeoPull copies name:tag into an OCI layout and returns its directory.
func skopeoPull(t *testing.T, addr, ref string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := skopeoCopy(addr, ref, dir, "--src-tls-verify=false"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// skopeoCopy copies addr/ref into the OCI layout dir, with flags for the
// source (how to trust it).
func skopeoCopy(addr, ref, dir string, srcFlags ...string) error {
	args := append([]string{"copy", "--quiet"}, srcFlags...)
	args = append(args, "docker://"+addr+"/"+ref, "oci:"+dir+":latest")
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("skopeo copy %s: %v\n%s", ref, err, out)
	}
	return nil
}

// readLayout returns the image manifest of an OCI layout's only image.
func readLayout(t *testing.T, dir string) v1.Manifest {
	t.Helper()
	var index v1.Index
	testkit.ReadJSON(t, filepath.Join(dir, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests", len(index.Manifests))
	}
	var m v1.Manifest
	testkit.ReadJSON(t, blobPath(dir, index.Manifests[0].Digest.String()), &m)
	return m
}

func blobPath(layout, digest string) string {
	return filepath.Join(layout, "blobs", strings.Replace(digest, ":", "/", 1))
}

// unpack extracts an image's layers in order into a new root directory.
func unpack(t *testing.T, layout string, m v1.Manifest) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		out, err := exec.Command("tar", "-xzf", blobPath(layout, l.Digest.String()), "-C", root).CombinedOutput()
		if err != nil {
			t.Fatalf("unpacking layer %s: %v\n%s", l.Digest, err, out)
		}
	}
	return root
}

func chrootRun(t *testing.T, root string, argv ...string) string {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, argv...)...)
	cmd.Env = []string{"PATH=/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s %v: %v\n%s", root, argv, err, out)
	}
	return string(out)
}

func TestPullBuildAndRun(t *testing.T) {
	requireTools(t, "skopeo", "nix-store", "chroot", "tar")
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	tests := []struct {
		name string
		argv []string
		want string
	}{
		{"hello", []string{"/bin/hello"}, "Hello, world!"},
		{"shell/hello", []string{"/bin/hello"}, "Hello, world!"},
		{"xorg.xev", []string{"/bin/xev"}, ""},
		{"haskellpackages.hello", []string{"/bin/haskell-hello"}, "Hello from Haskell"},
		{"multi", []string{"/bin/multi"}, "multi's data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layout := skopeoPull(t, s.addr, tt.name+":latest")
			m := readLayout(t, layout)
			if len(m.Layers) < 2 {
				t.Fatalf("%d layers", len(m.Layers))
			}
			root := unpack(t, layout, m)
			out := chrootRun(t, root, tt.argv...)
			if tt.want != "" && !strings.Contains(out, tt.want) {
				t.Errorf("%v printed %q, want %q", tt.argv, out, tt.want)
			}
			for _, f := range []string{"etc/ssl/certs/ca-bundle.crt", "etc/protocols", "tmp"} {
				if _, err := os.Stat(filepath.Join(root, f)); err != nil {
					t.Errorf("image lacks /%s (base packages, customisation layer): %v", f, err)
				}
			}
		})
	}
	s.stop(t)
}

// pullAll fetches a manifest by tag and every blob it names, verifying
// each digest, and returns the manifest digest.
func pullAll(client *http.Client, base, name, tag string) (string, error) {
	req, _ := http.NewRequest("GET", base+"/v2/"+name+"/manifests/"+tag, nil)
	req.Header.Set("Accept", v1.MediaTypeImageManifest)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("manifest: %d %s %v", resp.StatusCode, body, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return "", err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		resp, err := client.Get(base + "/v2/" + name + "/blobs/" + d.Digest.String())
		if err != nil {
			return "", err
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != d.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.Digest.String() {
			return "", fmt.Errorf("blob %s: status %d, %d bytes, %v", d.Digest, resp.StatusCode, n, err)
		}
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

func TestParallelPullsBuildOnce(t *testing.T) {
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXPORT_LOG_LEVEL=debug")
	s.drainCount("")
	const clients = 24
	var wg sync.WaitGroup
	digests := make([]string, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			digests[i], errs[i] = pullAll(&http.Client{Timeout: 2 * time.Minute}, "http://"+s.addr, "deep/hello", "latest")
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if digests[i] != digests[0] || digests[i] == "" {
			t.Fatalf("client %d got manifest %q, client 0 %q", i, digests[i], digests[0])
		}
	}
	// One build: resolve, realise, closure, and the SBOM's names.
	if n := s.drainCount("nix process started"); n != 4 {
		t.Errorf("%d Nix processes for 24 pulls of one image, want 4 (one build)", n)
	}
	s.stop(t)
}

func TestReproducibleAndShared(t *testing.T) {
	requireTools(t, "nix-store")
	digestOf := func(name string) (string, v1.Manifest) {
		s := startServer(t, "STORAGE_PATH="+t.TempDir())
		defer s.stop(t)
		d, err := pullAll(http.DefaultClient, "http://"+s.addr, name, "latest")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + s.addr + "/v2/" + name + "/manifests/" + d)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m v1.Manifest
		json.NewDecoder(resp.Body).Decode(&m)
		return d, m
	}
	first, m1 := digestOf("hello")
	second, _ := digestOf("hello")
	if first != second {
		t.Errorf("same image into empty storage twice: %s then %s", first, second)
	}
	_, m2 := digestOf("deep")
	shared := 0
	for _, a := range m1.Layers {
		for _, b := range m2.Layers {
			if a.Digest == b.Digest {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Error("hello and deep share busybox but no layer digest")
	}
}

// gitPackageSet commits the offline test package set into a new local git
// repository and returns its path and commit.
func gitPackageSet(t *testing.T) (repo, commit string) {
	t.Helper()
	repo = t.TempDir()
	gitRun := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("init", "-q", "-b", "main")
	if out, err := exec.Command("cp", "-rL", "../../testdata/pkgs/.", repo).CombinedOutput(); err != nil {
		t.Fatalf("copying package set: %v\n%s", err, out)
	}
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "pkgs")
	return repo, gitRun("rev-parse", "HEAD")
}

func TestRestartServesWithoutNix(t *testing.T) {
	requireTools(t, "nix-store", "git")
	// A git source pinned by commit: the second server must serve it by tag
	// without running Nix.
	repo, commit := gitPackageSet(t)
	store := t.TempDir()
	env := []string{"STORAGE_PATH=" + store, "NIXERY_PKGS_REPO=file://" + repo, "NIXPORT_LOG_LEVEL=debug"}
	s1 := startServer(t, env...)
	pinnedDigest, err := pullAll(http.DefaultClient, "http://"+s1.addr, "hello", commit)
	if err != nil {
		t.Fatal(err)
	}
	s1.stop(t)

	s2 := startServer(t, env...)
	s2.drainCount("")
	got, err := pullAll(http.DefaultClient, "http://"+s2.addr, "hello", commit)
	if err != nil || got != pinnedDigest {
		t.Fatalf("pinned tag after restart: %s %v, want %s", got, err, pinnedDigest)
	}
	// By digest, any name: storage alone.
	if _, err := pullAll(http.DefaultClient, "http://"+s2.addr, "hello", pinnedDigest); err != nil {
		t.Fatal(err)
	}
	if n := s2.drainCount("nix process started"); n != 0 {
		t.Errorf("restarted server ran %d Nix processes for stored images", n)
	}
	s2.stop(t)
}

// checkStorageIntact verifies that every blob in filesystem storage hashes
// to its name: no partial blob is visible.
func checkStorageIntact(t *testing.T, store string) int {
	t.Helper()
	dir := filepath.Join(store, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".type") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if hex.EncodeToString(h.Sum(nil)) != e.Name() {
			t.Errorf("blob %s does not hash to its name: partial blob visible", e.Name())
		}
		n++
	}
	return n
}

func TestInterruptedBuildsLeaveNoPartialBlob(t *testing.T) {
	requireTools(t, "nix-store")
	t.Run("timeout", func(t *testing.T) {
		store := t.TempDir()
		s := startServer(t, "STORAGE_PATH="+store, "NIX_TIMEOUT=2")
		resp, err := http.Get("http://" + s.addr + "/v2/slow/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The client's failure (a 4xx, so that clients show the message),
		// naming the limit and the setting.
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "took longer than 2s") ||
			!strings.Contains(string(body), "NIX_TIMEOUT") {
			t.Errorf("slow build: %d %s, want 422 naming the 2s limit and NIX_TIMEOUT", resp.StatusCode, body)
		}
		checkStorageIntact(t, store)
		s.stop(t)
	})
	t.Run("server killed while archiving", func(t *testing.T) {
		store := t.TempDir()
		s := startServer(t, "STORAGE_PATH="+store)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/v2/bigclosure/manifests/latest", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		// Wait until archiving has begun (temp files appear), then kill.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			tmp, _ := os.ReadDir(filepath.Join(store, "tmp"))
			if len(tmp) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("archiving never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		s.cmd.Process.Kill()
		<-s.done
		checkStorageIntact(t, store)

		// A new server on the same storage finishes the image correctly.
		s2 := startServer(t, "STORAGE_PATH="+store)
		if _, err := pullAll(&http.Client{Timeout: 5 * time.Minute}, "http://"+s2.addr, "bigclosure", "latest"); err != nil {
			t.Fatal(err)
		}
		checkStorageIntact(t, store)
		s2.stop(t)
	})
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// craneBinary returns the path of crane at the version go.mod's tool
// directive pins: `go tool -n` builds it (or finds it in the build cache)
// and prints its path instead of running it.
func craneBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "github.com/google/go-containerregistry/cmd/crane").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("building crane (go tool -n): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestCraneClient checks the registry with go-containerregistry's crane
// (pinned in go.mod as a tool): digest, manifest, validate (downloads and
// verifies every layer) and tags.
func TestCraneClient(t *testing.T) {
	requireTools(t, "nix-store")
	crane := craneBinary(t)
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	ref := s.addr + "/shell/hello:latest"
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(crane, append(args, "--insecure")...).CombinedOutput()
		if err != nil {
			t.Fatalf("crane %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	digest := run("digest", ref)
	want, err := pullAll(http.DefaultClient, "http://"+s.addr, "shell/hello", "latest")
	if err != nil || digest != want {
		t.Fatalf("crane digest %s, registry %s (%v)", digest, want, err)
	}
	if m := run("manifest", ref); !strings.Contains(m, `"layers"`) {
		t.Errorf("crane manifest: %s", m)
	}
	run("validate", "--remote", ref)
	if tags := run("ls", s.addr+"/shell/hello"); tags != "latest" {
		t.Errorf("crane ls: %q", tags)
	}
	s.stop(t)
}

// TestFailedBuildAnsweredAgainWithoutNix: a package that fails to build is
// a 422 telling why (the end of its build output), and asking again within
// NIXPORT_FAILED_BUILD_TTL gets the same answer without running Nix.
func TestFailedBuildAnsweredAgainWithoutNix(t *testing.T) {
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXPORT_LOG_LEVEL=debug", "NIXPORT_FAILED_BUILD_TTL=600")
	const path = "/v2/broken/manifests/latest"
	// linesUntilRequest returns the log lines up to the request line of
	// path: the server logs a request after everything it did for it.
	linesUntilRequest := func() []map[string]any {
		t.Helper()
		var lines []map[string]any
		deadline := time.After(time.Minute)
		for {
			select {
			case line := <-s.logs:
				lines = append(lines, line)
				if line["path"] == path && line["status"] != nil {
					return lines
				}
			case <-deadline:
				t.Fatalf("no request line for %s", path)
			}
		}
	}
	var messages []string
	for i := range 2 {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Errors []struct{ Code, Message string }
		}
		decodeJSON(t, resp, &body)
		if resp.StatusCode != http.StatusUnprocessableEntity || len(body.Errors) != 1 || body.Errors[0].Code != "BUILD_FAILED" ||
			!strings.Contains(body.Errors[0].Message, "package broken (") ||
			!strings.Contains(body.Errors[0].Message, "\nnixport test package: this build fails on purpose\n") {
			t.Fatalf("request %d: %d %+v, want 422 BUILD_FAILED with the end of the build output", i, resp.StatusCode, body)
		}
		messages = append(messages, body.Errors[0].Message)
		started, remembered := 0, 0
		for _, line := range linesUntilRequest() {
			switch line["msg"] {
			case "nix process started":
				started++
			case "build failed recently: answering its error without building again":
				if line["level"] == "info" {
					remembered++
				}
			}
		}
		if i == 0 && started == 0 {
			t.Error("the first request ran no Nix process")
		}
		if i == 1 && (started != 0 || remembered != 1) {
			t.Errorf("the second request ran %d Nix processes and logged %d remembered failures at info, want 0 and 1", started, remembered)
		}
	}
	if messages[0] != messages[1] {
		t.Errorf("the second answer differs:\n%s\n%s", messages[0], messages[1])
	}
	s.stop(t)
}

// TestRequestIDInBuildLines: the id a client sends in X-Request-Id comes
// back in the answer and names every line of its request, the lines of
// the build it started included.
func TestRequestIDInBuildLines(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	const id = "e2e-request-0001"
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/v2/shell/hello/manifests/latest", nil)
	req.Header.Set("X-Request-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != id {
		t.Fatalf("status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	seen := map[string]bool{}
	for line := range s.logs {
		msg, _ := line["msg"].(string)
		if line["request_id"] == id {
			seen[msg] = true
		}
		if msg == "request" {
			break // the access line is the request's last
		}
	}
	for _, msg := range []string{"image ready", "request"} {
		if !seen[msg] {
			t.Errorf("no %q line with request_id %s; lines with it: %v", msg, id, seen)
		}
	}
}

// TestHealthEndpoints: /healthz answers while the process serves; /readyz
// when storage takes and gives back an object and Nix runs, with the
// version.
func TestHealthEndpoints(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Status, Version string
			Checks          map[string]string
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || body.Status != "ok" || body.Version == "" {
			t.Errorf("%s: %d %+v %v", path, resp.StatusCode, body, err)
		}
		if path == "/readyz" && (body.Checks["storage"] != "ok" || body.Checks["nix"] != "ok") {
			t.Errorf("/readyz checks %v", body.Checks)
		}
	}
}
