package manifest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestBuildUserAndLabels(t *testing.T) {
	img := testImage()
	img.User = "65532:65532"
	img.Labels = map[string]string{v1.AnnotationTitle: "hello", v1.AnnotationRevision: "", v1.AnnotationSource: "builtin"}
	b, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	var cfg v1.Image
	if err := json.Unmarshal(b.Config.Bytes, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{v1.AnnotationTitle: "hello", v1.AnnotationSource: "builtin"}
	if cfg.Config.User != "65532:65532" || !reflect.DeepEqual(cfg.Config.Labels, want) {
		t.Errorf("user %q labels %v, want %v", cfg.Config.User, cfg.Config.Labels, want)
	}
	// Without either, the config is as before: no User, no Labels key.
	plain, err := Build(testImage())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain.Config.Bytes, []byte(`"User"`)) || bytes.Contains(plain.Config.Bytes, []byte(`"Labels"`)) {
		t.Errorf("config without user and labels: %s", plain.Config.Bytes)
	}
}

func TestArtifact(t *testing.T) {
	img, err := Build(testImage())
	if err != nil {
		t.Fatal(err)
	}
	content := v1.Descriptor{MediaType: "application/spdx+json", Digest: digest.FromString("sbom"), Size: 4,
		Annotations: map[string]string{v1.AnnotationTitle: "sbom.spdx.json"}}
	for _, subject := range []Blob{img.OCI, img.Docker} {
		m, desc, err := Artifact("application/spdx+json", content, subject.Descriptor())
		if err != nil {
			t.Fatal(err)
		}
		var got v1.Manifest
		if err := json.Unmarshal(m.Bytes, &got); err != nil {
			t.Fatal(err)
		}
		if got.SchemaVersion != 2 || got.MediaType != v1.MediaTypeImageManifest || got.ArtifactType != "application/spdx+json" ||
			got.Config.MediaType != v1.MediaTypeEmptyJSON || got.Config.Digest != digest.FromString("{}") || got.Config.Size != 2 ||
			len(got.Layers) != 1 || !reflect.DeepEqual(got.Layers[0], content) ||
			got.Subject == nil || got.Subject.Digest != subject.Digest || got.Subject.MediaType != subject.MediaType || got.Subject.Size != subject.Size {
			t.Errorf("artifact manifest: %s", m.Bytes)
		}
		if desc.Digest != m.Digest || desc.Size != m.Size || desc.MediaType != v1.MediaTypeImageManifest || desc.ArtifactType != "application/spdx+json" {
			t.Errorf("descriptor %+v of %s", desc, m.Digest)
		}
		again, _, _ := Artifact("application/spdx+json", content, subject.Descriptor())
		if !bytes.Equal(again.Bytes, m.Bytes) {
			t.Error("same artifact, different bytes")
		}
	}
	if string(EmptyConfig.Bytes) != "{}" || EmptyConfig.MediaType != v1.MediaTypeEmptyJSON {
		t.Errorf("empty config %+v", EmptyConfig)
	}
	bad := []struct {
		name             string
		typ              string
		content, subject v1.Descriptor
	}{
		{"no type", "", content, img.OCI.Descriptor()},
		{"bad content digest", "a/b", v1.Descriptor{MediaType: "a/b", Digest: "sha256:x"}, img.OCI.Descriptor()},
		{"subject not a manifest", "a/b", content, img.Config.Descriptor()},
		{"subject without type", "a/b", content, v1.Descriptor{Digest: img.OCI.Digest, Size: 1}},
	}
	for _, tc := range bad {
		if _, _, err := Artifact(tc.typ, tc.content, tc.subject); err == nil || !strings.Contains(err.Error(), "artifact") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
