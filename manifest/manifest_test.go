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

func TestNegotiate(t *testing.T) {
	const (
		oci    = v1.MediaTypeImageManifest
		index  = v1.MediaTypeImageIndex
		docker = DockerManifest
	)
	tests := []struct {
		name   string
		accept []string
		want   Format
	}{
		{"no header", nil, OCI},
		{"empty value", []string{""}, OCI},
		{"wildcard", []string{"*/*"}, OCI},
		{"oci only", []string{oci}, OCI},
		{"docker only", []string{docker}, Docker},
		{"docker and list", []string{docker, DockerManifestList}, Docker},
		{"docker and oci index only", []string{docker + ", " + index}, Docker},
		{"docker and oci, separate values", []string{docker, oci}, OCI},
		{"docker and oci, one list", []string{docker + "," + oci}, OCI},
		{"docker with wildcard fallback", []string{docker + ", */*;q=0.1"}, Docker},
		{"oci refused with q=0", []string{docker + ", " + oci + ";q=0"}, Docker},
		{"docker refused with q=0", []string{docker + ";q=0"}, OCI},
		{"q with spaces and case", []string{" Application/VND.Docker.Distribution.Manifest.v2+JSON ; Q = 0.5 "}, Docker},
		{"bad q is refused", []string{docker + ";q=abc"}, OCI},
		{"other params ignored", []string{docker + ";charset=utf-8;q=1"}, Docker},
		{"unrelated types", []string{"application/json", "text/html"}, OCI},
		{"empty ranges in list", []string{",,," + docker + ",,"}, Docker},
		{"typical docker client", []string{
			"application/vnd.docker.distribution.manifest.v2+json",
			"application/vnd.docker.distribution.manifest.list.v2+json",
			"application/vnd.oci.image.index.v1+json",
			"application/vnd.oci.image.manifest.v1+json",
			"application/vnd.docker.distribution.manifest.v1+prettyjws",
		}, OCI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Negotiate(tt.accept); got != tt.want {
				t.Errorf("Negotiate(%q) = %v, want %v", tt.accept, got, tt.want)
			}
		})
	}
}

func testImage() Image {
	return Image{
		Architecture: "amd64",
		OS:           "linux",
		Env:          []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"},
		Layers: []Layer{
			{
				Digest:  digest.FromString("layer 1 gz"),
				DiffID:  digest.FromString("layer 1 tar"),
				Size:    123,
				Comment: "/nix/store/aaaa-glibc-2.40 /nix/store/bbbb-zlib-1.3",
			},
			{
				Digest:  digest.FromString("layer 2 gz"),
				DiffID:  digest.FromString("layer 2 tar"),
				Size:    456,
				Comment: "customisation layer",
			},
		},
	}
}

func TestBuild(t *testing.T) {
	img := testImage()
	b, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}

	// The config, exactly: a golden check of the whole document.
	wantConfig := `{"created":"1970-01-01T00:00:01Z","architecture":"amd64","os":"linux",` +
		`"config":{"Env":["PATH=/bin:/usr/bin:/sbin:/usr/sbin","SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"]},` +
		`"rootfs":{"type":"layers","diff_ids":["` + string(img.Layers[0].DiffID) + `","` + string(img.Layers[1].DiffID) + `"]},` +
		`"history":[{"created":"1970-01-01T00:00:01Z","created_by":"nixport","comment":"/nix/store/aaaa-glibc-2.40 /nix/store/bbbb-zlib-1.3"},` +
		`{"created":"1970-01-01T00:00:01Z","created_by":"nixport","comment":"customisation layer"}]}`
	if got := string(b.Config.Bytes); got != wantConfig {
		t.Errorf("config\n got %s\nwant %s", got, wantConfig)
	}
	checkBlob(t, "config", b.Config, v1.MediaTypeImageConfig)

	var cfg v1.Image
	if err := json.Unmarshal(b.Config.Bytes, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Created.Equal(Created) || cfg.Created.Format("2006-01-02T15:04:05Z07:00") != "1970-01-01T00:00:01Z" {
		t.Errorf("created %v", cfg.Created)
	}
	if len(cfg.History) != len(img.Layers) || len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		t.Fatalf("history %d, diff_ids %d, want %d", len(cfg.History), len(cfg.RootFS.DiffIDs), len(img.Layers))
	}

	forms := []struct {
		f                         Format
		blob                      Blob
		manifest, config, layerMT string
	}{
		{OCI, b.OCI, v1.MediaTypeImageManifest, v1.MediaTypeImageConfig, v1.MediaTypeImageLayerGzip},
		{Docker, b.Docker, DockerManifest, DockerConfig, DockerLayerGzip},
	}
	for _, f := range forms {
		t.Run(f.f.String(), func(t *testing.T) {
			if got := b.Manifest(f.f); !reflect.DeepEqual(got, f.blob) {
				t.Errorf("Manifest(%v) is not the %v blob", f.f, f.f)
			}
			checkBlob(t, "manifest", f.blob, f.manifest)
			var m v1.Manifest
			if err := json.Unmarshal(f.blob.Bytes, &m); err != nil {
				t.Fatal(err)
			}
			if m.SchemaVersion != 2 || m.MediaType != f.manifest {
				t.Errorf("schemaVersion %d mediaType %q", m.SchemaVersion, m.MediaType)
			}
			wantCfg := v1.Descriptor{MediaType: f.config, Digest: b.Config.Digest, Size: b.Config.Size}
			if !reflect.DeepEqual(m.Config, wantCfg) {
				t.Errorf("config descriptor %+v, want %+v", m.Config, wantCfg)
			}
			if len(m.Layers) != len(img.Layers) {
				t.Fatalf("%d layers, want %d", len(m.Layers), len(img.Layers))
			}
			for i, l := range m.Layers {
				want := v1.Descriptor{MediaType: f.layerMT, Digest: img.Layers[i].Digest, Size: img.Layers[i].Size}
				if !reflect.DeepEqual(l, want) {
					t.Errorf("layer %d: %+v, want %+v", i, l, want)
				}
			}
			// Only the documented keys: nothing host- or time-dependent.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(f.blob.Bytes, &raw); err != nil {
				t.Fatal(err)
			}
			for k := range raw {
				switch k {
				case "schemaVersion", "mediaType", "config", "layers":
				default:
					t.Errorf("unexpected manifest key %q", k)
				}
			}
		})
	}
}

func checkBlob(t *testing.T, what string, b Blob, mediaType string) {
	t.Helper()
	if b.MediaType != mediaType {
		t.Errorf("%s media type %q, want %q", what, b.MediaType, mediaType)
	}
	if b.Digest != digest.FromBytes(b.Bytes) || b.Size != int64(len(b.Bytes)) {
		t.Errorf("%s digest/size %s/%d do not match its %d bytes", what, b.Digest, b.Size, len(b.Bytes))
	}
}

func TestBuildDeterministic(t *testing.T) {
	a, err := Build(testImage())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b, err := Build(testImage())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Config.Bytes, b.Config.Bytes) || !bytes.Equal(a.OCI.Bytes, b.OCI.Bytes) || !bytes.Equal(a.Docker.Bytes, b.Docker.Bytes) {
			t.Fatal("same image gave different bytes")
		}
	}
	// A different layer changes both manifests.
	img := testImage()
	img.Layers[1].Digest = digest.FromString("other")
	c, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	if c.OCI.Digest == a.OCI.Digest || c.Docker.Digest == a.Docker.Digest {
		t.Error("a different layer kept the manifest digest")
	}
	if c.Config.Digest != a.Config.Digest {
		t.Error("a different compressed blob changed the config (only diff_ids are in it)")
	}
}

func TestBuildEnv(t *testing.T) {
	img := testImage()
	img.Env = []string{"A=1", "PATH=/custom/bin", "B="}
	b, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	var cfg v1.Image
	if err := json.Unmarshal(b.Config.Bytes, &cfg); err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=1", "PATH=/custom/bin", "B="}; !reflect.DeepEqual(cfg.Config.Env, want) {
		t.Errorf("env %q, want %q", cfg.Config.Env, want)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Image)
		want   string
	}{
		{"no architecture", func(i *Image) { i.Architecture = "" }, "architecture and os"},
		{"no os", func(i *Image) { i.OS = "" }, "architecture and os"},
		{"no layers", func(i *Image) { i.Layers = nil }, "no layers"},
		{"bad env", func(i *Image) { i.Env = []string{"NOEQUALS"} }, "want NAME=value"},
		{"empty env name", func(i *Image) { i.Env = []string{"=x"} }, "want NAME=value"},
		{"duplicate env", func(i *Image) { i.Env = []string{"A=1", "A=2"} }, "A set twice"},
		{"bad digest", func(i *Image) { i.Layers[0].Digest = "sha256:nothex" }, "layer 0 digest"},
		{"empty diff_id", func(i *Image) { i.Layers[1].DiffID = "" }, "layer 1 diff_id"},
		{"negative size", func(i *Image) { i.Layers[1].Size = -1 }, "negative size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := testImage()
			tt.modify(&img)
			_, err := Build(img)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPlatform(t *testing.T) {
	tests := []struct {
		system, arch, os string
		ok               bool
	}{
		{"x86_64-linux", "amd64", "linux", true},
		{"aarch64-linux", "arm64", "linux", true},
		{"x86_64-darwin", "", "", false},
		{"i686-linux", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		arch, os, err := Platform(tt.system)
		if (err == nil) != tt.ok || arch != tt.arch || os != tt.os {
			t.Errorf("Platform(%q) = %q, %q, %v", tt.system, arch, os, err)
		}
	}
}

func TestIsManifestMediaType(t *testing.T) {
	for _, mt := range []string{v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, DockerManifest, DockerManifestList} {
		if !IsManifestMediaType(mt) {
			t.Errorf("%s not a manifest media type", mt)
		}
	}
	if IsManifestMediaType(v1.MediaTypeImageConfig) {
		t.Error("config counted as a manifest")
	}
}

// Negotiate runs on every manifest GET.
func TestNegotiateDoesNotAllocate(t *testing.T) {
	accept := []string{DockerManifest + ";q=0.9, " + v1.MediaTypeImageManifest, "*/*;q=0.1"}
	if n := testing.AllocsPerRun(100, func() { Negotiate(accept) }); n != 0 {
		t.Errorf("Negotiate allocates %.0f times per call", n)
	}
}
