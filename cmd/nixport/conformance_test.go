package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestOCIConformance runs the OCI distribution-spec conformance suite (the
// Go tool pinned in go.mod) in read-only mode against a built image, on
// the default configuration (the builtin package set).
func TestOCIConformance(t *testing.T) {
	requireTools(t, "nix-store")
	suite := buildSuite(t)

	// No package source configured: the builtin set, whose only tag is
	// latest, so a made-up tag is an unknown manifest as the suite expects.
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	const repo, tag = "shell/hello", "latest"
	manifestDigest, err := pullAll(http.DefaultClient, "http://"+s.addr, repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.addr + "/v2/" + repo + "/manifests/" + manifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	err = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest.String())
	}
	// The image's SBOM, an OCI referrer: its artifact manifest and SPDX
	// blob are read-only data too, and the suite lists the referrers.
	manifests := []string{manifestDigest}
	refs, _ := getReferrers(t, s.addr, repo, manifestDigest, "")
	for _, d := range refs.Manifests {
		manifests = append(manifests, d.Digest.String())
		resp, err := http.Get("http://" + s.addr + "/v2/" + repo + "/manifests/" + d.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		var art v1.Manifest
		err = json.NewDecoder(resp.Body).Decode(&art)
		resp.Body.Close()
		if err != nil || len(art.Layers) != 1 {
			t.Fatalf("SBOM artifact %s: %v %+v", d.Digest, err, art)
		}
		blobs = append(blobs, art.Config.Digest.String(), art.Layers[0].Digest.String())
	}
	if len(manifests) != 2 {
		t.Fatalf("the image has %d referrers, want its SBOM", len(manifests)-1)
	}

	env := append(os.Environ(),
		"OCI_REGISTRY="+s.addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+repo,
		"OCI_REPO2="+repo,
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_RO_DATA_TAGS="+tag,
		"OCI_RO_DATA_MANIFESTS="+strings.Join(manifests, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(blobs, " "),
		"OCI_RO_DATA_REFERRERS="+manifestDigest,
		"OCI_HIDE_SKIPPED_WORKFLOWS=0",
	)
	// run runs the suite (optionally one branch of it) in a directory of
	// its own and returns its report and whether results.yaml was written.
	run := func(filter string) (report string, wroteResults bool, err error) {
		dir := t.TempDir()
		cmd := exec.Command(suite)
		cmd.Dir = dir
		cmd.Env = append(env, "OCI_RESULTS_DIR="+filepath.Join(dir, "results"), "OCI_FILTER_TEST="+filter)
		if filter != "" && !strings.HasSuffix(filter, "/read-only") {
			// Read-only data that a branch does not use stays in status
			// Unknown, which the suite cannot write to results.yaml.
			cmd.Env = slices.DeleteFunc(cmd.Env, func(v string) bool { return strings.HasPrefix(v, "OCI_RO_DATA_") })
		}
		out, err := cmd.CombinedOutput()
		st, statErr := os.Stat(filepath.Join(dir, "results", "results.yaml"))
		return string(out), statErr == nil && st.Size() > 0, err
	}
	count := func(report, status string) int { return suiteCount(t, report, status) }

	// The whole suite. With push disabled, this version of the suite
	// panics after printing its report, in ReportResultsYAML (it records a
	// status for the skipped "sha256 blobs" branch without its data), so
	// results.yaml is never written: the report is read here, and
	// results.yaml is checked branch by branch below.
	report, _, err := run("")
	if err != nil && !strings.Contains(report, "ReportResultsYAML") {
		t.Fatalf("conformance suite: %v\n%s", err, report)
	}
	if !strings.Contains(report, "OCI Conformance Result: Pass") || count(report, "FAIL") != 0 || count(report, "Error") != 0 || count(report, "Pass") == 0 {
		t.Fatalf("conformance suite did not pass:\n%s", report)
	}
	passed := count(report, "Pass")
	// Asked for a tag that names nothing, the registry answers 404, not
	// an image.
	if !regexp.MustCompile(`(?m)^\s*OCI Conformance Test/(.*/)?missing-manifest/by-tag: Pass$`).MatchString(report) {
		t.Fatalf("missing-manifest/by-tag did not pass:\n%s", report)
	}

	// Branch by branch, each run must write results.yaml (the suite exits
	// 0 even on a configuration error) and pass; every branch that ran in
	// the whole suite must be among them.
	branches := regexp.MustCompile(`(?m)^  OCI Conformance Test/([^/:]+): (\w+)$`).FindAllStringSubmatch(report, -1)
	checked := 0
	for _, b := range branches {
		name, status := b[1], b[2]
		if status == "Disabled" {
			continue
		}
		if status != "Pass" {
			t.Fatalf("branch %s: %s\n%s", name, status, report)
		}
		if name == "read-only" {
			// Filtered to this branch, the suite runs none of its tests
			// (0 counted): it is judged by the whole run's report above.
			continue
		}
		// A filtered run exits 1 (its overall status is not Pass, the
		// other branches being disabled): judge it by its counts.
		rep, wrote, err := run("OCI Conformance Test/" + name)
		var exit *exec.ExitError
		if (err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1)) || !wrote {
			t.Fatalf("branch %s: results.yaml written: %v, err %v\n%s", name, wrote, err, rep)
		}
		if count(rep, "FAIL") != 0 || count(rep, "Error") != 0 || count(rep, "Pass") == 0 {
			t.Fatalf("branch %s did not pass:\n%s", name, rep)
		}
		checked++
	}
	if checked < 4 {
		t.Fatalf("only %d branches of the suite ran:\n%s", checked, report)
	}
	t.Logf("OCI conformance: %d tests passed, 0 failed, in %d branches", passed, checked)
	s.stop(t)
}

// buildSuite builds the OCI conformance suite (the Go tool pinned in
// go.mod) and returns the binary.
func buildSuite(t *testing.T) string {
	t.Helper()
	suite := filepath.Join(t.TempDir(), "conformance")
	if out, err := exec.Command("go", "build", "-o", suite, "github.com/opencontainers/distribution-spec/conformance").CombinedOutput(); err != nil {
		t.Fatalf("building the conformance suite: %v\n%s", err, out)
	}
	return suite
}

// suiteCount is the number of tests of status (Pass, FAIL, ...) in a
// conformance report.
func suiteCount(t *testing.T, report, status string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + status + `\.+:\s+(\d+)$`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no %s count in the report:\n%s", status, report)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
