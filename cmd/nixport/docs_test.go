package main

import (
	"encoding/json"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The docs are tested against the binary here, where the docs site and the
// built-in package set (nix/testpkgs) meet: web may not import nix.

// builtinPackageSet is the directory of the built-in package set.
const builtinPackageSet = "../../nix/testpkgs"

// builtinAttributePaths asks Nix for every package of the built-in set, as
// attribute paths ("hello", "xorg.xev"): the attributes that are
// derivations, found by descending into the sets that are not.
func builtinAttributePaths(t *testing.T) []string {
	t.Helper()
	dir, err := filepath.Abs(builtinPackageSet)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "attribute-paths.nix")
	const expr = `{ dir }:
let
  pkgs = import dir { };
  isDrv = v: v ? type && v.type == "derivation";
  paths = prefix: set: builtins.concatLists (map (n:
    let v = set.${n}; in
    if builtins.isAttrs v && !(isDrv v) then paths (prefix + n + ".") v else [ (prefix + n) ])
    (builtins.attrNames set));
in paths "" pkgs
`
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix-instantiate", "--eval", "--strict", "--json", file, "--arg", "dir", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listing the built-in package set with nix-instantiate: %v", err)
	}
	var paths []string
	if err := json.Unmarshal(out, &paths); err != nil {
		t.Fatalf("nix-instantiate's list of packages: %v (%s)", err, out)
	}
	if len(paths) < 20 || !slices.Contains(paths, "hello") || !slices.Contains(paths, "xorg.xev") {
		t.Fatalf("the built-in package set as Nix lists it is not what this test expects: %q", paths)
	}
	return paths
}

// documentedEntry is a name of the docs' list of the built-in set, or a
// range of names ("small.s01 … small.s64": every attribute of that set
// between the two).
type documentedEntry struct{ from, to string }

var (
	builtinTable = regexp.MustCompile(`(?s)<table[^>]*id="builtin-packages"[^>]*>(.*?)</table>`)
	tableRow     = regexp.MustCompile(`(?s)<tr>\s*<td>(.*?)</td>`)
	codeOrRange  = regexp.MustCompile(`<code>([^<]+)</code>(?:(?:\s|&nbsp;)*…(?:\s|&nbsp;)*<code>([^<]+)</code>)?`)
)

// documentedPackages reads the names in the first column of the built-in
// set's table on /names.
func documentedPackages(t *testing.T, page string) []documentedEntry {
	t.Helper()
	table := builtinTable.FindStringSubmatch(page)
	if table == nil {
		t.Fatal(`no table id="builtin-packages" on /names`)
	}
	var entries []documentedEntry
	for _, row := range tableRow.FindAllStringSubmatch(table[1], -1) {
		for _, m := range codeOrRange.FindAllStringSubmatch(row[1], -1) {
			e := documentedEntry{from: m[1], to: m[2]}
			if e.to == "" {
				e.to = e.from
			}
			entries = append(entries, e)
		}
	}
	return entries
}

// parent is an attribute path without its last component.
func parent(path string) string {
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func (e documentedEntry) String() string {
	if e.from == e.to {
		return e.from
	}
	return e.from + " … " + e.to
}

func (e documentedEntry) covers(path string) bool {
	return parent(path) == parent(e.from) && e.from <= path && path <= e.to
}

// TestDocsListTheBuiltinPackages: the docs site's list of the built-in
// package set (/names#builtin) names every package of nix/testpkgs, and
// nothing that is not one, so the list cannot drift from the set.
func TestDocsListTheBuiltinPackages(t *testing.T) {
	requireTools(t, "nix-instantiate")
	paths := builtinAttributePaths(t)
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	_, page := get(t, "http://"+s.addr+"/names")
	entries := documentedPackages(t, page)
	if len(entries) < 10 {
		t.Fatalf("only %d names read from the built-in set's table: %v", len(entries), entries)
	}
	for _, e := range entries {
		if !slices.Contains(paths, e.from) || !slices.Contains(paths, e.to) {
			t.Errorf("the docs list %s, which is not a package of %s", e, builtinPackageSet)
		}
		if parent(e.from) != parent(e.to) {
			t.Errorf("the docs list a range %s across two sets", e)
		}
	}
	for _, p := range paths {
		n := 0
		for _, e := range entries {
			if e.covers(p) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("package %s of %s is listed %d times in the docs (/names#builtin), want once", p, builtinPackageSet, n)
		}
	}
}

var (
	preBlock   = regexp.MustCompile(`(?s)<pre([^>]*)>(.*?)</pre>`)
	markup     = regexp.MustCompile(`<[^>]+>`)
	jsonImage  = regexp.MustCompile(`"image": "([^"]+)"`)
	readmeCode = regexp.MustCompile("(?m)^(?:    |\t)(.*)$")
)

// imageRefs finds the images an example names on host: "host/name",
// "host/name:tag", after a space, a quote or "docker://" (not after
// "http://": an API address is not an image). A reference by digest is
// left out: digests differ from one machine's package set to another's.
func imageRefs(text, host string) []string {
	ref := regexp.MustCompile(`(?:^|[\s'"=]|docker://)` + host + `/([a-z0-9][a-z0-9._/-]*)(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:)?`)
	var refs []string
	for _, m := range ref.FindAllStringSubmatch(text, -1) {
		if m[3] != "" {
			continue
		}
		refs = append(refs, m[1]+m[2])
	}
	for _, m := range jsonImage.FindAllStringSubmatch(text, -1) {
		refs = append(refs, m[1])
	}
	return refs
}

// manifestStatus asks the server for an image's manifest, as a client
// pulling it would, and returns the status and the error message.
func manifestStatus(t *testing.T, addr, ref string) (int, string) {
	t.Helper()
	name, tag, _ := strings.Cut(ref, ":")
	if tag == "" {
		tag = "latest"
	}
	req, err := http.NewRequest("GET", "http://"+addr+"/v2/"+name+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Errors []struct{ Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	msg := ""
	if len(body.Errors) > 0 {
		msg = body.Errors[0].Message
	}
	return resp.StatusCode, msg
}

// TestDocsExamplesWork pulls every image the examples of the docs site and
// the README name, from a server on the built-in package set: each must be
// there, unless its example is marked as needing more (data-needs, shown
// as "needs nixpkgs"), in which case it must not be, or the mark is wrong.
func TestDocsExamplesWork(t *testing.T) {
	requireTools(t, "nix-store")
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	works, needs := map[string]string{}, map[string]string{} // image → where the docs name it

	for _, page := range []string{"/", "/names", "/running", "/deploy", "/sources", "/404", "/builds"} {
		_, body := get(t, "http://"+s.addr+page)
		for _, pre := range preBlock.FindAllStringSubmatch(body, -1) {
			text := html.UnescapeString(markup.ReplaceAllString(pre[2], ""))
			refs := imageRefs(text, regexp.QuoteMeta(s.addr))
			// The prewarm example's list of images names them bare.
			if rest, ok := strings.CutPrefix(text, "# ci/images.txt"); ok {
				for _, line := range strings.Split(rest, "\n")[1:] {
					if line, _, _ = strings.Cut(line, "#"); strings.TrimSpace(line) != "" {
						refs = append(refs, strings.TrimSpace(line))
					}
				}
			}
			into := works
			if strings.Contains(pre[1], "data-needs=") {
				into = needs
			}
			for _, r := range refs {
				into[r] = page
			}
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range readmeCode.FindAllStringSubmatch(string(readme), -1) {
		for _, r := range imageRefs(m[1], `(?:HOST|127\.0\.0\.1:8080)`) {
			works[r] = "README.md"
		}
	}
	if len(works) < 5 || len(needs) < 4 {
		t.Fatalf("too few examples found: %d that should work, %d that need more; the parsing is wrong", len(works), len(needs))
	}

	for ref, where := range works {
		if code, msg := manifestStatus(t, s.addr, ref); code != http.StatusOK {
			t.Errorf("%s names %s, which the built-in package set does not give: %d %s; use its packages, or mark the example data-needs", where, ref, code, msg)
		}
	}
	for ref, where := range needs {
		if code, _ := manifestStatus(t, s.addr, ref); code == http.StatusOK {
			t.Errorf("%s marks %s as needing more than the built-in package set, which gives it", where, ref)
		}
	}
	t.Logf("examples that work on the built-in set: %v; that need more: %v", works, needs)
}

// metricsSource is the one file that defines every nixport_* metric.
const metricsSource = "../../metrics/metrics.go"

var (
	// metricDefinition is a metric's options in metricsSource: its kind
	// and its name.
	metricDefinition = regexp.MustCompile(`(Counter|Gauge|Histogram)Opts\{\s*Name:\s*"(nixport_[a-z0-9_]+)"`)
	// labelList is a vector's label names, after its options.
	labelList      = regexp.MustCompile(`\}, \[\]string\{([^}]*)\}\)`)
	metricsTable   = regexp.MustCompile(`(?s)<table[^>]*id="metrics-table"[^>]*>(.*?)</table>`)
	metricRow      = regexp.MustCompile(`(?s)<tr><td><code>(nixport_[a-z0-9_]+)</code><br><span class="kind">([a-z]+)(.*?)</span></td>`)
	codeWord       = regexp.MustCompile(`<code>([^<]+)</code>`)
	quotedWord     = regexp.MustCompile(`"([^"]+)"`)
	documentedName = regexp.MustCompile(`nixport_[a-z0-9_]+`)
)

// definedMetrics reads metricsSource: each metric's kind (counter, gauge,
// histogram) and label names, by name. A metric's labels are the first
// label list between its name and the next metric's.
func definedMetrics(t *testing.T) map[string]metricDoc {
	t.Helper()
	src, err := os.ReadFile(metricsSource)
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	defs := metricDefinition.FindAllStringSubmatchIndex(text, -1)
	metrics := map[string]metricDoc{}
	for i, d := range defs {
		end := len(text)
		if i+1 < len(defs) {
			end = defs[i+1][0]
		}
		m := metricDoc{kind: strings.ToLower(text[d[2]:d[3]])}
		if l := labelList.FindStringSubmatch(text[d[1]:end]); l != nil {
			for _, q := range quotedWord.FindAllStringSubmatch(l[1], -1) {
				m.labels = append(m.labels, q[1])
			}
		}
		metrics[text[d[4]:d[5]]] = m
	}
	return metrics
}

// metricDoc is what the docs say of a metric, or what metrics.go defines.
type metricDoc struct {
	kind   string
	labels []string
}

// TestDocsListEveryMetric: the metrics table of /deploy#metrics has one
// row for every nixport_* metric metrics.go defines, with its kind and
// labels, and the page names no metric that does not exist. A metric
// added without its row fails here.
func TestDocsListEveryMetric(t *testing.T) {
	defined := definedMetrics(t)
	if len(defined) < 10 || defined["nixport_http_requests_total"].kind != "counter" ||
		!slices.Equal(defined["nixport_http_requests_total"].labels, []string{"route", "method", "code"}) ||
		defined["nixport_builds_running"].labels != nil {
		t.Fatalf("metrics read from %s: %v; the parsing is wrong", metricsSource, defined)
	}
	page, err := os.ReadFile("../../web/site/deploy.html")
	if err != nil {
		t.Fatal(err)
	}
	table := metricsTable.FindSubmatch(page)
	if table == nil {
		t.Fatal(`no table id="metrics-table" in deploy.html`)
	}
	documented := map[string]metricDoc{}
	for _, row := range metricRow.FindAllStringSubmatch(string(table[1]), -1) {
		if _, dup := documented[row[1]]; dup {
			t.Errorf("the metrics table has two rows for %s", row[1])
		}
		d := metricDoc{kind: row[2]}
		for _, c := range codeWord.FindAllStringSubmatch(row[3], -1) {
			d.labels = append(d.labels, c[1])
		}
		documented[row[1]] = d
	}
	for name, want := range defined {
		got, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s defines %s, which the metrics table of /deploy#metrics lacks: add its row", metricsSource, name)
		case got.kind != want.kind:
			t.Errorf("the metrics table calls %s a %s; %s makes it a %s", name, got.kind, metricsSource, want.kind)
		case !slices.Equal(got.labels, want.labels):
			t.Errorf("the metrics table gives %s the labels %q; %s gives it %q", name, got.labels, metricsSource, want.labels)
		}
	}
	for _, name := range documentedName.FindAllString(string(page), -1) {
		if !isSeriesOf(name, defined) {
			t.Errorf("deploy.html names %s, which %s does not define", name, metricsSource)
		}
	}
}

// isSeriesOf says whether a name the docs use is a metric of defined or a
// series of one of its histograms (_bucket, _sum, _count). A name ending
// in "_" is a prefix (a grep pattern), never a metric.
func isSeriesOf(name string, defined map[string]metricDoc) bool {
	if strings.HasSuffix(name, "_") {
		return true
	}
	if _, ok := defined[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && defined[base].kind == "histogram" {
			return true
		}
	}
	return false
}
