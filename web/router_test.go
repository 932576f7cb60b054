package web

import (
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/nixport/nixport/errcode"
	"github.com/nixport/nixport/reference"
)

// The patterns of the distribution spec, which the hand-written scanners
// must agree with.
var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRE = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

func TestParseRoute(t *testing.T) {
	d256 := "sha256:" + strings.Repeat("ab", 32)
	d512 := "sha512:" + strings.Repeat("0f", 64)
	cases := []struct {
		path string
		want route
		code errcode.Code
	}{
		{"/v2", route{kind: routeBase}, ""},
		{"/v2/", route{kind: routeBase}, ""},
		{"/v2/a/manifests/latest", route{kind: routeManifest, name: "a", tag: "latest"}, ""},
		{"/v2/a/b/c/manifests/v1.0_x-y", route{kind: routeManifest, name: "a/b/c", tag: "v1.0_x-y"}, ""},
		{"/v2/a/manifests/" + d256, route{kind: routeManifest, name: "a", digest: digest.Digest(d256)}, ""},
		{"/v2/a/manifests/" + d512, route{kind: routeManifest, name: "a", digest: digest.Digest(d512)}, ""},
		{"/v2/a/blobs/" + d256, route{kind: routeBlob, name: "a", digest: digest.Digest(d256)}, ""},
		{"/v2/manifests/manifests/manifests", route{kind: routeManifest, name: "manifests", tag: "manifests"}, ""},
		{"/v2/blobs/blobs/" + d256, route{kind: routeBlob, name: "blobs", digest: digest.Digest(d256)}, ""},
		{"/v2/a/tags/list", route{kind: routeTags, name: "a"}, ""},
		{"/v2/a/b/referrers/" + d256, route{kind: routeReferrers, name: "a/b", digest: digest.Digest(d256)}, ""},
		{"/v2/a/referrers/latest", route{}, errcode.DigestInvalid},
		{"/v2/tags/list/tags/list", route{kind: routeTags, name: "tags/list"}, ""},
		{"/v2/a/manifests/b/tags/list", route{kind: routeTags, name: "a/manifests/b"}, ""},
		{"/v2/a/tags/list/manifests/x", route{kind: routeManifest, name: "a/tags/list", tag: "x"}, ""},

		{"/v2/a/blobs/latest", route{}, errcode.DigestInvalid},
		{"/v2/a/manifests/sha256:" + strings.Repeat("a", 63), route{}, errcode.DigestInvalid},
		{"/v2/a/manifests/sha256:" + strings.Repeat("a", 65), route{}, errcode.DigestInvalid},
		{"/v2/a/manifests/sha512:" + strings.Repeat("a", 64), route{}, errcode.DigestInvalid},
		{"/v2/a/manifests/:x", route{}, errcode.DigestInvalid},
		{"/v2/a/manifests/.x", route{}, errcode.TagInvalid},
		{"/v2/a/manifests/x y", route{}, errcode.TagInvalid},
		{"/v2/a./manifests/x", route{}, errcode.NameInvalid},
		{"/v2/-a/manifests/x", route{}, errcode.NameInvalid},
		{"/v2/a/tags/list?x", route{}, errcode.NameUnknown},
		{"/v2/a/", route{}, errcode.NameUnknown},
		{"/v2/a/manifest/x", route{}, errcode.NameUnknown},
		{"/v2/a/blobs/uploads/", route{kind: routeUploads, name: "a"}, ""},
		{"/v2/a/b/blobs/uploads", route{kind: routeUploads, name: "a/b"}, ""},
		{"/v2/a/blobs/uploads/0123abc", route{kind: routeUpload, name: "a", upload: "0123abc"}, ""},
		{"/v2/blobs/blobs/uploads/x", route{kind: routeUpload, name: "blobs", upload: "x"}, ""},
		{"/v2/a/blobs/uploads/x/manifests/latest", route{kind: routeManifest, name: "a/blobs/uploads/x", tag: "latest"}, ""},
		{"/v2/a/uploads/x", route{}, errcode.NameUnknown},
		{"/v2/blobs/uploads/x", route{}, errcode.NameUnknown},
		{"/v2/blobs/uploads/", route{}, errcode.NameUnknown},
		{"/v2/A/blobs/uploads/", route{}, errcode.NameInvalid},
		{"/v2/A/blobs/uploads/x", route{}, errcode.NameInvalid},
		{"/v2x/a/manifests/x", route{}, errcode.NameUnknown},
		{"/v2//tags/list", route{}, errcode.NameInvalid},
	}
	for _, c := range cases {
		got, err := parseRoute(c.path)
		if c.code != "" {
			e, ok := errcode.As(err)
			if !ok || e.Code != c.code {
				t.Errorf("%q: got %+v, %v; want error %s", c.path, got, err, c.code)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.path, got, err, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	good := []string{
		"a", "0", "hello", "shell/git/htop", "a.b", "a_b", "a__b", "a-b", "a---b",
		"xorg.xev", "a0/b1/c2", "manifests/blobs", strings.Repeat("a", reference.MaxComponentLength),
		strings.Repeat("ab/", reference.MaxNameLength/3-1) + "c",
	}
	bad := []string{
		"", "A", "a/", "/a", "a//b", "a..b", "a___b", "a_.b", "a.-b", "-a", "a-", "_a",
		"a b", "a/B", "ä", "a/./b", "..", "a:b", "a@b", "a+b", strings.Repeat("ab/", reference.MaxNameLength/3) + "c",
		strings.Repeat("a", reference.MaxComponentLength+1),
	}
	for _, n := range good {
		if checkName(n) != nil || !nameRE.MatchString(n) {
			t.Errorf("checkName(%.40q) = %v, want nil", n, checkName(n))
		}
	}
	for _, n := range bad {
		if err := checkName(n); err == nil {
			t.Errorf("checkName(%.40q) = nil, want NAME_INVALID", n)
		} else if e, ok := errcode.As(err); !ok || e.Code != errcode.NameInvalid {
			t.Errorf("checkName(%.40q) = %v, want NAME_INVALID", n, err)
		}
	}
}

func TestValidTag(t *testing.T) {
	good := []string{"latest", "a", "_", "0", "v1.2.3", "nixos-24.05", "A_b-c.D", strings.Repeat("f", 40), strings.Repeat("x", 128)}
	bad := []string{"", ".a", "-a", "a:b", "a/b", "a b", "ä", "a+b", strings.Repeat("x", 129)}
	for _, tag := range good {
		if !validTag(tag) || !tagRE.MatchString(tag) {
			t.Errorf("validTag(%q) = false, want true", tag)
		}
	}
	for _, tag := range bad {
		if validTag(tag) {
			t.Errorf("validTag(%q) = true, want false", tag)
		}
	}
}

func TestParseDigest(t *testing.T) {
	good := []string{"sha256:" + strings.Repeat("0", 64), "sha512:" + strings.Repeat("f", 128)}
	bad := []string{
		"", "sha256", "sha256:", ":" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 63),
		"sha256:" + strings.Repeat("F", 64), "sha256:" + strings.Repeat("g", 64), "SHA256:" + strings.Repeat("0", 64),
		"sha384:" + strings.Repeat("0", 96), "md5:" + strings.Repeat("0", 32), "sha256+b64:" + strings.Repeat("0", 64),
		"sha512:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 64) + ":",
	}
	for _, s := range good {
		d, err := parseDigest(s)
		if err != nil || string(d) != s {
			t.Errorf("parseDigest(%q) = %q, %v", s, d, err)
		}
	}
	for _, s := range bad {
		if d, err := parseDigest(s); err == nil {
			t.Errorf("parseDigest(%q) = %q, want an error", s, d)
		} else if e, ok := errcode.As(err); !ok || e.Code != errcode.DigestInvalid {
			t.Errorf("parseDigest(%q): %v, want DIGEST_INVALID", s, err)
		}
	}
}
