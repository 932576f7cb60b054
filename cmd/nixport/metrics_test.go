package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nixport/nixport/testkit"
)

// scrape fetches url and parses it with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("metrics Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return families
}

// sample is the value of the series of family with exactly labels (a
// counter's or gauge's value, a histogram's count); 0 when absent.
func sample(families map[string]*dto.MetricFamily, family string, labels ...string) float64 {
	f, ok := families[family]
	if !ok {
		return 0
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// labelValues lists the values label takes in family.
func labelValues(families map[string]*dto.MetricFamily, family, label string) []string {
	seen := map[string]bool{}
	for _, m := range families[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				seen[l.GetValue()] = true
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// TestMetricsMove: the metrics move as they should across a build, a
// cache hit, a failed build and a blob GET, as a Prometheus scraper reads
// them.
func TestMetricsMove(t *testing.T) {
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t),
		"NIXPORT_FAILED_BUILD_TTL=600")
	base := "http://" + s.addr
	metricsURL := base + "/metrics"
	before := scrape(t, metricsURL)

	// A build, then the same pull answered from the tag map.
	pullManifest(t, s.addr, "hello")
	afterBuild := scrape(t, metricsURL)
	pullManifest(t, s.addr, "hello")
	afterHit := scrape(t, metricsURL)

	moved := func(name string, from, to map[string]*dto.MetricFamily, family string, want float64, labels ...string) {
		t.Helper()
		if d := sample(to, family, labels...) - sample(from, family, labels...); d != want {
			t.Errorf("%s: %s%v moved by %v, want %v", name, family, labels, d, want)
		}
	}
	moved("build", before, afterBuild, "nixport_builds_total", 1, "source", "nix", "result", "succeeded")
	moved("build", before, afterBuild, "nixport_build_duration_seconds", 1, "phase", "plan")
	moved("build", before, afterBuild, "nixport_build_duration_seconds", 1, "phase", "build")
	moved("build", before, afterBuild, "nixport_build_duration_seconds", 1, "phase", "total")
	moved("build", before, afterBuild, "nixport_cache_lookups_total", 1, "level", "tag_map", "result", "miss")
	moved("build", before, afterBuild, "nixport_cache_lookups_total", 1, "level", "memory", "result", "miss")
	if sample(afterBuild, "nixport_cache_lookups_total", "level", "layer", "result", "miss") < 1 {
		t.Error("a build of new store paths archived no layer as a layer cache miss")
	}
	moved("build", before, afterBuild, "nixport_http_requests_total", 1, "route", "manifest", "method", "GET", "code", "200")
	if sample(afterBuild, "nixport_storage_operations_total", "backend", "filesystem", "op", "write_blob", "result", "ok") < 2 {
		t.Error("a build wrote fewer than two blobs, by the storage metrics")
	}
	moved("hit", afterBuild, afterHit, "nixport_cache_lookups_total", 1, "level", "tag_map", "result", "hit")
	moved("hit", afterBuild, afterHit, "nixport_builds_total", 0, "source", "nix", "result", "succeeded")
	moved("hit", afterBuild, afterHit, "nixport_http_requests_total", 1, "route", "manifest", "method", "GET", "code", "200")

	// A failed build is counted as the client's failure, once; asking
	// again is answered from memory, not built.
	for range 2 {
		resp, body := get(t, base+"/v2/broken/manifests/latest")
		if resp.StatusCode != 422 {
			t.Fatalf("broken: %s %s", resp.Status, body)
		}
	}
	afterFail := scrape(t, metricsURL)
	moved("failure", afterHit, afterFail, "nixport_builds_total", 1, "source", "nix", "result", "failed")
	moved("failure", afterHit, afterFail, "nixport_http_requests_total", 2, "route", "manifest", "method", "GET", "code", "422")

	// A blob GET: its bytes are counted.
	var m struct {
		Layers []struct {
			Digest string
			Size   int64
		}
	}
	req, _ := http.NewRequest("GET", base+"/v2/hello/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest of hello: %v", err)
	}
	resp.Body.Close()
	layer := m.Layers[0]
	resp, err = http.Get(fmt.Sprintf("%s/v2/hello/blobs/%s", base, layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != layer.Size {
		t.Fatalf("blob GET: %s, %d bytes of %d", resp.Status, n, layer.Size)
	}
	afterBlob := scrape(t, metricsURL)
	moved("blob", afterFail, afterBlob, "nixport_blob_bytes_served_total", float64(layer.Size))
	moved("blob", afterFail, afterBlob, "nixport_http_requests_total", 1, "route", "blob", "method", "GET", "code", "200")
	moved("blob", afterFail, afterBlob, "nixport_storage_operations_total", 1, "backend", "filesystem", "op", "open_blob", "result", "ok")

	// Nothing is building now; the gauges say so.
	for _, g := range []string{"nixport_builds_running", "nixport_builds_queued"} {
		if _, ok := afterBlob[g]; !ok {
			t.Errorf("no %s", g)
		} else if v := sample(afterBlob, g); v != 0 {
			t.Errorf("%s = %v with no build", g, v)
		}
	}
	// The Go and process collectors are there.
	for _, f := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if _, ok := afterBlob[f]; !ok {
			t.Errorf("no %s", f)
		}
	}
	// Labels are bounded: routes are names, never paths.
	for _, route := range labelValues(afterBlob, "nixport_http_requests_total", "route") {
		if strings.Contains(route, "/") {
			t.Errorf("route label %q is a path", route)
		}
	}
}

// TestMetricsOnTheirOwnAddress: with NIXPORT_METRICS_ADDR, /metrics is
// served there only, and is not found beside the registry.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir(), "NIXPORT_METRICS_ADDR=127.0.0.1:0")
	line := s.awaitLog(t, "metrics listening", "", nil)
	addr, _ := line["addr"].(string)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("metrics address %q", addr)
	}
	if resp, _ := get(t, "http://"+s.addr+"/metrics"); resp.StatusCode != 404 {
		t.Errorf("/metrics beside the registry: %s, want 404", resp.Status)
	}
	get(t, "http://"+s.addr+"/v2/")
	families := scrape(t, "http://"+addr+"/metrics")
	if v := sample(families, "nixport_http_requests_total", "route", "v2", "method", "GET", "code", "200"); v != 1 {
		t.Errorf("GET /v2/ counted %v times, want 1", v)
	}
	if resp, _ := get(t, "http://"+addr+"/v2/"); resp.StatusCode != 404 {
		t.Errorf("the registry on the metrics address: %s, want 404", resp.Status)
	}
}
