package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// getManifest asks for name:tag and returns the status, the digest (on
// 200) and the first error's code and message (otherwise).
func getManifest(t *testing.T, base, name, tag string) (status int, digest, code, message string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v2/"+name+"/manifests/"+tag, nil)
	req.Header.Set("Accept", v1.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), "", ""
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("%s:%s: %d with no OCI error body: %s", name, tag, resp.StatusCode, body)
	}
	return resp.StatusCode, "", e.Errors[0].Code, e.Errors[0].Message
}

// TestTagsPerSource: with every kind of local package source, a tag that
// names a version builds it, one that names none is MANIFEST_UNKNOWN (404)
// naming the tags that work, and one git cannot name is TAG_INVALID (400):
// never an image of another version, never a 5xx. tags/list then lists the
// tags that were pulled.
func TestTagsPerSource(t *testing.T) {
	requireTools(t, "nix-store", "git")
	repo, commit := gitPackageSet(t)
	// An uncommitted change: latest of the checkout builds it, its branch
	// and commit do not.
	pkgs := filepath.Join(repo, "default.nix")
	data, err := os.ReadFile(pkgs)
	if err != nil {
		t.Fatal(err)
	}
	dirty := strings.Replace(string(data), `"Hello, world!\n"`, `"Hello, working tree!\n"`, 1)
	if dirty == string(data) {
		t.Fatal("the test package set has no greeting to change")
	}
	if err := os.WriteFile(pkgs, []byte(dirty), 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := filepath.Abs("../../testdata/pkgs")
	if err != nil {
		t.Fatal(err)
	}

	type pull struct {
		tag    string
		status int
		code   string
		same   string // the tag whose image this must be, if any
		differ string // a tag whose image this must not be
	}
	tests := []struct {
		name  string
		env   []string
		pulls []pull
		tags  []string // tags/list at the end
	}{
		{"builtin", nil, []pull{
			{tag: "latest", status: 200},
			{tag: "missing-abcdefghij234567", status: 404, code: "MANIFEST_UNKNOWN"},
			{tag: "main", status: 404, code: "MANIFEST_UNKNOWN"},
			{tag: commit, status: 404, code: "MANIFEST_UNKNOWN"},
			{tag: "a..b", status: 404, code: "MANIFEST_UNKNOWN"},
		}, []string{"latest"}},
		{"plain path", []string{"NIXERY_PKGS_PATH=" + plain}, []pull{
			{tag: "latest", status: 200},
			{tag: "main", status: 404, code: "MANIFEST_UNKNOWN"},
		}, []string{"latest"}},
		{"git", []string{"NIXERY_PKGS_REPO=file://" + repo}, []pull{
			{tag: "latest", status: 200},
			{tag: "main", status: 200, same: "latest"},
			{tag: commit, status: 200, same: "latest"},
			{tag: "nosuchbranch", status: 404, code: "MANIFEST_UNKNOWN"},
			{tag: "a..b", status: 400, code: "TAG_INVALID"},
			{tag: "main.lock", status: 400, code: "TAG_INVALID"},
		}, []string{commit, "latest", "main"}},
		{"path checkout", []string{"NIXERY_PKGS_PATH=" + repo}, []pull{
			{tag: "latest", status: 200},
			{tag: "main", status: 200, differ: "latest"},
			{tag: commit, status: 200, same: "main"},
			{tag: "nosuchbranch", status: 404, code: "MANIFEST_UNKNOWN"},
			{tag: "a..b", status: 400, code: "TAG_INVALID"},
			{tag: "main.lock", status: 400, code: "TAG_INVALID"},
		}, []string{commit, "latest", "main"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, append([]string{"STORAGE_PATH=" + t.TempDir()}, tc.env...)...)
			base := "http://" + s.addr
			digests := map[string]string{}
			for _, p := range tc.pulls {
				status, digest, code, msg := getManifest(t, base, "hello", p.tag)
				if status != p.status || code != p.code {
					t.Errorf("%s: %d %s %q, want %d %s", p.tag, status, code, msg, p.status, p.code)
					continue
				}
				if code == "MANIFEST_UNKNOWN" && !strings.Contains(msg, "latest") {
					t.Errorf("%s: message %q does not name the tags that work", p.tag, msg)
				}
				digests[p.tag] = digest
				if p.same != "" && digest != digests[p.same] {
					t.Errorf("%s: image %s, want %s's %s", p.tag, digest, p.same, digests[p.same])
				}
				if p.differ != "" && digest == digests[p.differ] {
					t.Errorf("%s: the same image as %s", p.tag, p.differ)
				}
			}
			resp, err := http.Get(base + "/v2/hello/tags/list")
			if err != nil {
				t.Fatal(err)
			}
			var list struct{ Tags []string }
			decodeJSON(t, resp, &list)
			want := slices.Clone(tc.tags)
			slices.Sort(want)
			if !slices.Equal(list.Tags, want) {
				t.Errorf("tags/list %q, want %q", list.Tags, want)
			}
			s.stop(t)
		})
	}
}
