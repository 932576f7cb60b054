package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/reference"
)

// FuzzRoute feeds arbitrary paths to the router, to the name, tag and
// digest parsers, and to the whole handler over real storage. Nothing may
// panic; whatever is accepted must satisfy the distribution spec's
// patterns, the scanners must agree with those patterns exactly, and no
// path may cause a server error.
//
//	go test ./web -run '^$' -fuzz FuzzRoute -fuzztime 1m
func FuzzRoute(f *testing.F) {
	for _, seed := range []string{
		"/v2/", "/v2", "/v2/hello/manifests/latest", "/v2/shell/git/htop/manifests/nixos-24.05",
		"/v2/a/manifests/b/blobs/sha256:" + strings.Repeat("0", 64),
		"/v2/a/manifests/sha512:" + strings.Repeat("a", 128),
		"/v2/a/tags/list", "/v2/tags/list/tags/list", "/v2/a/referrers/sha256:" + strings.Repeat("1", 64), "/v2//manifests/x", "/v2/a__b--c.d/manifests/_",
		"/v2/a/blobs/uploads/", "/v2/../../etc/passwd", "/v2/a/manifests/-", "/", "/names", "/style.css",
		"/../../etc/passwd", "/v2/a/manifests/sha256:", "latest", "a___b", "sha256:" + strings.Repeat("f", 64),
	} {
		f.Add(seed)
	}
	fx := newFixture(f)
	// Keep no logs in memory while fuzzing.
	quiet := logrus.New()
	quiet.Out = io.Discard
	fx.handler.(*handler).setLog(quiet)
	f.Fuzz(func(t *testing.T, p string) {
		checkRoute(t, p)
		checkScanners(t, p)

		// The whole handler: a client mistake is never a server error.
		r := httptest.NewRequest("GET", "/", nil)
		r.URL = &url.URL{Path: p}
		r.RequestURI = p
		w := httptest.NewRecorder()
		fx.handler.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("GET %q: status %d: %s", p, w.Code, w.Body.String())
		}
		if isRegistryPath(p) && w.Code >= 400 {
			decodeError(t, w)
		}
	})
}

// checkRoute parses p and checks the result against the spec's patterns.
func checkRoute(t *testing.T, p string) {
	rt, err := parseRoute(p)
	if err != nil {
		e, ok := errcode.As(err)
		if !ok {
			t.Fatalf("parseRoute(%q): %v is not an errcode", p, err)
		}
		if s := status(e.Code); s != http.StatusBadRequest && s != http.StatusNotFound {
			t.Fatalf("parseRoute(%q): %s has status %d", p, e.Code, s)
		}
		return
	}
	if rt.kind == routeBase {
		if p != "/v2" && p != "/v2/" {
			t.Fatalf("parseRoute(%q): base route", p)
		}
		return
	}
	if !nameRE.MatchString(rt.name) || reference.CheckName(rt.name) != nil {
		t.Fatalf("parseRoute(%q): accepted name %q", p, rt.name)
	}
	if rt.tag != "" && !tagRE.MatchString(rt.tag) {
		t.Fatalf("parseRoute(%q): accepted tag %q", p, rt.tag)
	}
	if rt.digest != "" && !digestRE.MatchString(string(rt.digest)) {
		t.Fatalf("parseRoute(%q): accepted digest %q", p, rt.digest)
	}
	var want string
	switch rt.kind {
	case routeManifest:
		if (rt.tag == "") == (rt.digest == "") {
			t.Fatalf("parseRoute(%q): manifest route %+v", p, rt)
		}
		want = "/v2/" + rt.name + "/manifests/" + rt.tag + string(rt.digest)
	case routeBlob:
		if rt.digest == "" || rt.tag != "" {
			t.Fatalf("parseRoute(%q): blob route %+v", p, rt)
		}
		want = "/v2/" + rt.name + "/blobs/" + string(rt.digest)
	case routeReferrers:
		if rt.digest == "" || rt.tag != "" {
			t.Fatalf("parseRoute(%q): referrers route %+v", p, rt)
		}
		want = "/v2/" + rt.name + "/referrers/" + string(rt.digest)
	case routeTags:
		want = "/v2/" + rt.name + "/tags/list"
	case routeUploads:
		want = "/v2/" + rt.name + "/blobs/uploads/"
		if !strings.HasSuffix(p, "/") {
			want = strings.TrimSuffix(want, "/")
		}
	case routeUpload:
		if rt.upload == "" || strings.Contains(rt.upload, "/") {
			t.Fatalf("parseRoute(%q): upload route %+v", p, rt)
		}
		want = "/v2/" + rt.name + "/blobs/uploads/" + rt.upload
	default:
		t.Fatalf("parseRoute(%q): kind %d", p, rt.kind)
	}
	if p != want {
		t.Fatalf("parseRoute(%q) = %+v, which is the path %q", p, rt, want)
	}
}

// checkScanners checks that the hand-written validators accept exactly
// what the spec's patterns do.
func checkScanners(t *testing.T, s string) {
	if got, want := checkName(s) == nil, nameRE.MatchString(s) && withinNameBounds(s); got != want {
		t.Fatalf("checkName(%q) = %v, pattern says %v", s, got, want)
	}
	if got, want := validTag(s), tagRE.MatchString(s); got != want {
		t.Fatalf("validTag(%q) = %v, pattern says %v", s, got, want)
	}
	d, err := parseDigest(s)
	if got, want := err == nil, digestRE.MatchString(s); got != want {
		t.Fatalf("parseDigest(%q): %v, pattern says valid=%v", s, err, want)
	}
	if err == nil {
		if verr := d.Validate(); verr != nil {
			t.Fatalf("parseDigest(%q) accepted what go-digest rejects: %v", s, verr)
		}
	}
}

// withinNameBounds is reference's length rule, written again plainly.
func withinNameBounds(s string) bool {
	if len(s) > reference.MaxNameLength {
		return false
	}
	for _, c := range strings.Split(s, "/") {
		if len(c) > reference.MaxComponentLength {
			return false
		}
	}
	return true
}
