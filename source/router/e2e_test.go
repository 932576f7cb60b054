package router

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nixport/nixport/builder"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/source"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
	"github.com/nixport/nixport/web"
)

// serveRegistry serves src through a Builder and the real registry API on
// 127.0.0.1 and returns the address.
func serveRegistry(t *testing.T, store storage.Backend, src source.Source, log logrus.FieldLogger) (string, *builder.Builder) {
	t.Helper()
	b, err := builder.New(builder.Options{Storage: store, Source: src, Log: log, MovingTagTTL: time.Minute, BuildTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h, err := web.New(web.Options{Storage: store, Images: b, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		b.Close()
	})
	return ln.Addr().String(), b
}

// pulled is an image skopeo copied out of the registry.
type pulled struct {
	dir      string
	manifest v1.Manifest
	config   v1.Image
}

// skopeoPull copies ref from the registry at addr into an OCI layout.
func skopeoPull(t *testing.T, addr, ref string, flags ...string) pulled {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pulled")
	args := append(append([]string{}, flags...), "copy", "--quiet", "--src-tls-verify=false", "docker://"+addr+"/"+ref, "oci:"+dir+":latest")
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
	var idx v1.Index
	testkit.ReadJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("pulled layout holds %d manifests", len(idx.Manifests))
	}
	p := pulled{dir: dir}
	testkit.ReadJSON(t, pulledBlob(dir, idx.Manifests[0].Digest.String()), &p.manifest)
	testkit.ReadJSON(t, pulledBlob(dir, p.manifest.Config.Digest.String()), &p.config)
	return p
}

func pulledBlob(dir, digest string) string {
	return filepath.Join(dir, "blobs", strings.Replace(digest, ":", "/", 1))
}

// run unpacks the image's layers in order into a root and runs argv in it
// with chroot.
func (p pulled) run(t *testing.T, argv ...string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range p.manifest.Layers {
		if out, err := exec.Command("tar", "-xzf", pulledBlob(p.dir, l.Digest.String()), "-C", root).CombinedOutput(); err != nil {
			t.Fatalf("unpacking layer %s: %v\n%s", l.Digest, err, out)
		}
	}
	cmd := exec.Command("chroot", append([]string{root}, argv...)...)
	cmd.Env = []string{"PATH=/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %v: %v\n%s", argv, err, out)
	}
	return string(out)
}

// TestCommandImagesPullAndRun builds images with a real command behind
// the real registry API, pulls them with skopeo and runs them.
func TestCommandImagesPullAndRun(t *testing.T) {
	testkit.RequireTools(t, "skopeo", "chroot", "tar")
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	dir, outs := t.TempDir(), t.TempDir()
	routes := writeRoutes(t, dir,
		map[string]any{"match": "cmd/", "type": "command", "argv": []string{bin, "{name}", "{tag}", "{out}"}},
		map[string]any{"match": "multi/", "type": "command", "argv": []string{bin, "-platforms=amd64,arm64", "{name}", "{tag}", "{out}"}, "pinned": true},
	)
	router, err := Load(routes, nil, Options{Storage: store, Log: testkit.QuietLog(), CommandTimeout: 30 * time.Second, TempDir: outs})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveRegistry(t, store, router, testkit.QuietLog())

	t.Run("one image", func(t *testing.T) {
		p := skopeoPull(t, addr, "cmd/hello:v1")
		if len(p.manifest.Layers) != 3 || p.config.Architecture != "amd64" {
			t.Errorf("pulled %d layers, architecture %q", len(p.manifest.Layers), p.config.Architecture)
		}
		if got, want := p.run(t, "/bin/hello"), "hello from cmd/hello:v1\narch amd64\n"; got != want {
			t.Errorf("ran %q, want %q", got, want)
		}
	})
	for _, arch := range []string{"arm64", "amd64"} {
		t.Run("platform "+arch, func(t *testing.T) {
			p := skopeoPull(t, addr, "multi/app:latest", "--override-arch", arch, "--override-os", "linux")
			if p.config.Architecture != arch {
				t.Errorf("--override-arch %s pulled architecture %q", arch, p.config.Architecture)
			}
			// Both images hold the host's busybox, so both run here.
			if got, want := p.run(t, "/bin/hello"), "hello from multi/app:latest\narch "+arch+"\n"; got != want {
				t.Errorf("ran %q, want %q", got, want)
			}
		})
	}
	testkit.WantEmptyDir(t, outs)
}

func writeRoutes(t *testing.T, dir string, routes ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"routes": routes})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "routes.json")
	testkit.WriteFile(t, path, data)
	return path
}

// TestLayoutSourceThroughBuilder: a layout is ingested once; asked again,
// its unchanged index plans the same key, whose image is reused.
func TestLayoutSourceThroughBuilder(t *testing.T) {
	bin := testkit.BuildLayoutgen(t)
	store, _ := testkit.NewFSStore(t)
	dir := t.TempDir()
	testkit.CopyDir(t, testkit.GenLayout(t, bin), filepath.Join(dir, "a"))
	testkit.WriteFile(t, filepath.Join(dir, "images.json"), []byte(`{"pre/app:latest": "a"}`))
	routes := writeRoutes(t, dir, map[string]any{"match": "pre/", "type": "layout", "manifest": "images.json"})
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	router, err := Load(routes, nil, Options{Storage: store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := builder.New(builder.Options{Storage: store, Source: router, Log: log, MovingTagTTL: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := b.Image(ctx, "pre/app", "latest")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := b.Image(ctx, "pre/app", "latest")
		if err != nil || again[manifest.OCI] != first[manifest.OCI] {
			t.Fatalf("again: %v %v", again, err)
		}
	}
	ingests, reused := 0, 0
	for _, e := range hook.AllEntries() {
		switch e.Message {
		case "OCI layout ingested":
			ingests++
		case "plan built before: its image is reused":
			reused++
		}
	}
	if ingests != 1 || reused != 3 {
		t.Errorf("%d ingests and %d reuses, want 1 and 3", ingests, reused)
	}
}
