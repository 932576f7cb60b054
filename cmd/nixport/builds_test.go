package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/testkit"
)

// awaitLog waits for a log line with message msg whose image is image
// (any image when it is empty), and returns it; every line read on the
// way goes to seen.
func (s *server) awaitLog(t *testing.T, msg, image string, seen func(map[string]any)) map[string]any {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line := <-s.logs:
			if seen != nil {
				seen(line)
			}
			if line["msg"] == msg && (image == "" || line["image"] == image) {
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
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t))
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
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t), "NIXPORT_PULL_WAIT=2")
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
	msg := e.Errors[0].Message
	page := "http://" + s.addr + "/builds/"
	i := strings.LastIndex(msg, page)
	if !strings.Contains(msg, "still being built") || i < 0 {
		t.Fatalf("message %q does not say the build goes on and where to follow it (%s…)", msg, page)
	}
	// The address is the build's page, and the build is in the API.
	id := msg[i+len(page):]
	if resp, body := get(t, msg[i:]); resp.StatusCode != 200 || !strings.Contains(body, "<code>pause:latest</code>") {
		t.Errorf("the build's page %s: %s", msg[i:], resp.Status)
	}
	if resp, body := get(t, "http://"+s.addr+"/api/builds/"+id); resp.StatusCode != 200 || !strings.Contains(body, `"image":"pause"`) {
		t.Errorf("the build in the API: %s %s", resp.Status, body)
	}
	// The build goes on: the image becomes ready.
	s.awaitLog(t, "image ready", "pause", nil)
}

// get fetches url and returns the response and its body.
func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// postBuild asks the build API to build body's image.
func postBuild(t *testing.T, addr, body string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/api/builds", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("POST %s: %s, body not JSON: %v", body, resp.Status, err)
	}
	return resp, st
}

// TestBuildAPI: the build API of the real binary, over the real builder:
// a build started without a pull, joined, followed to its end, then
// answered as built; its page; a bad name refused.
func TestBuildAPI(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t))
	resp, st := postBuild(t, s.addr, `{"image": "pause"}`)
	id, _ := st["id"].(string)
	if resp.StatusCode != http.StatusAccepted || id == "" || resp.Header.Get("Location") != "/api/builds/"+id || st["tag"] != "latest" {
		t.Fatalf("start: %s, Location %q, %v", resp.Status, resp.Header.Get("Location"), st)
	}
	if resp, again := postBuild(t, s.addr, `{"image": "pause", "tag": "latest"}`); resp.StatusCode != http.StatusAccepted || again["id"] != id {
		t.Errorf("a second start while it builds: %s, %v; want the same build %s", resp.Status, again, id)
	}
	if resp, body := get(t, "http://"+s.addr+"/api/builds"); resp.StatusCode != 200 || !strings.Contains(body, `"id":"`+id+`"`) {
		t.Errorf("the list: %s %s", resp.Status, body)
	}
	if resp, body := get(t, "http://"+s.addr+"/builds/"+id); resp.StatusCode != 200 || !strings.Contains(body, "<code>pause:latest</code>") {
		t.Errorf("the build's page: %s", resp.Status)
	}
	// Followed to its end: a pull waits for the build it joins, and its
	// answer comes once the build's record is final.
	pullManifest(t, s.addr, "pause")
	var done map[string]any
	if resp, body := get(t, "http://"+s.addr+"/api/builds/"+id); resp.StatusCode != 200 || json.Unmarshal([]byte(body), &done) != nil {
		t.Fatalf("the build: %s %s", resp.Status, body)
	}
	digest, _ := done["manifest_digest"].(string)
	if done["state"] != "done" || !strings.HasPrefix(digest, "sha256:") || done["finished_at"] == nil {
		t.Fatalf("the build ended as %v", done)
	}
	if log, _ := done["log"].(string); !strings.Contains(log, "pause") {
		t.Errorf("the build's log does not name what it built: %q", log)
	}
	// Now built: 200, done, the same manifest, which a pull gets.
	resp, built := postBuild(t, s.addr, `{"image": "pause"}`)
	if resp.StatusCode != 200 || built["state"] != "done" || built["manifest_digest"] != digest {
		t.Errorf("a start once built: %s %v, want 200 done %s", resp.Status, built, digest)
	}
	req, _ := http.NewRequest("HEAD", "http://"+s.addr+"/v2/pause/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Docker-Content-Digest") != digest {
		t.Errorf("the pull after: %v %v", err, resp.Header)
	}
	// prewarm, the API's client, takes that answer as built.
	prewarm := exec.Command(binary, "prewarm", "-server", "http://"+s.addr, "-")
	prewarm.Stdin = strings.NewReader("pause\n")
	if out, err := prewarm.CombinedOutput(); err != nil || !strings.Contains(string(out), "pause:latest  already built  "+digest) {
		t.Errorf("prewarm of an image built: %v\n%s", err, out)
	}
	if got := s.drainCount("build started"); got != 1 {
		t.Errorf("%d builds of pause, want 1", got)
	}
	// A bad name is refused, as a pull's would be.
	resp, bad := postBuild(t, s.addr, `{"image": "Pause"}`)
	if errs, _ := bad["errors"].([]any); resp.StatusCode != 400 || len(errs) != 1 || errs[0].(map[string]any)["code"] != "NAME_INVALID" {
		t.Errorf("a bad name: %s %v", resp.Status, bad)
	}
}

// pullManifest pulls image's manifest, which waits for its build.
func pullManifest(t *testing.T, addr, image string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+image+"/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pull of %s: %s", image, resp.Status)
	}
}

// pollBuild follows GET /api/builds/{id} until the build ends, calling
// seen with every state it shows.
func pollBuild(t *testing.T, addr, id string, seen func(map[string]any)) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, body := get(t, "http://"+addr+"/api/builds/"+id)
		if resp.StatusCode != 200 {
			t.Fatalf("GET build %s: %s %s", id, resp.Status, body)
		}
		var st map[string]any
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		seen(st)
		if st["state"] == "done" || st["state"] == "failed" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("build %s still %v after 3 minutes", id, st["state"])
		}
		time.Sleep(20 * time.Millisecond) // polling a remote state: the API has no push
	}
}

// TestBuildPhasesInOrder follows a real build (packages new to the store,
// with layers to archive) through the status API: its states come in the
// order of the phases, its progress ends complete, and its log is Nix's.
func TestBuildPhasesInOrder(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t))
	resp, st := postBuild(t, s.addr, `{"image": "pause/hello/deep"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %v", resp.Status, st)
	}
	order := []string{"queued", "resolving", "realising", "archiving", "done"}
	rank := map[string]int{}
	for i, s := range order {
		rank[s] = i
	}
	var states []string
	final := pollBuild(t, s.addr, st["id"].(string), func(st map[string]any) {
		state, _ := st["state"].(string)
		if len(states) == 0 || states[len(states)-1] != state {
			states = append(states, state)
		}
	})
	for i := 1; i < len(states); i++ {
		if rank[states[i]] <= rank[states[i-1]] {
			t.Fatalf("states %v are not in the order of the phases", states)
		}
	}
	if !slices.Contains(states, "realising") || states[len(states)-1] != "done" {
		t.Errorf("states %v: the 4 s build was never seen realising, or did not end done", states)
	}
	num := func(k string) float64 { v, _ := final[k].(float64); return v }
	if num("paths_total") < 2 || num("paths_done") != num("paths_total") || num("layers_total") < 2 ||
		num("layers_done") != num("layers_total") || num("bytes_compressed") <= 0 {
		t.Errorf("final progress %v", final)
	}
	if log, _ := final["log"].(string); !strings.Contains(log, "building '/nix/store/") {
		t.Errorf("the build's log %q is not Nix's", log)
	}
}

// TestPostFiveWithOneSlot: with one build slot, five images posted at once
// make one build run and four wait queued; then all finish.
func TestPostFiveWithOneSlot(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t), "NIXPORT_MAX_BUILDS=1")
	images := []string{"pause", "pause/hello", "pause/deep", "pause/multi", "pause/xorg.xev"}
	var ids []string
	for _, image := range images {
		resp, st := postBuild(t, s.addr, `{"image": "`+image+`"}`)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %s %v", image, resp.Status, st)
		}
		ids = append(ids, st["id"].(string))
	}
	// Once one build has the slot (it takes 4 s: pause), the others wait.
	s.awaitLog(t, "build started", "", nil)
	resp, body := get(t, "http://"+s.addr+"/api/builds")
	var list struct{ Builds []map[string]any }
	if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/builds: %s %s", resp.Status, body)
	}
	queued := 0
	for _, b := range list.Builds {
		if b["state"] == "queued" {
			queued++
		}
	}
	if len(list.Builds) != 5 || queued != 4 {
		t.Fatalf("%d builds listed, %d queued; want 5 and 4: %s", len(list.Builds), queued, body)
	}
	for i, id := range ids {
		pullManifest(t, s.addr, images[i])
		var st map[string]any
		_, body := get(t, "http://"+s.addr+"/api/builds/"+id)
		if json.Unmarshal([]byte(body), &st); st["state"] != "done" {
			t.Errorf("build %s of %s ended %v: %v", id, images[i], st["state"], st["error"])
		}
	}
}

// TestPrewarm runs the real prewarm against the real server: a list with
// a failing package exits 1 naming it and Nix's message, and builds the
// rest; the same list again answers the built image at once.
func TestPrewarm(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t))
	list := filepath.Join(t.TempDir(), "images")
	if err := os.WriteFile(list, []byte("# what the CI jobs pull\nshell/hello\nhello/broken:latest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() (string, string, int) {
		cmd := exec.Command(binary, "prewarm", "-server", "http://"+s.addr, "-timeout", "3m", list)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := run()
	if code != 1 || !strings.Contains(out, "shell/hello:latest  done") ||
		!strings.Contains(errOut, "hello/broken:latest") || !strings.Contains(errOut, "this build fails on purpose") {
		t.Fatalf("first run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	out, errOut, code = run()
	if code != 1 || !strings.Contains(out, "shell/hello:latest  already built") || !strings.Contains(errOut, "hello/broken:latest") {
		t.Errorf("second run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
