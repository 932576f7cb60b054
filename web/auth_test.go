package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/auth"
	"github.com/nixport/nixport/caller"
	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's header ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"through a trusted proxy", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged left part ignored", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted proxies", "10.1.2.3:4000", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.1,10.9.9.9"}, "198.51.100.1"},
		{"all trusted", "10.1.2.3:4000", []string{"10.4.4.4"}, "10.4.4.4"},
		{"garbage stops the walk", "10.1.2.3:4000", []string{"198.51.100.1, junk"}, "10.1.2.3"},
		{"trusted without header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"ipv6 proxy", "[::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"mapped v4", "[::ffff:203.0.113.5]:4000", nil, "203.0.113.5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v2/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, trusted); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

// users verifies alice's password "secret", and her token "tok-alice".
type users struct{}

func (users) Verify(user, password string) error {
	if user == "alice" && password == "secret" {
		return nil
	}
	return errors.New("wrong")
}

func (users) Token(user string, now time.Time) (string, error) { return "tok-" + user, nil }

func (users) VerifyToken(token string, now time.Time) (string, error) {
	if token == "tok-alice" {
		return "alice", nil
	}
	return "", auth.ErrBadToken
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// callerImages records the caller each ManifestByTag came with.
type callerImages struct {
	Images
	mu      sync.Mutex
	callers []caller.Caller
}

func (c *callerImages) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	who, _ := caller.FromContext(ctx)
	c.mu.Lock()
	c.callers = append(c.callers, who)
	c.mu.Unlock()
	return c.Images.ManifestByTag(ctx, name, tag, f)
}

func basic(user, password string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
}

// TestAuthModes: which requests need credentials (or a token) in each
// mode, wrong ones refused everywhere they count, and the challenge on
// every 401: Bearer from the registry, Basic elsewhere.
func TestAuthModes(t *testing.T) {
	f := newFixture(t)
	good, wrong, anonymous := basic("alice", "secret"), basic("alice", "nope"), http.Header(nil)
	skopeoAnon := basic("", "")
	token, anonToken, badToken := bearer("tok-alice"), bearer(auth.AnonymousToken), bearer("abc")
	digest := http.Header{"Authorization": {"Digest username=alice"}}
	manifest := "/v2/" + testNames[0] + "/manifests/latest"
	for _, tt := range []struct {
		mode         auth.Mode
		method, path string
		header       http.Header
		want         int
		mayBuild     bool // of the caller Images sees, when it is asked
	}{
		{auth.None, "GET", "/v2/", anonymous, 200, false},
		{auth.None, "GET", manifest, anonymous, 200, true},
		{auth.None, "GET", manifest, good, 200, true},
		{auth.None, "GET", manifest, wrong, 401, false},
		{auth.Builds, "GET", "/v2/", anonymous, 401, false},
		{auth.Builds, "GET", "/v2/", skopeoAnon, 401, false},
		{auth.Builds, "GET", "/v2/", good, 200, false},
		{auth.Builds, "GET", "/v2/", wrong, 401, false},
		{auth.Builds, "GET", manifest, anonymous, 200, false},
		{auth.Builds, "GET", manifest, skopeoAnon, 200, false},
		{auth.Builds, "GET", manifest, good, 200, true},
		{auth.Builds, "GET", manifest, wrong, 401, false},
		{auth.Builds, "GET", manifest, badToken, 401, false},
		{auth.Builds, "GET", manifest, digest, 401, false},
		{auth.Builds, "GET", "/v2/", anonToken, 200, false},
		{auth.Builds, "GET", "/v2/", token, 200, false},
		{auth.Builds, "GET", "/v2/", badToken, 401, false},
		{auth.Builds, "GET", manifest, anonToken, 200, false},
		{auth.Builds, "GET", manifest, token, 200, true},
		{auth.Builds, "POST", "/api/builds", anonToken, 401, false},
		{auth.Builds, "GET", "/api/builds", anonymous, 200, false},
		{auth.Builds, "POST", "/api/builds", anonymous, 401, false},
		{auth.Builds, "GET", "/", wrong, 200, false}, // the docs take no credentials
		{auth.All, "GET", "/v2/", anonymous, 401, false},
		{auth.All, "GET", manifest, anonymous, 401, false},
		{auth.All, "GET", manifest, good, 200, true},
		{auth.All, "GET", manifest, token, 200, true},
		{auth.All, "GET", manifest, anonToken, 401, false},
		{auth.All, "GET", "/v2/", anonToken, 401, false},
		{auth.All, "GET", "/api/builds", anonymous, 401, false},
		{auth.All, "GET", "/builds", anonymous, 401, false},
		{auth.All, "GET", "/", anonymous, 200, false},
		{auth.All, "GET", "/healthz", anonymous, 200, false},
	} {
		images := &callerImages{Images: f.images}
		h, err := New(Options{Storage: f.store, Images: images, Builds: f.builds, Auth: users{}, AuthMode: tt.mode})
		if err != nil {
			t.Fatal(err)
		}
		w := httpDo(h, tt.method, tt.path, tt.header)
		if w.Code != tt.want {
			t.Errorf("%s: %s %s with %v: %d, want %d (%s)", tt.mode, tt.method, tt.path, tt.header, w.Code, tt.want, w.Body)
			continue
		}
		if w.Code == 401 {
			challenge := `Basic realm="nixport"`
			if isRegistryPath(tt.path) {
				challenge = `Bearer realm="http://example.com/auth/token",service="nixport"`
				if v := w.Header().Get("Docker-Distribution-Api-Version"); v != "registry/2.0" {
					t.Errorf("%s: %s %s: 401 without the API version header", tt.mode, tt.method, tt.path)
				}
			}
			if got := w.Header().Get("WWW-Authenticate"); got != challenge {
				t.Errorf("%s: %s %s: 401 with WWW-Authenticate %q, want %q", tt.mode, tt.method, tt.path, got, challenge)
			}
			if e := decodeError(t, w); e.Code != "UNAUTHORIZED" {
				t.Errorf("401 with code %s", e.Code)
			}
		}
		if len(images.callers) == 1 {
			c := images.callers[0]
			if c.MayBuild != tt.mayBuild || (tt.header != nil && c.MayBuild && c.User != "alice") || c.Addr != "192.0.2.1" {
				t.Errorf("%s: %s %s: Images saw caller %+v", tt.mode, tt.method, tt.path, c)
			}
		}
	}
}

// TestTokenEndpoint: the realm of the Bearer challenge issues the user's
// token for good credentials, the anonymous token for none (or skopeo's
// empty ones), and refuses wrong ones with a Basic challenge; it exists
// only with a verifier.
func TestTokenEndpoint(t *testing.T) {
	f := newFixture(t)
	h, err := New(Options{Storage: f.store, Images: f.images, Auth: users{}, AuthMode: auth.Builds})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		method string
		header http.Header
		want   int
		token  string
	}{
		{"anonymous", "GET", nil, 200, auth.AnonymousToken},
		{"empty credentials", "GET", basic("", ""), 200, auth.AnonymousToken},
		{"alice", "GET", basic("alice", "secret"), 200, "tok-alice"},
		{"wrong password", "GET", basic("alice", "nope"), 401, ""},
		{"a token for a token", "GET", bearer("tok-alice"), 401, ""},
		{"POST", "POST", nil, 405, ""},
	} {
		w := httpDo(h, tt.method, "/auth/token?service=nixport&scope=repository:hello:pull", tt.header)
		if w.Code != tt.want {
			t.Errorf("%s: %d, want %d (%s)", tt.name, w.Code, tt.want, w.Body)
			continue
		}
		if w.Code != 200 {
			if e := decodeError(t, w); w.Code == 401 && (e.Code != "UNAUTHORIZED" || w.Header().Get("WWW-Authenticate") != `Basic realm="nixport"`) {
				t.Errorf("%s: 401 %s with challenge %q", tt.name, e.Code, w.Header().Get("WWW-Authenticate"))
			}
			continue
		}
		var body struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
			IssuedAt    string `json:"issued_at"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Token != tt.token || body.AccessToken != tt.token ||
			body.ExpiresIn != int(auth.TokenTTL/time.Second) || body.IssuedAt == "" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %s %v (Cache-Control %q)", tt.name, w.Body, err, w.Header().Get("Cache-Control"))
		}
	}
	open, err := New(Options{Storage: f.store, Images: f.images})
	if err != nil {
		t.Fatal(err)
	}
	if w := httpDo(open, "GET", "/auth/token", nil); w.Code != 404 {
		t.Errorf("the token endpoint without a verifier: %d", w.Code)
	}
}

// TestChallengeRealm: the realm is at the address the client used, https
// when a trusted proxy says it terminated TLS (and only then), and Basic
// when the Host is unusable.
func TestChallengeRealm(t *testing.T) {
	f := newFixture(t)
	h, err := New(Options{Storage: f.store, Images: f.images, Auth: users{}, AuthMode: auth.Builds,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, remote, host, proto, want string
	}{
		{"direct", "192.0.2.1:5000", "registry.example:8080", "", `Bearer realm="http://registry.example:8080/auth/token",service="nixport"`},
		{"trusted proxy, TLS", "10.0.0.1:5000", "registry.example", "https", `Bearer realm="https://registry.example/auth/token",service="nixport"`},
		{"untrusted proto", "192.0.2.1:5000", "registry.example", "https", `Bearer realm="http://registry.example/auth/token",service="nixport"`},
		{"no usable host", "192.0.2.1:5000", "", "", `Basic realm="nixport"`},
	} {
		r := httptest.NewRequest("GET", "/v2/", nil)
		r.RemoteAddr, r.Host = tt.remote, tt.host
		if tt.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tt.proto)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || got != tt.want {
			t.Errorf("%s: %d %q, want 401 %q", tt.name, w.Code, got, tt.want)
		}
	}
}

func TestAuthModeNeedsVerifier(t *testing.T) {
	f := newFixture(t)
	if _, err := New(Options{Storage: f.store, Images: f.images, AuthMode: auth.All}); err == nil {
		t.Error("mode all without a verifier was accepted")
	}
}
