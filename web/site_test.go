package web

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/buildstatus"
)

func TestEmbeddedSite(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		path        string
		status      int
		contentType string
		contains    []string
	}{
		{"/", 200, "text/html; charset=utf-8", []string{"<title>nixport", "docker pull registry.test:5000/shell/hello", "podman pull", "skopeo copy", "Nixery"}},
		{"/index.html", 200, "text/html; charset=utf-8", []string{"<title>nixport"}},
		{"/names", 200, "text/html; charset=utf-8", []string{`id="builtin-packages"`, `data-needs="nixpkgs"`, "bashInteractive", "moreutils", "aarch64-linux", "cacert", "iana-etc", "xorg.xev", "case-insensitively", "Order and duplicates", "commit hash", "cached forever", "git checkout", "MANIFEST_UNKNOWN", "TAG_INVALID"}},
		{"/names.html", 200, "text/html; charset=utf-8", []string{"Meta-packages", "<code>nonroot</code>", "65532:65532"}},
		{"/running", 200, "text/html; charset=utf-8", []string{"go run ./cmd/nixport", "Nix 2.18", "2.8", "NIXERY_CHANNEL", "NIXPORT_SUBSTITUTERS", "GCS_SIGNING_ACCOUNT", "NIXPORT_LOG_LEVEL", "/var/lib/nixport", "cacert,iana-etc", "NIXPORT_ROUTES", `href="/sources"`, `href="/deploy"`, "nixport prewarm -server https://registry.test:5000", "NIXPORT_SERVER", "needs: prewarm", "stages: [prewarm, test]"}},
		{"/deploy", 200, "text/html; charset=utf-8", []string{"roles/storage.objectAdmin", "--uniform-bucket-level-access", "GCS_SIGNING_KEY", "GCS_SIGNING_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS", "blobs/sha256/", "leases/builds/", "307", "signBlob", "NIXPORT_SHUTDOWN_TIMEOUT", "Nix 2.18", "builders = ssh://"}},
		{"/sources", 200, "text/html; charset=utf-8", []string{"NIXPORT_ROUTES", "{out}", "Never a shell", "SIGTERM", "bazel-bin", "docker pull --platform linux/arm64 registry.test:5000/prebuilt/app:latest", "BUILD_FAILED"}},
		{"/style.css", 200, "text/css; charset=utf-8", []string{"prefers-color-scheme: dark"}},
		{"/nope", 404, "text/html; charset=utf-8", []string{"Page not found", "registry.test:5000/shell/hello"}},
		{"/404", 404, "text/html; charset=utf-8", []string{"Page not found"}},
		{"/404.html", 404, "text/html; charset=utf-8", []string{"Page not found"}},
		{"/favicon.svg", 200, "image/svg+xml", []string{"<svg", `viewBox="0 0 32 32"`}},
		{"/v2x", 404, "text/html; charset=utf-8", []string{"Page not found"}},
		{"/../../etc/passwd", 404, "text/html; charset=utf-8", []string{"Page not found"}},
		{"/site/index.html", 404, "text/html; charset=utf-8", nil},
		{"/_header.html", 404, "text/html; charset=utf-8", nil},

		// The build pages, rendered from the builder's status.
		{"/", 200, "text/html; charset=utf-8", []string{`<h2 id="recent">Recent builds</h2>`, `data-builds="errors"`, `<script src="/builds.js" defer></script>`, `href="/builds"`}},
		{"/builds", 200, "text/html; charset=utf-8", []string{
			"<title>Builds — nixport</title>", "Running and queued", `<script src="/builds.js" defer></script>`, "<noscript>",
			`<a href="/builds/run1"><code>shell/<wbr>git/<wbr>htop:latest</code></a>`, "realising", "paths 3/10", " so far",
			`<a href="/builds/fail1"><code>broken:latest</code></a>`, `<span class="error-line">package broken failed to build…</span>`,
			`<a href="/builds/done1"><code>hello:v1</code></a>`, "layers 4/4 · 3.0 MiB", "took 4 s, ",
			`curl -X POST -d '{"image": "shell/hello", "tag": "latest"}' http://registry.test:5000/api/builds`,
		}},
		{"/builds/", 200, "text/html; charset=utf-8", []string{"Running and queued"}},
		{"/builds/run1", 200, "text/html; charset=utf-8", []string{
			"<title>Build of shell/git/htop:latest — nixport</title>", `data-build="run1"`, "<code>shell/git/htop:latest</code>",
			`<span class="state state-realising" data-field="state">realising</span>`, `<span data-field="paths">3 of 10</span>`,
			`max="10" value="3"`, "2026-03-04 05:06:07 UTC", "req-run1", "abc-htop.drv", "&lt;script&gt;alert(1)&lt;/script&gt;",
			"<noscript>",
		}},
		{"/builds/done1", 200, "text/html; charset=utf-8", []string{
			"docker pull registry.test:5000/hello:v1", "sha256:dddd", "4 of 4", "3.0 MiB", "The build wrote nothing.", "data-finished",
		}},
		{"/builds/fail1", 200, "text/html; charset=utf-8", []string{"Why it failed", "package broken failed to build\nthe last lines of its log", "error: builder failed"}},
		{"/builds/nope", 404, "text/html; charset=utf-8", []string{"No such build", "<code>nope</code>", `href="/builds"`}},
		{"/builds/run1/x", 404, "text/html; charset=utf-8", []string{"No such build"}},
		{"/builds.js", 200, "text/javascript; charset=utf-8", []string{"/api/builds", "textContent"}},
		{"/builds.html.tmpl", 404, "text/html; charset=utf-8", []string{"Page not found"}},
		{"/build.html.tmpl", 404, "text/html; charset=utf-8", []string{"Page not found"}},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.path, nil)
		r.Host = "registry.test:5000"
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, r)
		if w.Code != c.status {
			t.Errorf("%s: %d, want %d", c.path, w.Code, c.status)
			continue
		}
		if ct := w.Header().Get("Content-Type"); ct != c.contentType {
			t.Errorf("%s: Content-Type %q, want %q", c.path, ct, c.contentType)
		}
		body := w.Body.String()
		for _, s := range c.contains {
			if !strings.Contains(body, s) {
				t.Errorf("%s: no %q in the page", c.path, s)
			}
		}
		for _, p := range []string{hostPlaceholder, headerPlaceholder, footerPlaceholder} {
			if strings.Contains(body, p) {
				t.Errorf("%s: placeholder %s left in the page", c.path, p)
			}
		}
		if w.Header().Get("Docker-Distribution-Api-Version") != "" {
			t.Errorf("%s: registry header on a docs page", c.path)
		}
	}
}

// TestSiteSharedHeader: every page gets the one header and footer, its
// own navigation link marked current (the 404 page has none).
func TestSiteSharedHeader(t *testing.T) {
	f := newFixture(t)
	for path, current := range map[string]string{
		"/": "/", "/names": "/names", "/running": "/running", "/deploy": "/deploy", "/sources": "/sources", "/nope": "",
		"/builds": "/builds", "/builds/run1": "", "/builds/nope": "",
	} {
		w := f.do("GET", path, nil)
		body := w.Body.String()
		if strings.Count(body, `<header class="site-header">`) != 1 || strings.Count(body, `<footer class="site-footer">`) != 1 {
			t.Errorf("%s: not exactly one header and one footer", path)
		}
		marked := strings.Count(body, `aria-current="page"`)
		if current == "" {
			if marked != 0 {
				t.Errorf("%s: %d links marked current, want none", path, marked)
			}
			continue
		}
		if want := `<li><a href="` + current + `" aria-current="page">`; marked != 1 || !strings.Contains(body, want) {
			t.Errorf("%s: %d links marked current, want exactly %s", path, marked, want)
		}
	}
}

// TestSiteEveryPageLinksResolve checks that every local link and the
// stylesheet of every page resolve.
func TestSiteEveryPageLinksResolve(t *testing.T) {
	f := newFixture(t)
	for _, page := range []string{"/", "/names", "/running", "/deploy", "/sources", "/nope", "/builds", "/builds/run1", "/builds/done1", "/builds/nope"} {
		body := f.do("GET", page, nil).Body.String()
		for _, part := range strings.Split(body, `href="`)[1:] {
			link, _, _ := strings.Cut(part, `"`)
			if !strings.HasPrefix(link, "/") {
				continue
			}
			link, _, _ = strings.Cut(link, "#")
			if w := f.do("GET", link, nil); w.Code != 200 {
				t.Errorf("%s links to %s: %d", page, link, w.Code)
			}
		}
	}
}

// TestSiteIcon: every page names the SVG icon, which is served, and
// /favicon.ico, which browsers ask for where no page names an icon (the
// JSON of the APIs), redirects to it rather than answering 404.
func TestSiteIcon(t *testing.T) {
	f := newFixture(t)
	const link = `<link rel="icon" href="/favicon.svg" type="image/svg+xml">`
	for _, page := range []string{"/", "/names", "/running", "/deploy", "/sources", "/nope", "/404", "/builds", "/builds/run1", "/builds/nope"} {
		head, _, _ := strings.Cut(f.do("GET", page, nil).Body.String(), "</head>")
		if !strings.Contains(head, link) {
			t.Errorf("%s: no %s in its head", page, link)
		}
	}
	for _, method := range []string{"GET", "HEAD"} {
		w := f.do(method, "/favicon.ico", nil)
		if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/favicon.svg" || w.Header().Get("Cache-Control") == "" {
			t.Errorf("%s /favicon.ico: %d, Location %q, Cache-Control %q", method, w.Code, w.Header().Get("Location"), w.Header().Get("Cache-Control"))
		}
	}
	w := f.do("GET", "/favicon.svg", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/svg+xml" || !strings.Contains(w.Header().Get("Cache-Control"), "max-age") {
		t.Errorf("/favicon.svg: %d, %v", w.Code, w.Header())
	}
	if w := f.do("POST", "/favicon.ico", nil); w.Code != 405 {
		t.Errorf("POST /favicon.ico: %d, want 405", w.Code)
	}
}

func TestSiteHostAndCaching(t *testing.T) {
	f := newFixture(t)
	get := func(host string, header http.Header) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		for k, v := range header {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, r)
		return w
	}
	// A Host that is not a plain host name is never reflected.
	for _, host := range []string{"", `evil"><script>`, "a b", strings.Repeat("a", 300), "x/y"} {
		w := get(host, nil)
		if !strings.Contains(w.Body.String(), "docker pull HOST/shell/hello") {
			t.Errorf("Host %q: placeholder not used", host)
		}
		if strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("Host %q reflected", host)
		}
	}
	if w := get("[::1]:8080", nil); !strings.Contains(w.Body.String(), "docker pull [::1]:8080/shell/hello") {
		t.Error("IPv6 host not shown")
	}

	a, b := get("a.test", nil), get("b.test", nil)
	ea, eb := a.Header().Get("Etag"), b.Header().Get("Etag")
	if ea == "" || ea == eb {
		t.Errorf("ETags for two hosts: %q, %q", ea, eb)
	}
	if w := get("a.test", http.Header{"If-None-Match": {ea}}); w.Code != 304 {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
	if w := get("b.test", http.Header{"If-None-Match": {ea}}); w.Code != 200 {
		t.Errorf("If-None-Match of another host: %d, want 200", w.Code)
	}
	if cc := a.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("page Cache-Control %q", cc)
	}
	css := f.do("GET", "/style.css", nil)
	if css.Header().Get("Etag") == "" || !strings.Contains(css.Header().Get("Cache-Control"), "max-age") {
		t.Errorf("stylesheet caching headers: %v", css.Header())
	}
}

func TestSiteMethods(t *testing.T) {
	f := newFixture(t)
	if w := f.do("HEAD", "/", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d, %d bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	for _, p := range []string{"/nope", "/404"} {
		if w := f.do("HEAD", p, nil); w.Code != 404 || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d, %d bytes", p, w.Code, w.Body.Len())
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if w := f.do(m, "/", nil); w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

func TestWebDir(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o644)
	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index.html", "<h1>custom {{HOST}}</h1>")
	write("about.html", "about")
	write("a.css", "body{}")
	write("docs/index.html", "docs")
	write(".env", "TOKEN=1")
	write(".git/config", "[core]")
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}

	f := newFixture(t)
	h, err := New(Options{Storage: f.store, Images: f.images, WebDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path   string
		status int
		body   string // exact, if status 200
		ctype  string
	}{
		{"/", 200, "<h1>custom {{HOST}}</h1>", "text/html; charset=utf-8"},
		{"/index.html", 200, "<h1>custom {{HOST}}</h1>", "text/html; charset=utf-8"},
		{"/about", 200, "about", "text/html; charset=utf-8"},
		{"/a.css", 200, "body{}", "text/css; charset=utf-8"},
		{"/docs", 200, "docs", "text/html; charset=utf-8"},
		{"/docs/", 200, "docs", "text/html; charset=utf-8"},
		{"/.env", 404, "", ""},
		{"/.git/config", 404, "", ""},
		{"/leak.txt", 404, "", ""},
		{"/out/secret.txt", 404, "", ""},
		{"/../" + filepath.Base(outside) + "/secret.txt", 404, "", ""},
		{"/nope", 404, "", ""},
		{"/style.css", 404, "", ""}, // the embedded site is not mixed in
	}
	for _, c := range cases {
		w := httpDo(h, "GET", c.path, nil)
		if w.Code != c.status {
			t.Errorf("%s: %d, want %d (%q)", c.path, w.Code, c.status, w.Body.String())
			continue
		}
		if strings.Contains(w.Body.String(), "secret") || strings.Contains(w.Body.String(), "TOKEN") {
			t.Errorf("%s: leaked %q", c.path, w.Body.String())
		}
		if c.status != 200 {
			continue
		}
		if w.Body.String() != c.body {
			t.Errorf("%s: body %q, want %q", c.path, w.Body.String(), c.body)
		}
		if ct := w.Header().Get("Content-Type"); ct != c.ctype {
			t.Errorf("%s: Content-Type %q", c.path, ct)
		}
		etag := w.Header().Get("Etag")
		if etag == "" || w.Header().Get("Last-Modified") == "" {
			t.Errorf("%s: ETag %q, Last-Modified %q", c.path, etag, w.Header().Get("Last-Modified"))
		}
		if w := httpDo(h, "GET", c.path, http.Header{"If-None-Match": {etag}}); w.Code != 304 {
			t.Errorf("%s: If-None-Match: %d", c.path, w.Code)
		}
	}

	// A custom 404 page, which answers 404 at its own address too.
	write("404.html", "gone")
	for _, p := range []string{"/nope", "/404", "/404.html"} {
		if w := httpDo(h, "GET", p, nil); w.Code != 404 || w.Body.String() != "gone" {
			t.Errorf("custom 404 at %s: %d %q", p, w.Code, w.Body.String())
		}
	}
	// The embedded site's favicon redirect is not mixed in either.
	if w := httpDo(h, "GET", "/favicon.ico", nil); w.Code != 404 {
		t.Errorf("/favicon.ico with a web directory: %d, want 404", w.Code)
	}
	// The registry still works beside it.
	if w := httpDo(h, "GET", "/v2/", nil); w.Code != 200 {
		t.Errorf("/v2/ with a web directory: %d", w.Code)
	}
}

func TestNewErrors(t *testing.T) {
	f := newFixture(t)
	for _, opts := range []Options{
		{Images: f.images},
		{Storage: f.store},
		{Storage: f.store, Images: f.images, WebDir: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := New(Options{Storage: f.store, Images: f.images, WebDir: file}); err == nil {
		t.Error("New with a file as WebDir succeeded")
	}
}

// TestBuildPages: the build pages' headers (never cached, a policy that
// lets nothing but their own stylesheet and script run), their methods,
// and that they are served beside a web directory, since a pull's
// BUILD_IN_PROGRESS links to them.
func TestBuildPages(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/builds", "/builds/run1", "/builds/nope"} {
		w := f.do("GET", path, nil)
		h := w.Header()
		if h.Get("Cache-Control") != "no-store" || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Request-Id") == "" {
			t.Errorf("%s: headers %v", path, h)
		}
		if strings.Contains(w.Body.String(), "<script>alert") {
			t.Errorf("%s: a build's log reached the page as markup", path)
		}
		head := f.do("HEAD", path, nil)
		if head.Code != w.Code || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
			t.Errorf("HEAD %s: %d, %d bytes, Content-Length %q; GET: %d, %d bytes", path, head.Code, head.Body.Len(), head.Header().Get("Content-Length"), w.Code, w.Body.Len())
		}
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			if w := f.do(m, path, nil); w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", m, path, w.Code, w.Header().Get("Allow"))
			}
		}
	}

	// Nothing running: the list says so, and the tables stay for the script.
	f.builds.builds = nil
	body := f.do("GET", "/builds", nil).Body.String()
	for _, s := range []string{"Nothing is being built right now.", "No build has finished since this instance started.", `data-builds="active"`, `data-builds="finished"`} {
		if !strings.Contains(body, s) {
			t.Errorf("empty list: no %q", s)
		}
	}

	// Beside a web directory.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("custom"), 0o644)
	h, err := New(Options{Storage: f.store, Images: f.images, Builds: newFakeBuilds(), WebDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if w := httpDo(h, "GET", "/builds/run1", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "abc-htop.drv") {
		t.Errorf("a build's page beside a web directory: %d", w.Code)
	}
	if w := httpDo(h, "GET", "/", nil); w.Body.String() != "custom" {
		t.Errorf("the web directory's index: %q", w.Body.String())
	}
}

// TestBuildWords: the words the build pages use for progress and times
// (builds.js has the same).
func TestBuildWords(t *testing.T) {
	at := func(s int) *time.Time { t := fakeTime.Add(time.Duration(s) * time.Second); return &t }
	now := fakeTime.Add(100 * time.Second)
	cases := []struct {
		s              buildstatus.Status
		progress, time string
	}{
		{buildstatus.Status{QueuedAt: fakeTime}, "—", "waiting 1 min 40 s"},
		{buildstatus.Status{QueuedAt: fakeTime, StartedAt: at(40), PathsDone: 1, PathsTotal: 42}, "paths 1/42", "1 min 0 s so far"},
		{buildstatus.Status{QueuedAt: fakeTime, StartedAt: at(1), FinishedAt: at(99), LayersDone: 45, LayersTotal: 45, BytesCompressed: 42_163_200},
			"layers 45/45 · 40.2 MiB", "took 1 min 38 s, 1 s ago"},
		{buildstatus.Status{QueuedAt: fakeTime, FinishedAt: at(3), PathsDone: 2, PathsTotal: 2, LayersDone: 1, LayersTotal: 3, BytesCompressed: 1000},
			"paths 2/2 · layers 1/3 · 1000 B", "took 3 s, 1 min 37 s ago"},
		{buildstatus.Status{QueuedAt: fakeTime.Add(-2 * time.Hour), StartedAt: at(-7000)}, "—", "1 h 58 min so far"},
		{buildstatus.Status{}, "—", ""},
	}
	for _, c := range cases {
		if got := progressText(c.s); got != c.progress {
			t.Errorf("progressText(%+v) = %q, want %q", c.s, got, c.progress)
		}
		if got := timeText(c.s, now); got != c.time {
			t.Errorf("timeText(%+v) = %q, want %q", c.s, got, c.time)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB", 5000 << 40: "5000.0 TiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
	for in, want := range map[string]string{
		"short": "short", "two\nlines": "two…", "": "",
		strings.Repeat("x", 10): "xxxxxxxx…", "ééééé": "ééééé", strings.Repeat("é", 9): "éééééééé…",
	} {
		if got := firstLine(in, 8); got != want {
			t.Errorf("firstLine(%q, 8) = %q, want %q", in, got, want)
		}
	}
}
