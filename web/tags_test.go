package web

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/manifest"
)

func TestTagsPaging(t *testing.T) {
	f := newFixture(t) // "paged" has tags a, b, c, d, e
	cases := []struct {
		query string
		tags  []string
		next  string // query of the Link, "" for none
	}{
		{"", []string{"a", "b", "c", "d", "e"}, ""},
		{"n=2", []string{"a", "b"}, "last=b&n=2"},
		{"n=2&last=b", []string{"c", "d"}, "last=d&n=2"},
		{"n=2&last=d", []string{"e"}, ""},
		{"n=5", []string{"a", "b", "c", "d", "e"}, ""},
		{"n=4", []string{"a", "b", "c", "d"}, "last=d&n=4"},
		{"n=100", []string{"a", "b", "c", "d", "e"}, ""},
		{"last=c", []string{"d", "e"}, ""},
		{"last=bb", []string{"c", "d", "e"}, ""},
		{"last=e", []string{}, ""},
		{"last=zzz&n=1", []string{}, ""},
		{"n=0", []string{}, ""},
		{"n=1&last=", []string{"a"}, "last=a&n=1"},
	}
	for _, c := range cases {
		w := f.do("GET", "/v2/paged/tags/list?"+c.query, nil)
		if w.Code != 200 {
			t.Errorf("%s: %d %s", c.query, w.Code, w.Body.String())
			continue
		}
		var got tagList
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != "paged" || !slices.Equal(got.Tags, c.tags) || got.Tags == nil {
			t.Errorf("%s: %+v, want tags %q", c.query, got, c.tags)
		}
		link := w.Header().Get("Link")
		if c.next == "" {
			if link != "" {
				t.Errorf("%s: Link %q, want none", c.query, link)
			}
			continue
		}
		if want := `</v2/paged/tags/list?` + c.next + `>; rel="next"`; link != want {
			t.Errorf("%s: Link %q, want %q", c.query, link, want)
		}
	}
}

// TestTagsFollowLinks walks every page through the Link headers, with tags
// that need escaping in a query.
func TestTagsFollowLinks(t *testing.T) {
	f := newFixture(t)
	m := map[manifest.Format]digest.Digest{manifest.OCI: f.built.OCI.Digest}
	var want []string
	for _, tag := range []string{"v1.0", "v1.0-rc.1", "_x", "A", "Z9", "nixos-24.05", "3f1e4cd9b0a2c6d1e5f7a8b9c0d1e2f3a4b5c6d7"} {
		f.images.set("shell/git", tag, m)
		want = append(want, tag)
	}
	slices.Sort(want)
	linkRE := regexp.MustCompile(`^<(/v2/[^>]+)>; rel="next"$`)
	var got []string
	next := "/v2/shell/git/tags/list?n=3"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		w := f.do("GET", next, nil)
		var page tagList
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || w.Code != 200 {
			t.Fatalf("%s: %d %s", next, w.Code, w.Body.String())
		}
		if len(page.Tags) > 3 {
			t.Fatalf("%s: %d tags, n=3", next, len(page.Tags))
		}
		got = append(got, page.Tags...)
		next = ""
		if link := w.Header().Get("Link"); link != "" {
			m := linkRE.FindStringSubmatch(link)
			if m == nil {
				t.Fatalf("Link %q", link)
			}
			u, err := url.Parse(m[1])
			if err != nil || !strings.HasSuffix(u.Path, "/tags/list") || u.Query().Get("n") != "3" {
				t.Fatalf("Link %q", link)
			}
			next = m[1]
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %q, want %q", got, want)
	}
}

// unsortedImages returns tags out of order, which the handler must not
// trust for paging.
type unsortedImages struct{ *testImages }

func (u unsortedImages) Tags(ctx context.Context, name string) ([]string, error) {
	return []string{"c", "a", "b"}, nil
}

func TestTagsUnsortedSource(t *testing.T) {
	f := newFixture(t)
	h, err := New(Options{Storage: f.store, Images: unsortedImages{f.images}})
	if err != nil {
		t.Fatal(err)
	}
	w := httpDo(h, "GET", "/v2/x/tags/list?n=2", nil)
	if got := strings.TrimSpace(w.Body.String()); got != `{"name":"x","tags":["a","b"]}` {
		t.Errorf("got %s", got)
	}
}
