// Command layoutgen writes a real, runnable multi-layer OCI image layout:
// the stand-in for an external build (Bazel, a script) in the tests of
// the command and layout sources. Its images hold a static busybox, so
// they run under chroot.
//
//	layoutgen [flags] NAME TAG OUT
//
// It can also misbehave on purpose: write a corrupt layout (-corrupt),
// fail (-fail), or hang (-hang).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type layout struct {
	dir    string
	layers []string // digests of layer blobs written, in order
	manifs []string
}

func main() {
	platforms := flag.String("platforms", "amd64", "comma-separated architectures: one gives a single manifest, several one manifest per platform")
	nested := flag.Bool("index", false, "put the platform manifests in an image index that index.json names")
	record := flag.String("record", "", "write the argv as JSON to this file")
	corrupt := flag.String("corrupt", "", "bad-digest, missing, truncated, bad-index, traversal, manifest-digest")
	fail := flag.Int("fail", 0, "print to stderr and exit with this status")
	hang := flag.String("hang", "", "start a child in the process group, write both pids to this file and wait forever")
	ignoreTerm := flag.Bool("ignore-term", false, "with -hang: ignore SIGTERM")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox to put in the image")
	_ = flag.String("label", "", "ignored: lets tests pass a placeholder inside an element")
	flag.Parse()

	if *record != "" {
		data, _ := json.Marshal(os.Args)
		if err := os.WriteFile(*record, data, 0o644); err != nil {
			die("recording argv: %v", err)
		}
	}
	if *fail != 0 {
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(os.Stderr, "build step %d of 50\n", i)
		}
		fmt.Fprintln(os.Stderr, "ERROR: //images/broken:image failed to build")
		os.Exit(*fail)
	}
	if *hang != "" {
		if *ignoreTerm {
			signal.Ignore(syscall.SIGTERM)
		}
		child := exec.Command("sleep", "300")
		if err := child.Start(); err != nil {
			die("starting child: %v", err)
		}
		if err := os.WriteFile(*hang, []byte(fmt.Sprintf("%d %d\n", os.Getpid(), child.Process.Pid)), 0o644); err != nil {
			die("%v", err)
		}
		for {
			time.Sleep(time.Hour)
		}
	}
	if flag.NArg() != 3 {
		die("usage: layoutgen [flags] NAME TAG OUT")
	}
	name, tag, out := flag.Arg(0), flag.Arg(1), flag.Arg(2)
	bb, err := os.ReadFile(*busybox)
	if err != nil {
		die("reading busybox: %v", err)
	}
	l := &layout{dir: out}
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		die("%v", err)
	}
	var descs []descriptor
	archs := strings.Split(*platforms, ",")
	for _, arch := range archs {
		d := l.image(bb, name, tag, arch)
		if len(archs) > 1 || *nested {
			d.Platform = &platform{Architecture: arch, OS: "linux"}
		}
		descs = append(descs, d)
	}
	if *nested {
		idx := l.blob("application/vnd.oci.image.index.v1+json", mustJSON(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs,
		}))
		descs = []descriptor{idx}
	}
	descs[0].Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	l.write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	l.write("index.json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs,
	}))
	l.corrupt(*corrupt)
}

// image writes one image's blobs and returns its manifest's descriptor.
func (l *layout) image(busybox []byte, name, tag, arch string) descriptor {
	var layers []descriptor
	var diffIDs []string
	add := func(files []file) {
		d, diffID := l.layer(files)
		layers = append(layers, d)
		diffIDs = append(diffIDs, diffID)
	}
	add([]file{{name: "bin/", mode: 0o755}, {name: "bin/busybox", mode: 0o755, data: busybox}})
	add([]file{
		{name: "bin/sh", link: "busybox"}, {name: "bin/cat", link: "busybox"}, {name: "bin/echo", link: "busybox"},
		{name: "etc/", mode: 0o755},
		{name: "etc/greeting", mode: 0o644, data: []byte(fmt.Sprintf("hello from %s:%s\n", name, tag))},
	})
	add([]file{
		{name: "etc/arch", mode: 0o644, data: []byte(arch + "\n")},
		{name: "bin/hello", mode: 0o755, data: []byte("#!/bin/sh\ncat /etc/greeting\necho \"arch $(cat /etc/arch)\"\n")},
	})
	config := l.blob("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}))
	m := l.blob("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": config, "layers": layers,
	}))
	l.manifs = append(l.manifs, m.Digest)
	return m
}

type file struct {
	name string
	mode int64
	data []byte
	link string
}

// layer writes a gzipped tar of files (fixed times and owners).
func (l *layout) layer(files []file) (descriptor, string) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Unix(1, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		case strings.HasSuffix(f.name, "/"):
			h.Typeflag = tar.TypeDir
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			die("%v", err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(f.data)
		}
	}
	if err := tw.Close(); err != nil {
		die("%v", err)
	}
	diffID := sha256.Sum256(raw.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	d := l.blob("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())
	l.layers = append(l.layers, d.Digest)
	return d, "sha256:" + hex.EncodeToString(diffID[:])
}

func (l *layout) blob(mediaType string, data []byte) descriptor {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	l.write(filepath.Join("blobs", "sha256", h), data)
	return descriptor{MediaType: mediaType, Digest: "sha256:" + h, Size: int64(len(data))}
}

func (l *layout) write(name string, data []byte) {
	if err := os.WriteFile(filepath.Join(l.dir, name), data, 0o644); err != nil {
		die("%v", err)
	}
}

func (l *layout) path(digest string) string {
	return filepath.Join(l.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// corrupt damages the layout the way mode says.
func (l *layout) corrupt(mode string) {
	layer := l.path(l.layers[len(l.layers)-1])
	switch mode {
	case "":
	case "bad-digest":
		data, _ := os.ReadFile(layer)
		data[len(data)/2] ^= 0xff
		l.write(strings.TrimPrefix(layer, l.dir+"/"), data)
	case "manifest-digest":
		p := l.path(l.manifs[0])
		data, _ := os.ReadFile(p)
		data = bytes.Replace(data, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":2 `), 1)[:len(data)]
		os.WriteFile(p, data, 0o644)
	case "missing":
		os.Remove(layer)
	case "truncated":
		st, _ := os.Stat(layer)
		os.Truncate(layer, st.Size()-10)
	case "bad-index":
		l.write("index.json", []byte(`{"schemaVersion":2,"manifests":"none"}`))
	case "traversal":
		data, _ := os.ReadFile(filepath.Join(l.dir, "index.json"))
		data = bytes.Replace(data, []byte(l.manifs[0]), []byte("sha256:../../../../etc/passwd"), 1)
		l.write("index.json", data)
	default:
		die("unknown -corrupt mode %q", mode)
	}
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		die("%v", err)
	}
	return data
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "layoutgen: "+format+"\n", args...)
	os.Exit(2)
}
