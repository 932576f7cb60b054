package manifest

import (
	"strconv"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

var d512 = "sha512:" + strings.Repeat("3", 128)

func desc(mt, d string, size int) string {
	return `{"mediaType":"` + mt + `","digest":"` + d + `","size":` + strconv.Itoa(size) + `}`
}

func TestParsePushed(t *testing.T) {
	image := `{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageManifest + `","config":` + desc(v1.MediaTypeImageConfig, d1, 10) +
		`,"layers":[` + desc(v1.MediaTypeImageLayerGzip, d2, 20) + `],"annotations":{"a":"b"}}`
	noMediaType := `{"schemaVersion":2,"config":` + desc(v1.MediaTypeImageConfig, d1, 10) + `,"layers":[]}`
	index := `{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageIndex + `","manifests":[` + desc(v1.MediaTypeImageManifest, d512, 5) + `],"artifactType":"application/x.test"}`
	withSubject := `{"schemaVersion":2,"mediaType":"` + v1.MediaTypeImageManifest + `","config":` + desc("application/vnd.oci.empty.v1+json", d1, 2) +
		`,"layers":[],"subject":` + desc(v1.MediaTypeImageManifest, d2, 7) + `,"custom":{"x":1}}`
	docker := `{"schemaVersion":2,"mediaType":"` + DockerManifest + `","config":` + desc(DockerConfig, d1, 10) + `,"layers":[` + desc(DockerLayerGzip, d2, 20) + `]}`

	for _, tt := range []struct {
		name, contentType, body string
		wantErr                 string
		check                   func(*Pushed) bool
	}{
		{name: "image", contentType: v1.MediaTypeImageManifest, body: image, check: func(p *Pushed) bool {
			return !p.IsIndex() && p.Config.Digest == d1 && len(p.Layers) == 1 && p.Layers[0].Size == 20 &&
				p.ArtifactType == v1.MediaTypeImageConfig && p.Annotations["a"] == "b" && p.Subject == nil
		}},
		{name: "parameters ignored", contentType: v1.MediaTypeImageManifest + "; charset=utf-8", body: image, check: func(p *Pushed) bool { return p.MediaType == v1.MediaTypeImageManifest }},
		{name: "type from the body", body: image, check: func(p *Pushed) bool { return p.MediaType == v1.MediaTypeImageManifest }},
		{name: "type from the header", contentType: v1.MediaTypeImageManifest, body: noMediaType, check: func(p *Pushed) bool { return len(p.Layers) == 0 }},
		{name: "index", contentType: v1.MediaTypeImageIndex, body: index, check: func(p *Pushed) bool {
			return p.IsIndex() && len(p.Manifests) == 1 && string(p.Manifests[0].Digest) == d512 && p.ArtifactType == "application/x.test"
		}},
		{name: "empty index", contentType: v1.MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[]}`, check: func(p *Pushed) bool { return p.IsIndex() && len(p.Manifests) == 0 }},
		{name: "subject and custom fields", contentType: v1.MediaTypeImageManifest, body: withSubject, check: func(p *Pushed) bool {
			return p.Subject != nil && p.Subject.Digest == d2 && p.ArtifactType == "application/vnd.oci.empty.v1+json"
		}},
		{name: "docker", contentType: DockerManifest, body: docker, check: func(p *Pushed) bool { return p.Config.MediaType == DockerConfig }},

		{name: "no type at all", body: noMediaType, wantErr: "no media type"},
		{name: "types differ", contentType: DockerManifest, body: image, wantErr: "differs from its Content-Type"},
		{name: "not a manifest type", contentType: "application/json", body: noMediaType, wantErr: "is not a manifest's"},
		{name: "bad content type", contentType: "a b", body: image, wantErr: "is not a media type"},
		{name: "schema 1", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":1,"config":` + desc("a/b", d1, 1) + `}`, wantErr: "schemaVersion must be 2"},
		{name: "no schema", contentType: v1.MediaTypeImageManifest, body: `{"config":` + desc("a/b", d1, 1) + `}`, wantErr: "schemaVersion must be 2"},
		{name: "no config", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":2,"layers":[]}`, wantErr: "has no config"},
		{name: "bad layer digest", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + desc("a/b", d1, 1) + `,"layers":[` + desc("a/b", "sha256:xyz", 1) + `]}`, wantErr: "layers[0]"},
		{name: "negative size", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + desc("a/b", d1, -1) + `}`, wantErr: "negative size"},
		{name: "bad descriptor type", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + desc("nope", d1, 1) + `}`, wantErr: "is not a media type"},
		{name: "bad index entry", contentType: v1.MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[` + desc("a/b", "md5:00", 1) + `]}`, wantErr: "manifests[0]"},
		{name: "bad subject", contentType: v1.MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[],"subject":{"digest":"x"}}`, wantErr: "subject"},
		{name: "bad artifact type", contentType: v1.MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[],"artifactType":"x"}`, wantErr: "artifactType"},
		{name: "not JSON", contentType: v1.MediaTypeImageManifest, body: `nope`, wantErr: "not a JSON object"},
		{name: "an array", contentType: v1.MediaTypeImageManifest, body: `[1]`, wantErr: "not a JSON object"},
		{name: "two objects", contentType: v1.MediaTypeImageManifest, body: image + image, wantErr: "data after"},
		{name: "wrong field type", contentType: v1.MediaTypeImageManifest, body: `{"schemaVersion":"2"}`, wantErr: `field "schemaVersion"`},
		{name: "truncated", contentType: v1.MediaTypeImageManifest, body: image[:40], wantErr: "right shape"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePushed(tt.contentType, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("unexpected %+v", p)
			}
		})
	}
}

func TestNonDistributable(t *testing.T) {
	for mt, want := range map[string]bool{
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
		"application/vnd.oci.image.layer.nondistributable.v1.tar":      true,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    true,
		v1.MediaTypeImageLayerGzip:                                     false,
		DockerLayerGzip:                                                false,
	} {
		if got := IsNonDistributable(mt); got != want {
			t.Errorf("IsNonDistributable(%s) = %v", mt, got)
		}
	}
}

// FuzzParsePushed feeds arbitrary bodies and Content-Types (a pushing
// client's input) to ParsePushed: it never panics, and what it accepts
// is a manifest of a known media type whose every descriptor is valid.
//
//	go test ./manifest -run '^$' -fuzz FuzzParsePushed -fuzztime 1m
func FuzzParsePushed(f *testing.F) {
	f.Add(v1.MediaTypeImageManifest, `{"schemaVersion":2,"config":`+desc(v1.MediaTypeImageConfig, d1, 10)+`,"layers":[`+desc(v1.MediaTypeImageLayerGzip, d2, 20)+`]}`)
	f.Add("", `{"schemaVersion":2,"mediaType":"`+v1.MediaTypeImageIndex+`","manifests":[`+desc(v1.MediaTypeImageManifest, d512, 5)+`]}`)
	f.Add(DockerManifest, `{"schemaVersion":2,"mediaType":"`+DockerManifest+`","config":`+desc(DockerConfig, d1, 1)+`}`)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		p, err := ParsePushed(contentType, []byte(body))
		if err != nil {
			if p != nil {
				t.Fatal("a result with an error")
			}
			return
		}
		if !IsManifestMediaType(p.MediaType) {
			t.Fatalf("accepted media type %q", p.MediaType)
		}
		all := append(append([]v1.Descriptor{}, p.Layers...), p.Manifests...)
		if p.Config != nil {
			all = append(all, *p.Config)
		}
		if p.Subject != nil {
			all = append(all, *p.Subject)
		}
		for _, d := range all {
			if checkDescriptor(d, "descriptor") != nil {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		if p.IsIndex() != (p.MediaType == v1.MediaTypeImageIndex || p.MediaType == DockerManifestList) {
			t.Fatalf("%s parsed as index=%v", p.MediaType, p.IsIndex())
		}
	})
}
