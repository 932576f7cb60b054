package prewarm

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestUsage: help, wrong flags and arguments, the server from the flag,
// the environment or the default, and FILE as a path.
func TestUsage(t *testing.T) {
	f := newFakeAPI(t, map[string]*script{"shell/hello:latest": {built: true}})
	dir := t.TempDir()
	images := filepath.Join(dir, "images.txt")
	if err := os.WriteFile(images, []byte("shell/hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("\nshell/Hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		stdin    string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  []string
	}{
		{"help", nil, "", []string{"-h"}, 0, nil, []string{
			"Usage: nixport prewarm [-server URL] [-timeout DURATION] FILE\n",
			`FILE ("-" for standard input)`,
			"  -server URL\n    \tthe nixport server's URL (env NIXPORT_SERVER, default http://127.0.0.1:8080)\n",
			"  -timeout duration\n",
		}},
		{"no file", nil, "", nil, 2, nil, []string{"nixport prewarm: want one FILE (- for standard input), after the flags; see nixport prewarm -h\n"}},
		{"flags after the file", nil, "", []string{images, "-timeout", "1m"}, 2, nil, []string{"want one FILE"}},
		{"unknown flag", nil, "", []string{"-sever", "x", "-"}, 2, nil, []string{"flag provided but not defined: -sever", "Usage: nixport prewarm"}},
		{"bad timeout", nil, "", []string{"-timeout", "soon", "-"}, 2, nil, []string{`invalid value "soon" for flag -timeout: want a duration such as "30m" or "90s", or seconds`}},
		{"bad server flag", nil, "", []string{"-server", "127.0.0.1:8080", "-"}, 2, nil, []string{`nixport prewarm: invalid -server="127.0.0.1:8080": want http://HOST[:PORT] or https://HOST[:PORT]`}},
		{"bad server variable", map[string]string{"NIXPORT_SERVER": "ftp://x"}, "", []string{"-"}, 2, nil, []string{`invalid NIXPORT_SERVER="ftp://x"`}},
		{"no such file", nil, "", []string{filepath.Join(dir, "nosuch")}, 2, nil, []string{"nixport prewarm: open " + dir + "/nosuch: no such file or directory"}},
		{"invalid line of a file", nil, "", []string{bad}, 2, nil, []string{"nixport prewarm: " + bad + `:2: invalid name "shell/Hello"`}},
		{"nothing to do", nil, "# later\n", []string{"-"}, 0, nil, []string{"nixport prewarm: stdin names no image: nothing to do\n"}},
		{"server from the environment", map[string]string{"NIXPORT_SERVER": f.srv.URL}, "", []string{images}, 0, []string{"prewarming 1 image on " + f.srv.URL + "\n", "shell/hello:latest  already built"}, nil},
		{"the flag wins", map[string]string{"NIXPORT_SERVER": "http://127.0.0.1:1"}, "shell/hello\n", []string{"-server", f.srv.URL + "/", "-timeout", "600", "-"}, 0, []string{"prewarming 1 image on " + f.srv.URL + "\n", "already built"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tt.stdin, false, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			inOrder(t, "standard output", stdout, tt.wantOut)
			inOrder(t, "standard error", stderr, tt.wantErr)
			if tt.wantErr == nil && stderr != "" {
				t.Errorf("standard error: %q, want nothing", stderr)
			}
			if t.Failed() {
				t.Logf("standard output:\n%s\nstandard error:\n%s", stdout, stderr)
			}
		})
	}
}

func TestDurationFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"90": 90 * time.Second, "0": 0, "30m": 30 * time.Minute, "1h30m": 90 * time.Minute, "250ms": 250 * time.Millisecond} {
		var d durationFlag
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"", "-1", "-5m", "soon", "1.5"} {
		var d durationFlag
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) = %v, want an error", in, time.Duration(d))
		}
	}
}

func TestTerminalSize(t *testing.T) {
	tests := []struct {
		env              map[string]string
		told             [2]int
		wantCols, wantRs int
	}{
		{nil, [2]int{0, 0}, 80, 24},
		{nil, [2]int{132, 50}, 132, 50},
		{map[string]string{"COLUMNS": "100", "LINES": "30"}, [2]int{132, 50}, 100, 30},
		{map[string]string{"COLUMNS": "x", "LINES": "-3"}, [2]int{132, 50}, 132, 50},
		{nil, [2]int{5, 1}, 20, 3},
	}
	for _, tt := range tests {
		c := &cli{getenv: func(k string) string { return tt.env[k] }, termSize: func() (int, int) { return tt.told[0], tt.told[1] }}
		if cols, rows := c.terminalSize(); cols != tt.wantCols || rows != tt.wantRs {
			t.Errorf("env %v, terminal %v: %dx%d, want %dx%d", tt.env, tt.told, cols, rows, tt.wantCols, tt.wantRs)
		}
	}
}

func TestServerURL(t *testing.T) {
	tests := []struct {
		env, flag, want string
	}{
		{"", "", "http://127.0.0.1:8080/"},
		{"https://reg.example", "", "https://reg.example/"},
		{"https://reg.example", "http://127.0.0.1:9000", "http://127.0.0.1:9000/"},
		{"", "https://proxy.example/nixport/", "https://proxy.example/nixport/"},
	}
	for _, tt := range tests {
		c := &cli{getenv: func(string) string { return tt.env }}
		u, err := c.serverURL(tt.flag)
		if err != nil || u.String() != tt.want {
			t.Errorf("NIXPORT_SERVER=%q -server=%q: %v, %v; want %s", tt.env, tt.flag, u, err, tt.want)
		}
	}
}
