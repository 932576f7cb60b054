package main

// End-to-end tests of access control and the per-client build limits
// (NIXPORT_AUTH_*, NIXPORT_BUILD_RATE, NIXPORT_CLIENT_MAX_BUILDS,
// NIXPORT_TRUSTED_PROXIES): the real binary, a real htpasswd file made by
// Apache's htpasswd, real builds, and the real clients that log in to
// registries (Docker Engine, crane, skopeo).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/testkit"
)

// makeHtpasswd writes an htpasswd file with Apache's htpasswd, hashing
// with kind ("-B": bcrypt, "-m": MD5), one entry per user and password of
// pairs.
func makeHtpasswd(t *testing.T, kind string, pairs ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	for i := 0; i+1 < len(pairs); i += 2 {
		args := []string{kind, "-b"}
		if i == 0 {
			args = append(args, "-c")
		}
		args = append(args, path, pairs[i], pairs[i+1])
		if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
		}
	}
	return path
}

// startAuthServer starts the binary with the users of htpasswd, needing
// credentials for mode, on storage store.
func startAuthServer(t *testing.T, store, htpasswd, mode string, env ...string) *server {
	t.Helper()
	return startServer(t, append([]string{"STORAGE_PATH=" + store, "NIXPORT_AUTH_HTPASSWD=" + htpasswd, "NIXPORT_AUTH_REQUIRED=" + mode}, env...)...)
}

func basicAuth(user, password string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
}

func forwardedFor(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }

// answer is what a request got: the status, the headers, and the first
// OCI error of the body (if any).
type answer struct {
	status        int
	header        http.Header
	code, message string
	body          string
}

// request sends method url with header (for credentials, X-Forwarded-For)
// and reads the answer. An image manifest is accepted, as a client would.
func request(method, url string, header http.Header) (answer, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", v1.MediaTypeImageManifest)
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if resp.StatusCode >= 400 && json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		a.code, a.message = e.Errors[0].Code, e.Errors[0].Message
	}
	return a, nil
}

// ask is request, failing the test on a transport error.
func ask(t *testing.T, method, url string, header http.Header) answer {
	t.Helper()
	a, err := request(method, url, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return a
}

// want checks that a has status and, for an error, code and a message
// holding every one of words.
func (a answer) want(t *testing.T, what string, status int, code string, words ...string) {
	t.Helper()
	if a.status != status || a.code != code {
		t.Fatalf("%s: %d %s %q, want %d %s", what, a.status, a.code, a.message, status, code)
	}
	for _, w := range words {
		if !strings.Contains(a.message, w) {
			t.Errorf("%s: message %q does not say %q", what, a.message, w)
		}
	}
}

// awaitRefusal waits for the builder's "build refused" line of image and
// checks that it names the client and the limit.
func (s *server) awaitRefusal(t *testing.T, image, client, limit string) {
	t.Helper()
	line := s.awaitLog(t, "build refused", image, nil)
	if line["client"] != client || line["limit"] != limit || line["tag"] != "latest" {
		t.Errorf("build refused line %v, want client %s, limit %s", line, client, limit)
	}
}

// refusals reads nixport_refusals_total for limit from the server's
// /metrics.
func (s *server) refusals(t *testing.T, limit string) float64 {
	t.Helper()
	return sample(scrape(t, "http://"+s.addr+"/metrics"), "nixport_refusals_total", "limit", limit)
}

// retryAfter is an answer's Retry-After in seconds, which must be a
// positive integer.
func (a answer) retryAfter(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || n <= 0 {
		t.Errorf("Retry-After %q, want whole seconds > 0", a.header.Get("Retry-After"))
	}
	return n
}

// TestAuthRequired: with NIXPORT_AUTH_REQUIRED=builds, a never-built image
// needs credentials (401 with the challenge and a message saying to log
// in), wrong ones are refused, and anyone pulls what is built; the token
// flow gives a token for the user and an anonymous one. With all, the
// same image needs credentials too. Every refusal is logged and counted.
func TestAuthRequired(t *testing.T) {
	requireTools(t, "htpasswd", "nix-store")
	users := makeHtpasswd(t, "-B", "alice", "secret", "bob", "hunter2")
	store := t.TempDir()
	s := startAuthServer(t, store, users, "builds")
	base := "http://" + s.addr
	alice, wrong := basicAuth("alice", "secret"), basicAuth("alice", "nope")
	hello := base + "/v2/hello/manifests/latest"
	challenge := fmt.Sprintf(`Bearer realm="http://%s/auth/token",service="nixport"`, s.addr)
	refused := 0 // what nixport_refusals_total{limit="auth"} must say

	a := ask(t, "GET", hello, nil)
	a.want(t, "anonymous pull of a cold image", 401, "UNAUTHORIZED", "not built yet", "log in")
	if got := a.header.Get("WWW-Authenticate"); got != challenge {
		t.Errorf("401 with WWW-Authenticate %q, want %q", got, challenge)
	}
	s.awaitRefusal(t, "hello", "addr:127.0.0.1", "auth")
	refused++

	ask(t, "GET", hello, wrong).want(t, "wrong password", 401, "UNAUTHORIZED", "wrong user name or password")
	refused++
	ask(t, "GET", hello, basicAuth("mallory", "secret")).want(t, "unknown user", 401, "UNAUTHORIZED", "wrong user name or password")
	refused++

	built := ask(t, "GET", hello, alice)
	built.want(t, "alice's pull of a cold image", 200, "")
	digest := built.header.Get("Docker-Content-Digest")
	if line := s.awaitLog(t, "build queued", "hello", nil); line["client"] != "user:alice" {
		t.Errorf("build queued line names client %v, want user:alice", line["client"])
	}
	for _, who := range []struct {
		name   string
		header http.Header
	}{
		{"anonymous", nil},
		{"empty Basic credentials (skopeo without any)", basicAuth("", "")},
		{"bob", basicAuth("bob", "hunter2")},
	} {
		a := ask(t, "GET", hello, who.header)
		a.want(t, who.name+" pull of the built image", 200, "")
		if got := a.header.Get("Docker-Content-Digest"); got != digest {
			t.Errorf("%s pulled %s, alice %s", who.name, got, digest)
		}
	}

	// The API's entry: anonymous clients are asked to log in, so that
	// logged-in ones send what they have.
	a = ask(t, "GET", base+"/v2/", nil)
	a.want(t, "anonymous GET /v2/", 401, "UNAUTHORIZED", "log in")
	if a.header.Get("WWW-Authenticate") != challenge || a.header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Errorf("GET /v2/ 401 headers %v", a.header)
	}
	refused++
	ask(t, "GET", base+"/v2/", alice).want(t, "alice's GET /v2/", 200, "")

	// Starting a build through the API needs credentials as well.
	a = ask(t, "POST", base+"/api/builds", nil)
	a.want(t, "anonymous POST /api/builds", 401, "UNAUTHORIZED", "log in")
	if got := a.header.Get("WWW-Authenticate"); got != `Basic realm="nixport"` {
		t.Errorf("the build API's 401 with WWW-Authenticate %q", got)
	}
	refused++

	// The token flow, as docker, skopeo and crane follow the challenge.
	token := func(header http.Header) string {
		t.Helper()
		a := ask(t, "GET", base+"/auth/token?service=nixport&scope=repository:multi:pull", header)
		var tr struct {
			Token     string `json:"token"`
			ExpiresIn int    `json:"expires_in"`
		}
		if a.status != 200 || json.Unmarshal([]byte(a.body), &tr) != nil || tr.Token == "" || tr.ExpiresIn <= 0 {
			t.Fatalf("token endpoint: %d %s", a.status, a.body)
		}
		return tr.Token
	}
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	ask(t, "GET", base+"/auth/token", wrong).want(t, "a token for a wrong password", 401, "UNAUTHORIZED", "wrong user name or password")
	refused++
	anonymous := token(nil)
	ask(t, "GET", base+"/v2/", bearer(anonymous)).want(t, "GET /v2/ with the anonymous token", 200, "")
	ask(t, "GET", hello, bearer(anonymous)).want(t, "built image with the anonymous token", 200, "")
	ask(t, "GET", base+"/v2/multi/manifests/latest", bearer(anonymous)).want(t, "cold image with the anonymous token", 401, "UNAUTHORIZED", "log in")
	s.awaitRefusal(t, "multi", "addr:127.0.0.1", "auth")
	refused++
	ask(t, "GET", base+"/v2/multi/manifests/latest", bearer(token(alice))).want(t, "cold image with alice's token", 200, "")
	ask(t, "GET", hello, bearer("nxt1.YWxpY2U.99999999999.AAAA")).want(t, "a forged token", 401, "UNAUTHORIZED", "log in again")
	refused++

	if got := s.refusals(t, "auth"); got != float64(refused) {
		t.Errorf("nixport_refusals_total{limit=auth} = %v, want %d", got, refused)
	}
	s.stop(t)

	// Mode all, on the same storage: hello is built, and still needs
	// credentials.
	s = startAuthServer(t, store, users, "all")
	base = "http://" + s.addr
	hello = base + "/v2/hello/manifests/latest"
	ask(t, "GET", hello, nil).want(t, "mode all: anonymous pull of a built image", 401, "UNAUTHORIZED", "log in")
	ask(t, "GET", base+"/v2/", nil).want(t, "mode all: anonymous GET /v2/", 401, "UNAUTHORIZED", "log in")
	ask(t, "GET", hello, wrong).want(t, "mode all: wrong password", 401, "UNAUTHORIZED", "wrong user name or password")
	if a := ask(t, "GET", hello, alice); a.status != 200 || a.header.Get("Docker-Content-Digest") != digest {
		t.Errorf("mode all: alice's pull of the built image: %d %s", a.status, a.header.Get("Docker-Content-Digest"))
	}
	if got := s.refusals(t, "auth"); got != 3 {
		t.Errorf("mode all: nixport_refusals_total{limit=auth} = %v, want 3", got)
	}
	s.stop(t)
}

// TestAuthDockerLogin: Docker Engine logs in, pulls (builds) an image,
// logs out, and pulls the built image again anonymously; a cold image
// without credentials fails with the registry's message to log in.
func TestAuthDockerLogin(t *testing.T) {
	requireDocker(t)
	requireTools(t, "htpasswd", "nix-store")
	users := makeHtpasswd(t, "-B", "alice", "secret")
	s := startAuthServer(t, t.TempDir(), users, "builds")
	// Docker keeps credentials in $DOCKER_CONFIG/config.json: a directory
	// of the test's own (the docker commands inherit the environment), so
	// the machine's configuration is untouched.
	config := t.TempDir()
	t.Setenv("DOCKER_CONFIG", config)

	if r := runDockerStdin(dockerQuickTimeout, "nope\n", "login", s.addr, "-u", "alice", "--password-stdin"); r.err == nil ||
		!strings.Contains(r.output(), "wrong user name or password") {
		t.Errorf("docker login with a wrong password: %v\n%s", r.err, r.output())
	}
	if r := runDockerStdin(dockerQuickTimeout, "secret\n", "login", s.addr, "-u", "alice", "--password-stdin"); r.err != nil ||
		!strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("docker login: %v\n%s", r.err, r.output())
	}
	if data, err := os.ReadFile(filepath.Join(config, "config.json")); err != nil || !strings.Contains(string(data), s.addr) {
		t.Fatalf("docker login stored no credentials in DOCKER_CONFIG: %v %s", err, data)
	}

	ref := s.addr + "/shell/hello:latest"
	if r := dockerPull(t, ref); r.err != nil {
		t.Fatalf("docker pull %s, logged in: %v\n%s", ref, r.err, r.output())
	}
	if line := s.awaitLog(t, "build queued", "shell/hello", nil); line["client"] != "user:alice" {
		t.Errorf("the build was queued for %v, want user:alice", line["client"])
	}

	if r := runDocker(dockerQuickTimeout, "logout", s.addr); r.err != nil {
		t.Fatalf("docker logout: %v\n%s", r.err, r.output())
	}
	dockerRemoveImage(t, ref)
	if r := dockerPull(t, ref); r.err != nil {
		t.Fatalf("anonymous docker pull of the built %s: %v\n%s", ref, r.err, r.output())
	}

	cold := s.addr + "/hello/multi:latest"
	r := dockerPull(t, cold)
	t.Logf("anonymous docker pull %s:\n%s", cold, r.output())
	if r.err == nil {
		t.Fatalf("anonymous docker pull of a cold image worked")
	}
	if out := r.output(); !strings.Contains(out, "not built yet") || !strings.Contains(out, "log in") {
		t.Errorf("docker pull does not print the registry's message to log in: %s", out)
	}
	s.awaitRefusal(t, "hello/multi", "addr:127.0.0.1", "auth")

	dockerRemoveImage(t, ref)
	s.stop(t)
}

// TestAuthCraneAndSkopeo: crane logged in (crane auth login) and skopeo
// with --src-creds build and pull; both pull a built image anonymously
// and are told to log in for a cold one.
func TestAuthCraneAndSkopeo(t *testing.T) {
	requireTools(t, "htpasswd", "nix-store", "skopeo")
	crane := craneBinary(t)
	users := makeHtpasswd(t, "-B", "alice", "secret")
	s := startAuthServer(t, t.TempDir(), users, "builds")
	// crane keeps credentials where docker does.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	runCrane := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), dockerPullTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, crane, args...).CombinedOutput()
		return string(out), err
	}
	hello := s.addr + "/hello:latest"

	if out, err := runCrane("manifest", "--insecure", hello); err == nil || !strings.Contains(out, "log in") {
		t.Errorf("anonymous crane manifest of a cold image: %v\n%s", err, out)
	}
	if out, err := runCrane("auth", "login", s.addr, "-u", "alice", "-p", "secret"); err != nil {
		t.Fatalf("crane auth login: %v\n%s", err, out)
	}
	if out, err := runCrane("manifest", "--insecure", hello); err != nil || !strings.Contains(out, `"layers"`) {
		t.Fatalf("crane manifest, logged in: %v\n%s", err, out)
	}
	tarball := filepath.Join(t.TempDir(), "hello.tar")
	if out, err := runCrane("pull", "--insecure", hello, tarball); err != nil {
		t.Fatalf("crane pull, logged in: %v\n%s", err, out)
	}
	if st, err := os.Stat(tarball); err != nil || st.Size() == 0 {
		t.Errorf("crane pull wrote no image: %v", err)
	}
	if out, err := runCrane("auth", "logout", s.addr); err != nil {
		t.Fatalf("crane auth logout: %v\n%s", err, out)
	}
	if out, err := runCrane("manifest", "--insecure", hello); err != nil || !strings.Contains(out, `"layers"`) {
		t.Errorf("anonymous crane manifest of the built image: %v\n%s", err, out)
	}

	// skopeo: a cold image anonymously, then with credentials, then
	// anonymously again once built.
	layout := func() string { return filepath.Join(t.TempDir(), "layout") }
	if err := skopeoCopy(s.addr, "multi:latest", layout(), "--src-tls-verify=false"); err == nil || !strings.Contains(err.Error(), "log in") {
		t.Errorf("anonymous skopeo copy of a cold image: %v", err)
	}
	dir := layout()
	if err := skopeoCopy(s.addr, "multi:latest", dir, "--src-tls-verify=false", "--src-creds", "alice:secret"); err != nil {
		t.Fatal(err)
	}
	if m := readLayout(t, dir); len(m.Layers) < 2 {
		t.Errorf("skopeo copied %d layers", len(m.Layers))
	}
	if err := skopeoCopy(s.addr, "multi:latest", layout(), "--src-tls-verify=false"); err != nil {
		t.Errorf("anonymous skopeo copy of the built image: %v", err)
	}
	if err := skopeoCopy(s.addr, "deep:latest", layout(), "--src-tls-verify=false", "--src-creds", "alice:nope"); err == nil ||
		!strings.Contains(err.Error(), "wrong user name or password") {
		t.Errorf("skopeo copy with a wrong password: %v", err)
	}
	s.stop(t)
}

// TestBuildRatePerUser: with NIXPORT_BUILD_RATE=1, alice's second new
// image is refused with 429, Retry-After and the limit's name, while bob
// still builds, and alice still pulls what is built.
func TestBuildRatePerUser(t *testing.T) {
	requireTools(t, "htpasswd", "nix-store")
	users := makeHtpasswd(t, "-B", "alice", "secret", "bob", "hunter2")
	s := startAuthServer(t, t.TempDir(), users, "builds", "NIXPORT_BUILD_RATE=1")
	base := "http://" + s.addr
	alice, bob := basicAuth("alice", "secret"), basicAuth("bob", "hunter2")
	hello, multi := base+"/v2/hello/manifests/latest", base+"/v2/multi/manifests/latest"

	ask(t, "GET", hello, alice).want(t, "alice's first image", 200, "")
	a := ask(t, "GET", multi, alice)
	a.want(t, "alice's second new image", 429, "TOOMANYREQUESTS", "NIXPORT_BUILD_RATE", `user "alice"`)
	// One build an hour: the next token comes in about an hour.
	if secs := a.retryAfter(t); secs < 3000 || secs > 3600 {
		t.Errorf("Retry-After %d s, want about an hour", secs)
	}
	s.awaitRefusal(t, "multi", "user:alice", "build_rate")

	ask(t, "GET", multi, bob).want(t, "bob's image", 200, "")
	ask(t, "GET", multi, alice).want(t, "alice's pull of what bob built", 200, "")
	ask(t, "GET", hello, alice).want(t, "alice's pull of what she built", 200, "")
	ask(t, "GET", hello, nil).want(t, "an anonymous pull of what alice built", 200, "")

	if got := s.refusals(t, "build_rate"); got != 1 {
		t.Errorf("nixport_refusals_total{limit=build_rate} = %v, want 1", got)
	}
	s.stop(t)
}

// TestBuildRateBehindProxy: anonymous clients (mode none) are known by
// their address; X-Forwarded-For names it only when the connection comes
// from a trusted proxy, so two clients behind one get a bucket each,
// while without trust the header is ignored and they share the proxy's.
func TestBuildRateBehindProxy(t *testing.T) {
	requireTools(t, "nix-store")
	const first, second = "198.51.100.1", "198.51.100.2"
	for _, tt := range []struct {
		name         string
		env          []string
		client       string // who the first client is to the server
		secondBuilds bool   // whether the second has a bucket of its own
	}{
		{"trusted proxy", []string{"NIXPORT_TRUSTED_PROXIES=127.0.0.1"}, "addr:" + first, true},
		{"no trusted proxy", nil, "addr:127.0.0.1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, append([]string{"STORAGE_PATH=" + t.TempDir(), "NIXPORT_BUILD_RATE=1"}, tt.env...)...)
			base := "http://" + s.addr

			ask(t, "GET", base+"/v2/hello/manifests/latest", forwardedFor(first)).want(t, "the first client's image", 200, "")
			if line := s.awaitLog(t, "build queued", "hello", nil); line["client"] != tt.client {
				t.Errorf("the build was queued for %v, want %s", line["client"], tt.client)
			}
			a := ask(t, "GET", base+"/v2/multi/manifests/latest", forwardedFor(second))
			if tt.secondBuilds {
				a.want(t, "the second client's image", 200, "")
				// The first client's own bucket is empty.
				a = ask(t, "GET", base+"/v2/deep/manifests/latest", forwardedFor(first))
				a.want(t, "the first client's second image", 429, "TOOMANYREQUESTS", "NIXPORT_BUILD_RATE", first)
				a.retryAfter(t)
				s.awaitRefusal(t, "deep", "addr:"+first, "build_rate")
			} else {
				a.want(t, "the second client's image", 429, "TOOMANYREQUESTS", "NIXPORT_BUILD_RATE", "127.0.0.1")
				a.retryAfter(t)
				s.awaitRefusal(t, "multi", tt.client, "build_rate")
			}
			if got := s.refusals(t, "build_rate"); got != 1 {
				t.Errorf("nixport_refusals_total{limit=build_rate} = %v, want 1", got)
			}
			s.stop(t)
		})
	}
}

// TestClientMaxBuilds: with NIXPORT_CLIENT_MAX_BUILDS=1, while alice's
// build runs (pause takes 4 s) her second new image is refused with 429
// naming the limit, bob's goes through meanwhile, and once hers has
// ended alice builds again.
func TestClientMaxBuilds(t *testing.T) {
	requireTools(t, "htpasswd", "nix-store")
	users := makeHtpasswd(t, "-B", "alice", "secret", "bob", "hunter2")
	s := startAuthServer(t, t.TempDir(), users, "builds",
		"NIXERY_PKGS_PATH="+testkit.FreshPackageSet(t), "NIXPORT_CLIENT_MAX_BUILDS=1")
	base := "http://" + s.addr
	alice, bob := basicAuth("alice", "secret"), basicAuth("bob", "hunter2")

	type result struct {
		a   answer
		err error
	}
	firstDone := make(chan result, 1)
	go func() {
		a, err := request("GET", base+"/v2/pause/manifests/latest", alice)
		firstDone <- result{a, err}
	}()
	s.awaitLog(t, "build started", "pause", nil)

	a := ask(t, "GET", base+"/v2/pause/hello/manifests/latest", alice)
	a.want(t, "alice's second image while her first builds", 429, "TOOMANYREQUESTS", "NIXPORT_CLIENT_MAX_BUILDS", `user "alice"`)
	a.retryAfter(t)
	s.awaitRefusal(t, "pause/hello", "user:alice", "client_builds")

	// bob is another client: his build is admitted while alice's runs.
	bobDone := make(chan result, 1)
	go func() {
		a, err := request("GET", base+"/v2/hello/manifests/latest", bob)
		bobDone <- result{a, err}
	}()
	pauseReady := false
	line := s.awaitLog(t, "build queued", "hello", func(line map[string]any) {
		if line["msg"] == "image ready" && line["image"] == "pause" {
			pauseReady = true
		}
	})
	if line["client"] != "user:bob" {
		t.Errorf("hello's build was queued for %v, want user:bob", line["client"])
	}
	if pauseReady {
		t.Fatal("alice's build ended before bob's was admitted: the test proves nothing (pause must build for longer)")
	}
	if r := <-bobDone; r.err != nil || r.a.status != 200 {
		t.Fatalf("bob's build: %v %d %s", r.err, r.a.status, r.a.message)
	}
	if r := <-firstDone; r.err != nil || r.a.status != 200 {
		t.Fatalf("alice's first build: %v %d %s", r.err, r.a.status, r.a.message)
	}
	// Hers has ended: she may build again.
	ask(t, "GET", base+"/v2/pause/hello/manifests/latest", alice).want(t, "alice's second image after her first", 200, "")

	if got := s.refusals(t, "client_builds"); got != 1 {
		t.Errorf("nixport_refusals_total{limit=client_builds} = %v, want 1", got)
	}
	s.stop(t)
}

// TestAuthStartupErrors: credentials over plain HTTP off loopback, and an
// htpasswd entry that is not bcrypt, stop the binary at start with one
// line saying what to do.
func TestAuthStartupErrors(t *testing.T) {
	requireTools(t, "htpasswd")
	bcryptFile := makeHtpasswd(t, "-B", "alice", "secret")
	md5File := makeHtpasswd(t, "-m", "alice", "secret")
	for _, tt := range []struct {
		name  string
		args  []string
		env   []string
		code  int
		words []string
	}{
		// A configuration error: exit 2, as every invalid setting. The
		// address is not this machine's (TEST-NET-1): were the setting
		// accepted, listening would fail, with exit 1.
		{"plain HTTP off loopback", []string{"-listen", "192.0.2.1", "-port", "0"},
			[]string{"NIXPORT_AUTH_HTPASSWD=" + bcryptFile, "NIXPORT_AUTH_REQUIRED=builds"},
			2, []string{"NIXPORT_AUTH_INSECURE", "NIXPORT_TLS_CERT"}},
		{"a mode without users", []string{"-listen", "127.0.0.1", "-port", "0"},
			[]string{"NIXPORT_AUTH_REQUIRED=all"},
			2, []string{"NIXPORT_AUTH_REQUIRED", "NIXPORT_AUTH_HTPASSWD"}},
		// The file is read at start: exit 1, as every start-up failure.
		{"an MD5 entry", []string{"-listen", "127.0.0.1", "-port", "0"},
			[]string{"STORAGE_PATH=" + t.TempDir(), "NIXPORT_AUTH_HTPASSWD=" + md5File},
			1, []string{"NIXPORT_AUTH_HTPASSWD", "line 1", `"alice"`, "htpasswd -B"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tt.code {
				t.Fatalf("exit %v, want %d\n%s", err, tt.code, stderr.String())
			}
			// The plain line, beside the JSON log line a start-up failure
			// also writes.
			var plain []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if !strings.HasPrefix(l, "{") {
					plain = append(plain, l)
				}
			}
			if len(plain) != 1 {
				t.Fatalf("want one plain line, got %q", stderr.String())
			}
			for _, w := range tt.words {
				if !strings.Contains(plain[0], w) {
					t.Errorf("%q does not say %q", plain[0], w)
				}
			}
		})
	}
}
