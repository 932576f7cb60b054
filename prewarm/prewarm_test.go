package prewarm

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixport/nixport/buildstatus"
	"github.com/nixport/nixport/errcode"
)

// testInterval is the poll interval of the tests: short, and long enough
// to tell polling from a busy loop.
const testInterval = 5 * time.Millisecond

// The scripts of the test images, after the offline package set's
// packages: hello builds, broken fails on purpose.
func helloScript() *script {
	return &script{states: []buildstatus.Status{
		{State: buildstatus.Queued},
		{State: buildstatus.Resolving},
		{State: buildstatus.Realising, PathsTotal: 3},
		{State: buildstatus.Realising, PathsDone: 3, PathsTotal: 3},
		{State: buildstatus.Archiving, PathsDone: 3, PathsTotal: 3, LayersDone: 1, LayersTotal: 2, BytesCompressed: 1234},
		{State: buildstatus.Done, PathsDone: 3, PathsTotal: 3, LayersDone: 2, LayersTotal: 2, BytesCompressed: 2_345_678},
	}}
}

const brokenMessage = "building the image failed: package broken (/nix/store/0c6x9qd4-broken.drv) failed with exit code 1; the build output ends:\n" +
	"  broken: failing on purpose\n" +
	"  builder for '/nix/store/0c6x9qd4-broken.drv' failed with exit code 1"

func brokenScript() *script {
	return &script{states: []buildstatus.Status{
		{State: buildstatus.Queued},
		{State: buildstatus.Resolving},
		{State: buildstatus.Realising, PathsTotal: 2},
		{State: buildstatus.Failed, PathsTotal: 2, Error: brokenMessage},
	}}
}

// clock is the time of the tests: it stands still.
var clock = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// runCLI runs the command as Main would, with short intervals, against
// server (none: no -server flag).
func runCLI(t *testing.T, server string, stdin string, tty bool, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{
		stdin:      strings.NewReader(stdin),
		stdout:     &out,
		stderr:     &errOut,
		getenv:     func(k string) string { return env[k] },
		tty:        tty,
		interval:   testInterval,
		retries:    2,
		retryDelay: time.Millisecond,
		now:        func() time.Time { return clock }, // every time shown is 0s
	}
	if server != "" {
		args = append([]string{"-server", server}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = c.run(ctx, args)
	return code, out.String(), errOut.String()
}

func TestPrewarm(t *testing.T) {
	tests := []struct {
		name     string
		scripts  map[string]*script
		down     bool         // the server is not there
		handler  http.Handler // the server instead of the fake API
		input    string
		args     []string // before FILE ("-")
		wantCode int
		wantOut  []string // in standard output, in this order
		// wantOutToo is a second sequence in standard output, in its own
		// order (the lines of another image followed at the same time).
		wantOutToo []string
		wantErr    []string // in standard error, in this order
		check      func(t *testing.T, f *fakeAPI)
	}{
		{
			name: "several images built",
			scripts: map[string]*script{
				"shell/hello:latest":      helloScript(),
				"shell/git/htop:latest":   helloScript(),
				"shell/hello:nixos-24.05": helloScript(),
			},
			input:    "# what the CI jobs pull\n\nshell/hello\n  shell/git/htop:latest   # with a comment\nshell/hello:nixos-24.05\nshell/hello:latest\n",
			wantCode: 0,
			wantOut: []string{
				"prewarming 3 images on http://127.0.0.1:",
				"shell/hello:latest (build b0", "  queued",
				"shell/hello:latest  resolving",
				"shell/hello:latest  realising", "paths 0/3",
				"shell/hello:latest  archiving", "paths 3/3  layers 1/2  1.2 kB",
				"shell/hello:latest  done in ", "layers 2/2  2.3 MB  sha256:",
				"3 images ready in ",
			},
			check: func(t *testing.T, f *fakeAPI) {
				if f.posts["shell/hello:latest"] != 1 {
					t.Errorf("shell/hello:latest was started %d times; listed twice, it is started once", f.posts["shell/hello:latest"])
				}
				// Polled, never busy: one GET per state after the first,
				// none after the last, at least an interval apart.
				for _, key := range []string{"shell/hello:latest", "shell/git/htop:latest", "shell/hello:nixos-24.05"} {
					for _, b := range f.buildsOf(key) {
						if want := len(helloScript().states) - 1; len(b.gets) != want {
							t.Errorf("%s: %d GETs of its build, want %d", key, len(b.gets), want)
						}
						for i := 1; i < len(b.gets); i++ {
							if gap := b.gets[i].Sub(b.gets[i-1]); gap < testInterval {
								t.Errorf("%s: GETs %s apart, less than the interval %s", key, gap, testInterval)
							}
						}
					}
				}
			},
		},
		{
			name: "one package fails",
			scripts: map[string]*script{
				"shell/hello:latest":  helloScript(),
				"shell/broken:latest": brokenScript(),
			},
			input:    "shell/hello\nshell/broken\n",
			wantCode: 1,
			wantOut: []string{
				"shell/broken:latest  realising",
				"shell/broken:latest  failed after ", "building the image failed: package broken", " …\n",
			},
			wantErr: []string{
				"nixport prewarm: 1 of 2 images not built:\n",
				"  shell/broken:latest (stdin:2, build b0", ", request req-",
				"    building the image failed: package broken (/nix/store/0c6x9qd4-broken.drv) failed with exit code 1; the build output ends:\n",
				"      broken: failing on purpose\n",
			},
			check: func(t *testing.T, f *fakeAPI) {
				if len(f.buildsOf("shell/hello:latest")) != 1 {
					t.Error("the image that builds was not built beside the failing one")
				}
			},
		},
		{
			name:     "invalid lines",
			scripts:  map[string]*script{"shell/hello:latest": helloScript()},
			input:    "shell/hello\nShell/Git\n# fine\nshell/git:-x\nshell/git shell/htop\n127.0.0.1:8080/shell/git\nshell/git@sha256:abc\nshell//git\nshell/git:\n",
			wantCode: 2,
			wantErr: []string{
				`nixport prewarm: stdin:2: invalid name "Shell/Git": repository name must be lower-case`,
				`stdin:4: invalid tag "-x"`,
				`stdin:5: "shell/git shell/htop": one image reference per line`,
				`stdin:6: "127.0.0.1:8080/shell/git": the registry's host is not part of the name`,
				`stdin:7: "shell/git@sha256:abc": a digest names an image already built`,
				`stdin:8: invalid name "shell//git"`,
				`stdin:9: invalid tag ""`,
			},
			check: func(t *testing.T, f *fakeAPI) {
				if n := f.requests(); n != 0 {
					t.Errorf("%d builds started despite invalid lines, want none", n)
				}
			},
		},
		{
			name:     "server unreachable",
			down:     true,
			input:    "shell/hello\n",
			wantCode: 1,
			wantOut:  []string{"shell/hello:latest  starting", "  — attempt 1 of 3 failed, retrying in 1ms: no answer from the server: dial tcp 127.0.0.1:", "connection refused\n", "  — attempt 2 of 3 failed, retrying in 2ms: "},
			wantErr: []string{
				"nixport prewarm: 1 of 1 image not built:\n  shell/hello:latest (stdin:1):\n",
				"    no answer from the server: dial tcp 127.0.0.1:", "connection refused (gave up after 3 attempts)\n",
			},
		},
		{
			name:     "an image built already",
			scripts:  map[string]*script{"shell/hello:latest": {built: true}},
			input:    "shell/hello:latest\n",
			wantCode: 0,
			wantOut:  []string{"shell/hello:latest  already built  sha256:", "1 image ready in 0s (1 built already)\n"},
			check: func(t *testing.T, f *fakeAPI) {
				if bs := f.buildsOf("shell/hello:latest"); len(bs) != 0 {
					t.Errorf("an image built already was polled")
				}
			},
		},
		{
			name: "the API refuses an image",
			scripts: map[string]*script{
				"shell/hello:latest":  helloScript(),
				"shell/nosuch:latest": {postError: &fakeError{http.StatusNotFound, errcode.NameUnknown, "no package named nosuch in the package set"}},
				"shell/broken:latest": {postError: &fakeError{http.StatusUnprocessableEntity, errcode.BuildFailed, "building the image failed (remembered for 60 s)"}},
			},
			input:    "shell/nosuch\nshell/hello\nshell/broken\n",
			wantCode: 1,
			wantOut:  []string{"shell/nosuch:latest  failed after 0s: NAME_UNKNOWN: no package named nosuch in the package set\n"},
			wantErr: []string{
				"nixport prewarm: 2 of 3 images not built:\n",
				"  shell/nosuch:latest (stdin:1):\n    NAME_UNKNOWN: no package named nosuch in the package set\n",
				"  shell/broken:latest (stdin:3):\n    BUILD_FAILED: building the image failed (remembered for 60 s)\n",
			},
		},
		{
			name: "transient errors are retried",
			scripts: map[string]*script{
				"shell/hello:latest": func() *script { s := helloScript(); s.gets503 = 2; return s }(),
				"shell/git:latest":   func() *script { s := helloScript(); s.posts500 = 1; return s }(),
			},
			input:    "shell/hello\nshell/git\n",
			wantCode: 0,
			// The two images are followed at once: each one's lines are in
			// order, but the two interleave as they happen to.
			wantOut: []string{
				"shell/hello:latest  queued  0s  — attempt 1 of 3 failed, retrying in 1ms: HTTP 503 Service Unavailable: GET /api/builds/b0001 answered without an error body\n",
				"  — attempt 2 of 3 failed, retrying in 2ms: ", "shell/hello:latest  resolving", "2 images ready",
			},
			wantOutToo: []string{
				"shell/git:latest  starting  0s  — attempt 1 of 3 failed, retrying in 1ms: UNKNOWN: internal server error (request req-error)\n",
				"2 images ready",
			},
		},
		{
			name: "a build the server forgot is started again",
			scripts: map[string]*script{
				"shell/hello:latest": func() *script { s := helloScript(); s.forget = true; return s }(),
			},
			input:    "shell/hello\n",
			wantCode: 0,
			wantOut:  []string{"shell/hello:latest  queued  0s  — the server no longer knows build b0001 (restarted?); starting the image again\n", "shell/hello:latest (build b0002)  queued", "shell/hello:latest  done in", "1 image ready"},
			check: func(t *testing.T, f *fakeAPI) {
				if f.posts["shell/hello:latest"] != 2 {
					t.Errorf("%d POSTs, want 2", f.posts["shell/hello:latest"])
				}
			},
		},
		{
			name: "timeout",
			scripts: map[string]*script{
				"shell/slow:latest": {states: append(repeat(buildstatus.Status{State: buildstatus.Realising, PathsTotal: 1}, 1000), buildstatus.Status{State: buildstatus.Done})},
			},
			input:    "shell/slow\n",
			args:     []string{"-timeout", "100ms"},
			wantCode: 1,
			wantErr:  []string{"  shell/slow:latest (stdin:1, build b0001, request req-1):\n    timed out after 100ms while realising; the build goes on on the server\n"},
		},
		{
			name:     "a server without the build API",
			handler:  http.NotFoundHandler(),
			input:    "shell/hello\n",
			wantCode: 1,
			wantErr:  []string{"    HTTP 404 Not Found: POST /api/builds answered without an error body (404 page not found); is it a nixport server with the build API?\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.scripts)
			server := f.srv.URL
			if tt.down {
				f.srv.Close()
			}
			if tt.handler != nil {
				other := httptest.NewServer(tt.handler)
				defer other.Close()
				server = other.URL
			}
			code, stdout, stderr := runCLI(t, server, tt.input, false, nil, append(tt.args, "-")...)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			inOrder(t, "standard output", stdout, tt.wantOut)
			inOrder(t, "standard output", stdout, tt.wantOutToo)
			inOrder(t, "standard error", stderr, tt.wantErr)
			if tt.wantErr == nil && stderr != "" {
				t.Errorf("standard error: %q, want nothing", stderr)
			}
			if strings.Contains(stdout, "\x1b") {
				t.Errorf("escape codes in output that is no terminal:\n%q", stdout)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("standard output:\n%s\nstandard error:\n%s", stdout, stderr)
			}
		})
	}
}

func repeat(st buildstatus.Status, n int) []buildstatus.Status {
	s := make([]buildstatus.Status, n)
	for i := range s {
		s[i] = st
	}
	return s
}

// inOrder checks that every string of want is in got, each after the
// one before.
func inOrder(t *testing.T, what, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			if strings.Contains(got, w) {
				t.Errorf("%s has %q, but not after what comes before it", what, w)
			} else {
				t.Errorf("%s lacks %q", what, w)
			}
			continue
		}
		rest = rest[i+len(w):]
	}
}

// TestLiveProgress: on a terminal, the lines of the images building are
// redrawn in place, cut to the terminal's width; an image's final line
// stays above them.
func TestLiveProgress(t *testing.T) {
	f := newFakeAPI(t, map[string]*script{
		"shell/hello:latest":  helloScript(),
		"shell/broken:latest": brokenScript(),
	})
	code, stdout, stderr := runCLI(t, f.srv.URL, "shell/hello\nshell/broken\n", true, map[string]string{"COLUMNS": "60"}, "-")
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if !strings.Contains(stderr, "shell/broken:latest (stdin:2") {
		t.Errorf("standard error lacks the failure:\n%s", stderr)
	}
	// Every frame goes back up over the lines drawn before it and erases
	// down from there.
	if !regexp.MustCompile(`\x1b\[2A\r\x1b\[J`).MatchString(stdout) {
		t.Errorf("no redraw of two lines in place:\n%q", stdout)
	}
	// What the terminal shows in the end: each image's final line once,
	// then the summary.
	screen := render(stdout)
	want := []string{
		"prewarming 2 images on " + f.srv.URL,
		truncate("shell/broken:latest  failed after 0s: building the image failed", 59),
		truncate("shell/hello:latest  done in 0s  paths 3/3  layers 2/2  2.3 MB  "+digestOf("shell/hello:latest"), 59),
	}
	if len(screen) != 3 || screen[0] != want[0] || !(screen[1] == want[1] && screen[2] == want[2] || screen[1] == want[2] && screen[2] == want[1]) {
		t.Errorf("the terminal shows\n%s\nwant\n%s", strings.Join(screen, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range strings.Split(stdout, "\n") {
		for _, part := range regexp.MustCompile(`\x1b\[\d*[AJ]|\r`).Split(l, -1) {
			if n := len([]rune(part)); n > 59 {
				t.Errorf("a line of %d columns on a terminal of 60: %q", n, part)
			}
		}
	}
}

// render plays output with the escape codes prewarm uses (cursor up n,
// carriage return, erase down) and returns the lines left on the screen.
func render(out string) []string {
	var screen []string
	row := 0
	codes := regexp.MustCompile(`\x1b\[(\d*)([AJ])|\r|\n`)
	for len(out) > 0 {
		loc := codes.FindStringSubmatchIndex(out)
		text := out
		if loc != nil {
			text = out[:loc[0]]
		}
		if text != "" {
			for len(screen) <= row {
				screen = append(screen, "")
			}
			screen[row] += text
		}
		if loc == nil {
			break
		}
		switch code := out[loc[0]:loc[1]]; {
		case code == "\n":
			row++
		case code == "\r":
		case strings.HasSuffix(code, "J"):
			screen = screen[:min(row, len(screen))]
		default:
			n, err := strconv.Atoi(out[loc[2]:loc[3]])
			if err != nil {
				n = 1
			}
			row -= n
		}
		out = out[loc[1]:]
	}
	return screen
}
