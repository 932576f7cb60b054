package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/spdx"
)

// getReferrers asks for the referrers of digest in repo (filtered when
// artifactType is set) and checks the answer is an OCI image index.
func getReferrers(t *testing.T, addr, repo, digest, artifactType string) (v1.Index, http.Header) {
	t.Helper()
	u := "http://" + addr + "/v2/" + repo + "/referrers/" + digest
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	resp, body := get(t, u)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != v1.MediaTypeImageIndex {
		t.Fatalf("GET %s: %d %s\n%s", u, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var idx v1.Index
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != v1.MediaTypeImageIndex {
		t.Fatalf("referrers of %s: not an image index (%v): %s", digest, err, body)
	}
	return idx, resp.Header
}

// TestSBOMReferrer: a pulled image has its SBOM as an OCI referrer: the
// referrers API lists it (and filters by artifact type), crane fetches
// the artifact manifest and the SPDX blob by digest, the document passes
// the SPDX 2.3 schema's rules and lists exactly the closure of the paths
// it describes, and a restarted server lists the same.
func TestSBOMReferrer(t *testing.T) {
	requireTools(t, "nix-store")
	crane := craneBinary(t)
	store := t.TempDir()
	s := startServer(t, "STORAGE_PATH="+store)
	const repo = "shell/hello"
	digest, err := pullAll(http.DefaultClient, "http://"+s.addr, repo, "latest")
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := getReferrers(t, s.addr, repo, digest, "")
	if len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != spdx.MediaType || idx.Manifests[0].MediaType != v1.MediaTypeImageManifest {
		t.Fatalf("referrers %+v, want one SPDX artifact", idx.Manifests)
	}
	art := idx.Manifests[0]
	filtered, hdr := getReferrers(t, s.addr, repo, digest, spdx.MediaType)
	if hdr.Get("OCI-Filters-Applied") != "artifactType" || len(filtered.Manifests) != 1 || filtered.Manifests[0].Digest != art.Digest {
		t.Errorf("filtered by SPDX: %v %+v", hdr.Get("OCI-Filters-Applied"), filtered.Manifests)
	}
	if other, _ := getReferrers(t, s.addr, repo, digest, "application/vnd.example.signature"); len(other.Manifests) != 0 {
		t.Errorf("filtered by another type: %+v", other.Manifests)
	}

	runCrane := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(crane, append(args, "--insecure")...).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("crane %v: %v\n%s", args, err, ee.Stderr)
			}
			t.Fatalf("crane %v: %v", args, err)
		}
		return string(out)
	}
	var m v1.Manifest
	if err := json.Unmarshal([]byte(runCrane("manifest", s.addr+"/"+repo+"@"+art.Digest.String())), &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != digest || m.ArtifactType != spdx.MediaType || len(m.Layers) != 1 {
		t.Fatalf("artifact manifest %+v", m)
	}
	doc := runCrane("blob", s.addr+"/"+repo+"@"+m.Layers[0].Digest.String())
	if err := spdx.Check([]byte(doc)); err != nil {
		t.Fatalf("SBOM fails the SPDX 2.3 schema's rules: %v", err)
	}
	var sbom struct {
		Packages []struct {
			SPDXID, PackageFileName string
		}
		Relationships []struct{ SPDXElementID, RelatedSPDXElement, RelationshipType string }
	}
	if err := json.Unmarshal([]byte(doc), &sbom); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	var listed []string
	for _, p := range sbom.Packages {
		paths[p.SPDXID] = p.PackageFileName
		listed = append(listed, p.PackageFileName)
	}
	var described []string
	for _, r := range sbom.Relationships {
		if r.RelationshipType == "DESCRIBES" {
			described = append(described, paths[r.RelatedSPDXElement])
		}
	}
	out, err := exec.Command("nix-store", append([]string{"--query", "--requisites"}, described...)...).Output()
	if err != nil || len(described) == 0 {
		t.Fatalf("nix-store --query --requisites %v: %v", described, err)
	}
	requisites := strings.Fields(string(out))
	slices.Sort(requisites)
	slices.Sort(listed)
	if !slices.Equal(listed, requisites) {
		t.Errorf("SBOM lists %v, the closure is %v", listed, requisites)
	}
	for _, want := range []string{"hello", "busybox", "coreutils", "nss-cacert"} {
		if !slices.ContainsFunc(listed, func(p string) bool { return strings.HasSuffix(p, "-"+want) }) {
			t.Errorf("SBOM of %s lacks %s", repo, want)
		}
	}

	// The image config's labels.
	var cfg v1.Image
	if err := json.Unmarshal([]byte(runCrane("config", s.addr+"/"+repo+":latest")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Labels[v1.AnnotationSource] != "builtin" ||
		cfg.Config.Labels[v1.AnnotationTitle] != "bashInteractive cacert coreutils hello iana-etc moreutils nano" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
	s.stop(t)

	// Stored with the image: a new server on the same storage lists it
	// without building anything.
	s2 := startServer(t, "STORAGE_PATH="+store)
	again, _ := getReferrers(t, s2.addr, repo, digest, "")
	if len(again.Manifests) != 1 || again.Manifests[0].Digest != art.Digest {
		t.Errorf("after a restart: %+v", again.Manifests)
	}
	resp, err := http.Get("http://" + s2.addr + "/v2/" + repo + "/manifests/" + art.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != v1.MediaTypeImageManifest || !strings.Contains(string(body), `"subject"`) {
		t.Errorf("artifact manifest by digest after a restart: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s2.stop(t)
}
