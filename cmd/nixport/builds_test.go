package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freshPackageSet copies the offline package set into a directory of the
// test's own with a nonce in busybox, so that every derivation is new to
// the store: the builds really run, whatever earlier tests built.
func freshPackageSet(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../testdata/pkgs/default.nix")
	if err != nil {
		t.Fatal(err)
	}
	const anchor = `name = "busybox";`
	if !bytes.Contains(src, []byte(anchor)) {
		t.Fatalf("the package set lost %q", anchor)
	}
	nonce := fmt.Sprintf(`%s env.nixportTestNonce = "%d-%d";`, anchor, os.Getpid(), time.Now().UnixNano())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), bytes.Replace(src, []byte(anchor), []byte(nonce), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// awaitLog waits for a log line with message msg whose image is image,
// and returns it; every line read on the way goes to seen.
func (s *server) awaitLog(t *testing.T, msg, image string, seen func(map[string]any)) map[string]any {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line := <-s.logs:
			if seen != nil {
				seen(line)
			}
			if line["msg"] == msg && line["image"] == image {
				return line
			}
		case <-deadline:
			t.Fatalf("no %q line for %s within 2 minutes", msg, image)
		}
	}
}

// TestBuildOutlivesTheClient: a client gives up after 2 s on an image that
// takes longer to build; the build goes on, and a pull after it has ended
// gets the image at once, with no second build.
func TestBuildOutlivesTheClient(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+freshPackageSet(t))
	url := "http://" + s.addr + "/v2/pause/manifests/latest"
	impatient := &http.Client{Timeout: 2 * time.Second}
	if resp, err := impatient.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("the build of pause answered within 2 s (%s): the test needs a longer one", resp.Status)
	}
	builds := 0
	s.awaitLog(t, "image ready", "pause", func(line map[string]any) {
		if line["msg"] == "build started" {
			builds++
		}
	})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the pull after the build: %s", resp.Status)
	}
	if got := s.drainCount("build started"); builds+got != 1 {
		t.Errorf("%d builds of pause, want 1", builds+got)
	}
}

// TestPullWaitEndsWithTheBuildsAddress: with NIXPORT_PULL_WAIT=2 a pull of
// an image that takes longer gets a 4xx (so docker prints it) saying the
// build goes on and where to follow it.
func TestPullWaitEndsWithTheBuildsAddress(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+freshPackageSet(t), "NIXPORT_PULL_WAIT=2")
	start := time.Now()
	resp, err := http.Get("http://" + s.addr + "/v2/pause/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("status %s after %s, want 409: %s", resp.Status, time.Since(start), body)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "BUILD_IN_PROGRESS" {
		t.Fatalf("body %s", body)
	}
	if msg := e.Errors[0].Message; !strings.Contains(msg, "still being built") || !strings.Contains(msg, "/builds/") {
		t.Errorf("message %q does not say the build goes on and where to follow it", msg)
	}
	// The build goes on: the image becomes ready.
	s.awaitLog(t, "image ready", "pause", nil)
}
