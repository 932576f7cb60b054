package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The documents that list every setting, and how each names one: a row of
// the README's configuration table, and a row of the docs site's
// (/running#configuration). Both give the variable, the flag and the
// default.
var settingDocs = []struct {
	file string
	row  *regexp.Regexp // a row naming a setting: variable, flag, default
}{
	{"../README.md", regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| `-([a-z0-9-]+)` \\|([^|]*)\\|")},
	{"../web/site/running.html", regexp.MustCompile(`<tr><td><code>([A-Z0-9_]+)</code><br><code class="flag">-([a-z0-9-]+)</code></td><td data-label="default">(.*?)</td>`)},
}

// htmlComment is a comment of a page, such as the one that shows the
// format of a row: not a row itself.
var htmlComment = regexp.MustCompile(`(?s)<!--.*?-->`)

// computedDefaults are the settings whose default depends on the machine,
// which the docs describe in words.
var computedDefaults = map[string]bool{"NIXPORT_MAX_BUILDS": true}

// TestSettingsDocumented: every setting nixport knows (what -h lists) has
// one row in the README's configuration table and one in the docs site's,
// with its flag and, where it has a fixed one, its default; and neither
// names a setting that does not exist. A setting added to settings()
// without its rows fails here.
func TestSettingsDocumented(t *testing.T) {
	known := map[string]setting{}
	for _, s := range settings() {
		known[s.env] = s
	}
	for _, doc := range settingDocs {
		data, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		text := htmlComment.ReplaceAllString(string(data), "")
		rows := map[string]int{}
		for _, m := range doc.row.FindAllStringSubmatch(text, -1) {
			env, flag, def := m[1], m[2], m[3]
			rows[env]++
			s, ok := known[env]
			if !ok {
				t.Errorf("%s documents %s, which is not a setting", doc.file, env)
				continue
			}
			if flag != s.flag {
				t.Errorf("%s gives %s the flag -%s, want -%s", doc.file, env, flag, s.flag)
			}
			if s.def != "" && !computedDefaults[env] && !documentsDefault(def, s.def) {
				t.Errorf("%s gives %s the default %q, want %s", doc.file, env, strings.TrimSpace(def), s.def)
			}
		}
		if len(rows) < 10 {
			t.Fatalf("only %d settings read from %s: the parsing is wrong", len(rows), doc.file)
		}
		for _, s := range settings() {
			if n := rows[s.env]; n != 1 {
				t.Errorf("%s has %d rows for %s (-%s), want 1: add it to the configuration table", doc.file, n, s.env, s.flag)
			}
		}
	}
}

// documentsDefault says whether a default cell gives def as code, in the
// README's Markdown or the site's HTML.
func documentsDefault(cell, def string) bool {
	return strings.Contains(cell, "`"+def+"`") || strings.Contains(cell, "<code>"+def+"</code>")
}
