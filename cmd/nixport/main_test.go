package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nixport-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "nixport")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building nixport: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running nixport binary.
type server struct {
	cmd    *exec.Cmd
	addr   string
	scheme string // "http" or "https", as the server logs it
	logs   chan map[string]any
	done   chan error
}

// startServer runs the real binary on 127.0.0.1 and a free port, and
// returns once it logs that it listens.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	return startServerArgs(t, nil, env...)
}

// startServerArgs is startServer with extra command-line flags.
func startServerArgs(t *testing.T, args []string, env ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"-listen", "127.0.0.1", "-port", "0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, logs: make(chan map[string]any, 1024), done: make(chan error, 1)}
	listening := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Logf("non-JSON log line: %s", sc.Text())
				continue
			}
			if line["msg"] == "nixport listening" {
				listening <- line
			}
			select {
			case s.logs <- line:
			default:
			}
		}
	}()
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case line := <-listening:
		s.addr, _ = line["addr"].(string)
		s.scheme, _ = line["scheme"].(string)
	case err := <-s.done:
		t.Fatalf("nixport exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("nixport did not start within 30s")
	}
	return s
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("nixport exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("nixport did not stop within 40s of SIGTERM")
	}
}

func TestBinaryServesRegistryAPI(t *testing.T) {
	s := startServer(t, "STORAGE_PATH="+t.TempDir())
	base := "http://" + s.addr

	resp, err := http.Get(base + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %d %v", resp.StatusCode, resp.Header)
	}

	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/hello/blobs/sha256:" + strings.Repeat("0", 64), 404, "BLOB_UNKNOWN"},
		{"GET", "/v2/hello/blobs/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/Hello/manifests/latest", 400, "NAME_INVALID"},
		{"PUT", "/v2/hello/manifests/latest", 405, "UNSUPPORTED"},
		{"DELETE", "/v2/hello/blobs/sha256:" + strings.Repeat("0", 64), 405, "UNSUPPORTED"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Errors []struct{ Code, Message string }
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || err != nil || len(body.Errors) == 0 || body.Errors[0].Code != tt.code {
			t.Errorf("%s %s: status %d body %+v (%v), want %d %s", tt.method, tt.path, resp.StatusCode, body, err, tt.status, tt.code)
		}
	}

	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "nixport") {
		t.Errorf("docs site: %d", resp.StatusCode)
	}

	// Every request gets one JSON log line with its fields.
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case line := <-s.logs:
			if line["path"] == "/v2/" && line["method"] == "GET" && line["status"] != nil && line["duration_ms"] != nil {
				found = true
			}
		case <-deadline:
			t.Fatal("no request log line for GET /v2/")
		}
	}
	s.stop(t)
}

func TestBinaryRejectsBadConfig(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "NIXERY_STORAGE_BACKEND=s3")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "NIXERY_STORAGE_BACKEND") {
		t.Errorf("want one line naming the setting, got %q", out)
	}
}
