package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nixport/nixport/buildstatus"
)

// The build pages: /builds lists the builds, /builds/<id> shows one with
// its log. They are rendered on the server from the builder's status, so
// they work without JavaScript; builds.js (served with the docs site)
// keeps them up to date from /api/builds. They are templates in the
// embedded site (site/*.html.tmpl), sharing its header and footer, and are
// served whether or not a web directory replaces the docs, since a pull's
// BUILD_IN_PROGRESS message links to them.

// isBuildPagePath reports whether an URL path is a build page.
func isBuildPagePath(p string) bool {
	return p == "/builds" || strings.HasPrefix(p, buildPagePath)
}

// buildPageCSP allows the build pages nothing but their own stylesheet
// and script: they show text (logs, errors) that came from builds.
const buildPageCSP = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// buildTemplates are the build pages, parsed once.
type buildTemplates struct {
	list, one *template.Template
}

func newBuildTemplates() (*buildTemplates, error) {
	header, footer, err := sharedParts()
	if err != nil {
		return nil, err
	}
	parse := func(name string) (*template.Template, error) {
		data, err := fs.ReadFile(siteFiles, path.Join("site", name))
		if err != nil {
			return nil, err
		}
		data = withSharedParts(strings.TrimSuffix(name, ".tmpl"), data, header, footer)
		return template.New(name).Parse(string(data))
	}
	list, err := parse("builds.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("build list page: %w", err)
	}
	one, err := parse("build.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("build page: %w", err)
	}
	return &buildTemplates{list: list, one: one}, nil
}

// buildRow is a build as a line of a list: its status in words, as
// builds.js writes them too.
type buildRow struct {
	ID, Tag, State string
	ImageParts     []string // the image name's components
	Progress, Time string
	Error          string // the first line of a failure's message
}

func newBuildRow(s buildstatus.Status, now time.Time) buildRow {
	r := buildRow{
		ID: s.ID, Tag: s.Tag, State: string(s.State), ImageParts: strings.Split(s.Image, "/"),
		Progress: progressText(s), Time: timeText(s, now), Error: firstLine(s.Error, 160),
	}
	if r.Error != "" && r.Progress == noProgress {
		r.Progress = "" // the error says it all
	}
	return r
}

// buildListPage is what the list page shows.
type buildListPage struct {
	Active, Finished buildTable
	Host             string
}

// buildTable is a table of builds, and what it says when empty; builds.js
// finds it by its name.
type buildTable struct {
	Name, Empty string
	Rows        []buildRow
}

// buildPage is what a build's page shows.
type buildPage struct {
	buildstatus.Status
	Found    bool
	Finished bool
	Summary  string // the state and times in words
	Bytes    string // compressed so far
	Pull     string // the pull command of the image, once built
	// Times, in words.
	Queued, Started, Ended string
}

// serveBuildPage answers /builds and /builds/<id>.
func (h *handler) serveBuildPage(w *responseWriter, r *http.Request) {
	if !isReadMethod(r.Method) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	now := time.Now().UTC()
	host := displayHost(r.Host)
	id := strings.TrimPrefix(r.URL.Path, buildPagePath)
	if r.URL.Path == "/builds" || id == "" {
		page := buildListPage{
			Active:   buildTable{Name: "active", Empty: "Nothing is being built right now."},
			Finished: buildTable{Name: "finished", Empty: "No build has finished since this instance started."},
			Host:     host,
		}
		for _, s := range h.builds.Builds() {
			t := &page.Active
			if s.State.Finished() {
				t = &page.Finished
			}
			t.Rows = append(t.Rows, newBuildRow(s, now))
		}
		h.renderBuildPage(w, h.pages.list, http.StatusOK, page)
		return
	}
	var s buildstatus.Status
	ok := false
	if !strings.Contains(id, "/") {
		s, ok = h.builds.Build(id)
	}
	if !ok {
		s = buildstatus.Status{ID: truncate(id)}
		h.renderBuildPage(w, h.pages.one, http.StatusNotFound, buildPage{Status: s})
		return
	}
	w.image, w.tag = s.Image, s.Tag
	page := buildPage{
		Status: s, Found: true, Finished: s.State.Finished(),
		Summary: timeText(s, now), Bytes: "—",
		Queued: clock(&s.QueuedAt), Started: clock(s.StartedAt), Ended: clock(s.FinishedAt),
	}
	if s.BytesCompressed > 0 {
		page.Bytes = bytesText(s.BytesCompressed)
	}
	if s.State == buildstatus.Done {
		page.Pull = "docker pull " + host + "/" + s.Image + ":" + s.Tag
	}
	h.renderBuildPage(w, h.pages.one, http.StatusOK, page)
}

// renderBuildPage writes a build page: never cached, as it changes while
// a build runs.
func (h *handler) renderBuildPage(w *responseWriter, t *template.Template, code int, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		w.err = fmt.Errorf("rendering %s: %w", t.Name(), err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", buildPageCSP)
	w.WriteHeader(code)
	if !w.head {
		w.Write(buf.Bytes())
	}
}

// The words of the build pages. builds.js has the same functions, for the
// pages it updates: change both together.

const noProgress = "—"

// progressText is a build's progress in words: paths, layers, bytes.
func progressText(s buildstatus.Status) string {
	var parts []string
	if s.PathsTotal > 0 {
		parts = append(parts, fmt.Sprintf("paths %d/%d", s.PathsDone, s.PathsTotal))
	}
	if s.LayersTotal > 0 {
		parts = append(parts, fmt.Sprintf("layers %d/%d", s.LayersDone, s.LayersTotal))
	}
	if s.BytesCompressed > 0 {
		parts = append(parts, bytesText(s.BytesCompressed))
	}
	if len(parts) == 0 {
		return noProgress
	}
	return strings.Join(parts, " · ")
}

// timeText says how long a build has waited or run, or took and when it
// ended.
func timeText(s buildstatus.Status, now time.Time) string {
	switch {
	case s.FinishedAt != nil:
		from := s.QueuedAt
		if s.StartedAt != nil {
			from = *s.StartedAt
		}
		return "took " + durationText(s.FinishedAt.Sub(from)) + ", " + durationText(now.Sub(*s.FinishedAt)) + " ago"
	case s.StartedAt != nil:
		return durationText(now.Sub(*s.StartedAt)) + " so far"
	case !s.QueuedAt.IsZero():
		return "waiting " + durationText(now.Sub(s.QueuedAt))
	}
	return ""
}

// durationText is d in seconds, minutes and hours, to the second.
func durationText(d time.Duration) string {
	sec := int64(max(d, 0) / time.Second)
	switch {
	case sec < 60:
		return fmt.Sprintf("%d s", sec)
	case sec < 3600:
		return fmt.Sprintf("%d min %d s", sec/60, sec%60)
	default:
		return fmt.Sprintf("%d h %d min", sec/3600, sec%3600/60)
	}
}

// bytesText is n in binary units, one decimal above a KiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, []string{"KiB", "MiB", "GiB", "TiB"}[i])
}

// clock is a time as the pages show it, in UTC; nil is empty.
func clock(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// firstLine is the first line of s, at most max characters.
func firstLine(s string, max int) string {
	s, _, cut := strings.Cut(s, "\n")
	if utf8.RuneCountInString(s) > max {
		s, cut = string([]rune(s)[:max]), true
	}
	if cut {
		s += "…"
	}
	return s
}
