package main

// End-to-end tests with the real Docker Engine: it pulls from nixport on
// 127.0.0.1 (Docker treats 127.0.0.0/8 as an insecure registry, so plain HTTP
// works) and runs what it pulled. The engine has no other registry: every
// image here comes from the nixport the test starts, and every image and
// container the test makes is removed by its exact reference or name.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/testkit"
)

// Bounds on single docker commands. A pull includes nixport's build of the
// image (seconds with the offline package set).
const (
	dockerQuickTimeout = 30 * time.Second
	dockerPullTimeout  = 3 * time.Minute
	dockerRunTimeout   = time.Minute
)

// dockerResult is what a docker command did.
type dockerResult struct {
	stdout, stderr string
	err            error
}

func (r dockerResult) output() string { return r.stdout + r.stderr }

// runDocker runs the docker CLI with args and returns once it exits or
// timeout has passed (then it is killed, and err says so).
func runDocker(timeout time.Duration, args ...string) dockerResult {
	return runDockerStdin(timeout, "", args...)
}

// runDockerStdin is runDocker with stdin (a password for docker login
// --password-stdin).
func runDockerStdin(timeout time.Duration, stdin string, args ...string) dockerResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	// A killed CLI could leave a child holding the pipes: do not wait on them
	// for long.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("docker %s did not finish within %v: %w", strings.Join(args, " "), timeout, err)
	}
	return dockerResult{stdout.String(), stderr.String(), err}
}

// requireDocker skips the test when the docker CLI is missing or the engine
// does not answer, and fails it instead when CI is set: CI must run these
// tests.
func requireDocker(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("Docker Engine is required in CI: %s", msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		missing("docker CLI not installed: %v", err)
	}
	if r := runDocker(dockerQuickTimeout, "version", "--format", "{{.Server.Version}}"); r.err != nil {
		missing("the Docker Engine does not answer: `docker version`: %v: %s", r.err, strings.TrimSpace(r.stderr))
	}
}

// dockerPull pulls ref and, whatever happens, removes that exact reference
// when the test ends. The cleanup runs before the server's (cleanups run in
// reverse order), so the port in ref is still nixport's: no other run can
// have pulled an image under the same reference meanwhile.
func dockerPull(t *testing.T, ref string) dockerResult {
	t.Helper()
	t.Cleanup(func() { dockerRemoveImage(t, ref) })
	return runDocker(dockerPullTimeout, "pull", ref)
}

// dockerRemoveImage removes the tag ref (and the image, if no other tag
// names it). A reference that was never pulled is not an error.
func dockerRemoveImage(t *testing.T, ref string) {
	t.Helper()
	if r := runDocker(dockerQuickTimeout, "rmi", ref); r.err != nil && !strings.Contains(r.output(), "No such image") {
		t.Errorf("docker rmi %s: %v\n%s", ref, r.err, r.output())
	}
}

// dockerRemoveContainer removes the container the test named name, if it
// still exists (docker run --rm normally removes it).
func dockerRemoveContainer(t *testing.T, name string) {
	t.Helper()
	if r := runDocker(dockerQuickTimeout, "rm", "--force", name); r.err != nil && !strings.Contains(r.output(), "No such container") {
		t.Errorf("docker rm --force %s: %v\n%s", name, r.err, r.output())
	}
}

func TestDockerPullAndRun(t *testing.T) {
	requireDocker(t)
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	ref := s.addr + "/shell/hello:latest"

	if r := dockerPull(t, ref); r.err != nil {
		t.Fatalf("docker pull %s: %v\n%s", ref, r.err, r.output())
	}
	r := runDocker(dockerQuickTimeout, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	if r.err != nil || !strings.Contains(r.stdout, s.addr+"/shell/hello@sha256:") {
		t.Fatalf("docker image inspect %s after pull: %v\n%s", ref, r.err, r.output())
	}

	// The container is named so that it can be removed even if the CLI is
	// killed before --rm does it; it has no network, and nothing is pulled.
	name := fmt.Sprintf("nixport-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { dockerRemoveContainer(t, name) })
	r = runDocker(dockerRunTimeout, "run", "--rm", "--name", name, "--pull", "never", "--network", "none", ref, "hello")
	if r.err != nil {
		t.Fatalf("docker run %s hello: %v\n%s", ref, r.err, r.output())
	}
	if r.stdout != "Hello, world!\n" {
		t.Errorf("docker run %s hello printed %q (stderr %q), want %q", ref, r.stdout, r.stderr, "Hello, world!\n")
	}

	// Remove the image while the server still holds the port (see dockerPull).
	dockerRemoveImage(t, ref)
	if r := runDocker(dockerQuickTimeout, "image", "inspect", ref); r.err == nil {
		t.Errorf("%s still present after docker rmi", ref)
	}
	s.stop(t)
}

// TestDockerPullShowsBuildFailure checks what a user sees when an image's
// build fails: docker pull exits non-zero and its output names the failing
// package and shows its build output. Docker prints a registry's error
// message only for 4xx answers (distribution's HandleErrorResponse).
func TestDockerPullShowsBuildFailure(t *testing.T) {
	requireDocker(t)
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	// hello builds, broken does not: the message must say which failed.
	ref := s.addr + "/hello/broken:latest"
	// broken's builder prints this to stderr, then exits 1
	// (testdata/pkgs/default.nix).
	const buildLine = "nixport test package: this build fails on purpose"

	r := dockerPull(t, ref)
	out := r.output()
	t.Logf("docker pull %s:\n%s", ref, out)
	var exit *exec.ExitError
	if r.err == nil {
		t.Fatalf("docker pull of a failing build exited 0")
	} else if !errors.As(r.err, &exit) {
		t.Fatalf("docker pull %s: %v", ref, r.err)
	}
	// Docker echoes the reference ("127.0.0.1:P/hello/broken:latest",
	// "Pulling from hello/broken"): the package name must appear in the
	// registry's message besides that.
	message := strings.ReplaceAll(out, "hello/broken", "")
	if !strings.Contains(message, "broken") {
		t.Errorf("docker pull's output does not name the failing package %q (besides the reference)", "broken")
	}
	if !strings.Contains(message, buildLine) {
		t.Errorf("docker pull's output lacks the failing build's output %q", buildLine)
	}
	s.stop(t)
}

// TestDockerPullShowsNixTooOld: docker pull of an image from a package set
// that needs a newer Nix than the server runs prints the registry's one
// message naming both versions.
func TestDockerPullShowsNixTooOld(t *testing.T) {
	requireDocker(t)
	requireTools(t, "nix-store")
	dir := testkit.FreshPackageSet(t)
	testkit.DemandNix(t, dir, "99.0")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+dir)
	r := dockerPull(t, s.addr+"/hello:latest")
	t.Logf("docker pull:\n%s", r.output())
	if r.err == nil || !strings.Contains(r.output(), "needs Nix 99.0 or newer; this server runs Nix ") {
		t.Errorf("docker pull: %v, want the message naming both versions", r.err)
	}
	s.stop(t)
}

// TestDockerNonRoot: with the nonroot meta-package the image runs as
// 65532 (its user database names it), without it as root.
func TestDockerNonRoot(t *testing.T) {
	requireDocker(t)
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	// Without the meta-package the image has no user database, as
	// before: only the uid is asked of it.
	for _, tc := range []struct {
		image string
		cmd   []string
		want  string
	}{
		{"nonroot/shell", []string{"id", "-u"}, "65532\n"},
		{"nonroot/shell", []string{"sh", "-c", "id -un; echo $HOME; touch $HOME/f"}, "nonroot\n/home/nonroot\n"},
		{"shell", []string{"id", "-u"}, "0\n"},
	} {
		ref := s.addr + "/" + tc.image + ":latest"
		if r := dockerPull(t, ref); r.err != nil {
			t.Fatalf("docker pull %s: %v\n%s", ref, r.err, r.output())
		}
		name := fmt.Sprintf("nixport-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		t.Cleanup(func() { dockerRemoveContainer(t, name) })
		r := runDocker(dockerRunTimeout, append([]string{"run", "--rm", "--name", name, "--pull", "never", "--network", "none", ref}, tc.cmd...)...)
		if r.err != nil {
			t.Fatalf("docker run %s %q: %v\n%s", ref, tc.cmd, r.err, r.output())
		}
		if r.stdout != tc.want {
			t.Errorf("docker run %s %q printed %q (stderr %q), want %q", ref, tc.cmd, r.stdout, r.stderr, tc.want)
		}
	}
	s.stop(t)
}
