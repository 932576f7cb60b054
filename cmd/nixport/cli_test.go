package main

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryExplainsItself: -h says what nixport is and types each flag,
// -version prints the version, and a start-up failure that is not a
// configuration error is one plain line and exit status 1.
func TestBinaryExplainsItself(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, port, _ := net.SplitHostPort(busy.Addr().String())
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in the output
		lines    int      // output lines; 0: not checked
	}{
		{"help", []string{"-h"}, 0, []string{"container registry that builds images on demand", "-port int", "-tls-cert file", "-nix-timeout seconds", "-nix-store-max bytes", "(env PORT, default 8080)"}, 0},
		{"version", []string{"-version"}, 0, []string{"nixport ", "go1."}, 1},
		{"commands in the help", []string{"-h"}, 0, []string{"Usage:\n  nixport [flags]                serve the registry\n  nixport prewarm [flags] FILE   build the images"}, 0},
		{"prewarm help", []string{"prewarm", "-h"}, 0, []string{"Usage: nixport prewarm [-server URL] [-timeout DURATION] FILE", "-server URL", "(env NIXPORT_SERVER, default http://127.0.0.1:8080)"}, 0},
		{"prewarm without a file", []string{"prewarm"}, 2, []string{"nixport prewarm: want one FILE"}, 1},
		{"a command misspelt", []string{"prewram"}, 2, []string{`unexpected argument "prewram": nixport takes flags only, or a command first (prewarm, gc)`}, 1},
		{"gc help", []string{"gc", "-h"}, 0, []string{"Usage: nixport gc [-dry-run] [-v] [flags]", "-dry-run", "-gc-grace duration", "-storage-backend name"}, 0},
		{"gc with a bad setting", []string{"gc", "-gc-grace", "soon"}, 2, []string{`nixport gc: invalid -gc-grace="soon"`}, 1},
		{"bad flag value", []string{"-port", "x"}, 2, []string{`invalid -port="x"`}, 1},
		{"port in use", []string{"-listen", "127.0.0.1", "-port", port, "-storage-path", t.TempDir()}, 1, []string{"nixport: listening on 127.0.0.1:" + port, "address already in use"}, 0},
		{"storage that cannot be made", []string{"-listen", "127.0.0.1", "-port", "0", "-storage-path", "/proc/nixport-cannot-be-here"}, 1, []string{"nixport: opening filesystem storage at /proc/nixport-cannot-be-here"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, tt.args...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.lines > 0 {
				if n := strings.Count(strings.TrimRight(string(out), "\n"), "\n") + 1; n != tt.lines {
					t.Errorf("%d lines of output, want %d:\n%s", n, tt.lines, out)
				}
			}
			// The plain line is the last one, whatever the log said before.
			if tt.wantCode == 1 {
				lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
				if last := lines[len(lines)-1]; !strings.HasPrefix(last, "nixport: ") {
					t.Errorf("last line %q is not the plain reason", last)
				}
			}
		})
	}
}
