package web

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestRequestLog(t *testing.T) {
	f := newFixture(t)
	oci := f.built.OCI.Digest.String()
	layer := string(f.layerDigest)
	cases := []struct {
		method, path string
		want         map[string]any // fields that must be present with these values
		absent       []string       // fields that must not be present
	}{
		{"GET", "/v2/", map[string]any{"status": 200.0, "bytes": 2.0}, []string{"image", "tag", "digest", "error"}},
		{"GET", "/v2/shell/git/manifests/latest", map[string]any{"status": 404.0, "image": "shell/git", "tag": "latest", "code": "MANIFEST_UNKNOWN", "level": "info"}, []string{"digest"}},
		{"GET", "/v2/hello/manifests/latest", map[string]any{"status": 200.0, "image": "hello", "tag": "latest", "digest": oci, "bytes": float64(len(f.built.OCI.Bytes))}, []string{"error"}},
		{"HEAD", "/v2/hello/manifests/" + oci, map[string]any{"status": 200.0, "image": "hello", "digest": oci, "bytes": 0.0}, []string{"tag"}},
		{"GET", "/v2/hello/blobs/" + layer, map[string]any{"status": 200.0, "image": "hello", "digest": layer, "bytes": float64(len(f.layer))}, nil},
		{"GET", "/v2/Bad/manifests/latest", map[string]any{"status": 400.0, "code": "NAME_INVALID", "level": "info"}, []string{"image"}},
		{"PUT", "/v2/hello/manifests/latest", map[string]any{"status": 405.0, "code": "UNSUPPORTED"}, nil},
		{"GET", "/names", map[string]any{"status": 200.0}, []string{"image", "code"}},
		{"GET", "/nowhere", map[string]any{"status": 404.0}, []string{"image", "code"}},
	}
	for _, c := range cases {
		before := len(f.logs.lines(t))
		f.do(c.method, c.path, nil)
		lines := f.logs.lines(t)
		if len(lines) != before+1 {
			t.Fatalf("%s %s: %d log lines, want 1", c.method, c.path, len(lines)-before)
		}
		line := lines[len(lines)-1]
		if line["msg"] != "request" || line["method"] != c.method || line["path"] != c.path {
			t.Errorf("%s %s: line %v", c.method, c.path, line)
		}
		if _, ok := line["duration_ms"].(float64); !ok {
			t.Errorf("%s %s: duration_ms %v", c.method, c.path, line["duration_ms"])
		}
		for k, v := range c.want {
			if line[k] != v {
				t.Errorf("%s %s: %s = %v (%T), want %v", c.method, c.path, k, line[k], line[k], v)
			}
		}
		for _, k := range c.absent {
			if _, ok := line[k]; ok {
				t.Errorf("%s %s: unexpected field %s = %v", c.method, c.path, k, line[k])
			}
		}
	}
}

// TestLogLevel checks that a logger above info gets no request lines, but
// still gets server faults.
func TestLogLevel(t *testing.T) {
	f := newFixture(t)
	h := f.handler.(*handler)
	log := h.log.(*logrus.Logger)
	log.SetLevel(logrus.WarnLevel)
	f.do("GET", "/v2/hello/manifests/latest", nil)
	if n := len(f.logs.lines(t)); n != 0 {
		t.Errorf("%d lines at warn level", n)
	}
	f.images.fail = errors.New("source gone")
	f.do("GET", "/v2/hello/manifests/latest", nil)
	lines := f.logs.lines(t)
	if len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["error"] == nil {
		t.Errorf("server fault at warn level: %v", lines)
	}
	// Through an Entry too.
	h.setLog(log.WithField("component", "web"))
	f.do("GET", "/v2/hello/manifests/latest", nil)
	if lines := f.logs.lines(t); len(lines) != 2 || lines[1]["component"] != "web" {
		t.Errorf("entry logger: %v", lines)
	}
}

// TestRequestLogToFile runs requests with cmd/nixport's JSON logger
// writing to a file, which takes the fast log path.
func TestRequestLogToFile(t *testing.T) {
	f := newFixture(t)
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	f.handler.(*handler).setLog(jsonLogger(file))

	f.do("GET", "/v2/hello/manifests/latest", nil)
	f.images.fail = errors.New("source gone")
	f.do("GET", "/v2/hello/manifests/latest", nil)

	data, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), data)
	}
	ok, fault := lines[0], lines[1]
	if ok["level"] != "info" || ok["msg"] != "request" || ok["status"] != 200.0 || ok["image"] != "hello" ||
		ok["tag"] != "latest" || ok["digest"] != f.built.OCI.Digest.String() || ok["method"] != "GET" {
		t.Errorf("success line: %v", ok)
	}
	if _, err := time.Parse(time.RFC3339Nano, ok["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if fault["level"] != "error" || fault["status"] != 500.0 || fault["code"] != "UNKNOWN" ||
		!strings.Contains(fault["error"].(string), "source gone") {
		t.Errorf("fault line: %v", fault)
	}
}
