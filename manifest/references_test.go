package manifest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestReferences(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	desc := func(s, mediaType string) v1.Descriptor {
		return v1.Descriptor{MediaType: mediaType, Digest: d(s), Size: 1}
	}
	// What nixport builds: both manifest formats of one image.
	img := Image{Architecture: "amd64", OS: "linux", Layers: []Layer{
		{Digest: d("layer0"), DiffID: d("diff0"), Size: 10},
		{Digest: d("layer1"), DiffID: d("diff1"), Size: 20},
	}}
	built, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	encode := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name    string
		data    []byte
		want    Refs
		wantErr bool
	}{
		{"built OCI manifest", built.OCI.Bytes, Refs{Blobs: []digest.Digest{built.Config.Digest, d("layer0"), d("layer1")}}, false},
		{"built Docker manifest", built.Docker.Bytes, Refs{Blobs: []digest.Digest{built.Config.Digest, d("layer0"), d("layer1")}}, false},
		{"OCI index", encode(v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{
			desc("amd64", v1.MediaTypeImageManifest), desc("arm64", v1.MediaTypeImageManifest),
		}}), Refs{Manifests: []digest.Digest{d("amd64"), d("arm64")}}, false},
		{"Docker manifest list", []byte(`{"schemaVersion":2,"mediaType":"` + DockerManifestList + `","manifests":[{"digest":"` + string(d("m")) + `","size":1,"mediaType":"` + DockerManifest + `"}]}`),
			Refs{Manifests: []digest.Digest{d("m")}}, false},
		{"referrer with a subject: the subject is not kept", encode(v1.Manifest{
			MediaType: v1.MediaTypeImageManifest, Config: desc("cfg", v1.MediaTypeEmptyJSON),
			Layers: []v1.Descriptor{desc("sbom", "application/spdx+json")}, Subject: &v1.Descriptor{Digest: d("subject")},
		}), Refs{Blobs: []digest.Digest{d("cfg"), d("sbom")}}, false},
		{"artifact manifest blobs", []byte(`{"blobs":[{"digest":"` + string(d("b")) + `"}]}`), Refs{Blobs: []digest.Digest{d("b")}}, false},
		{"sha512 digests kept, bad ones skipped", []byte(`{"layers":[{"digest":"` + string(digest.SHA512.FromString("x")) + `"},{"digest":"sha256:nothex"},{"digest":""},{}]}`),
			Refs{Blobs: []digest.Digest{digest.SHA512.FromString("x")}}, false},
		{"no references", []byte(`{"schemaVersion":2}`), Refs{}, false},
		{"leading space", []byte("  \n{}"), Refs{}, false},
		{"not JSON", []byte("\x1f\x8b gzip"), Refs{}, true},
		{"a JSON array", []byte(`[{"layers":[]}]`), Refs{}, true},
		{"empty", nil, Refs{}, true},
		{"layers of the wrong shape", []byte(`{"layers":{"digest":"x"}}`), Refs{}, true},
		{"truncated", []byte(`{"layers":[{"digest":"` + string(d("x"))), Refs{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := References(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("References error = %v, want error: %v", err, tt.wantErr)
			}
			if !slices.Equal(got.Blobs, tt.want.Blobs) || !slices.Equal(got.Manifests, tt.want.Manifests) {
				t.Errorf("References = %+v, want %+v", got, tt.want)
			}
		})
	}
}
