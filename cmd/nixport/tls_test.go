package main

// End-to-end test of HTTPS: the real binary with -tls-cert/-tls-key, a
// throwaway CA, real clients that verify the certificate (curl over HTTP/2,
// crane, skopeo), and a certificate renewed while pulls run.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixport/nixport/testkit"
)

// servedSerial opens a new TLS connection to addr, verifying the server
// with pool, and returns the serial of the certificate it presents.
func servedSerial(addr string, pool *x509.CertPool) (int64, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: pool}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// awaitTLSLog reads the server's log until a line with msg whose subject
// names the certificate with serial (any subject if serial is 0), and
// returns it. The server looks at its certificate files only during a
// handshake, at most once a second: meanwhile this opens a new connection
// every tenth of a second, a bounded number before its deadline.
func (s *server) awaitTLSLog(t *testing.T, pool *x509.CertPool, msg string, serial int64) map[string]any {
	t.Helper()
	want := fmt.Sprintf("serial %d", serial)
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line := <-s.logs:
			if subject, _ := line["subject"].(string); line["msg"] == msg && (serial == 0 || strings.HasSuffix(subject, want)) {
				return line
			}
		case <-tick.C:
			servedSerial(s.addr, pool) // a handshake, so that the server looks
		case <-deadline:
			if serial == 0 {
				want = "any certificate"
			}
			t.Fatalf("no log line %q (%s) within 15s", msg, want)
		}
	}
}

// drainLogs drops the log lines read so far.
func (s *server) drainLogs() {
	for {
		select {
		case <-s.logs:
		default:
			return
		}
	}
}

// curlTLS runs curl verifying the server with the CA file and returns what
// -w prints; headers, if non-nil, receives the response's headers.
func curlTLS(t *testing.T, ca string, headers map[string]string, args ...string) string {
	t.Helper()
	hfile := filepath.Join(t.TempDir(), "headers")
	args = append([]string{"-sS", "--max-time", "300", "--cacert", ca, "-o", "/dev/null", "-D", hfile}, args...)
	out, err := exec.Command("curl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	if headers != nil {
		raw, err := os.ReadFile(hfile)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				headers[strings.ToLower(k)] = strings.TrimSpace(v)
			}
		}
	}
	return strings.TrimSpace(string(out))
}

// envWithout returns the environment without the named variables.
func envWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && k != n
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

func TestTLS(t *testing.T) {
	requireTools(t, "nix-store", "curl", "skopeo")
	crane := craneBinary(t)
	ca := testkit.NewCA(t)
	live := t.TempDir()
	certFile, keyFile := filepath.Join(live, "cert.pem"), filepath.Join(live, "key.pem")
	certPEM, keyPEM := ca.Issue(t, 1001, time.Now().Add(24*time.Hour))
	testkit.Replace(t, certFile, certPEM)
	testkit.Replace(t, keyFile, keyPEM)

	s := startServerArgs(t, []string{"-tls-cert", certFile, "-tls-key", keyFile}, "STORAGE_PATH="+t.TempDir())
	if s.scheme != "https" {
		t.Fatalf("nixport listening with scheme %q, want https", s.scheme)
	}
	s.awaitTLSLog(t, ca.Pool, "TLS certificate loaded", 1001)
	base := "https://" + s.addr
	ref := s.addr + "/shell/hello"
	craneEnv := append(envWithout("SSL_CERT_FILE", "SSL_CERT_DIR"), "SSL_CERT_FILE="+ca.File)
	runCrane := func(args ...string) (string, error) {
		cmd := exec.Command(crane, args...)
		cmd.Env = craneEnv
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("crane %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}

	// One HTTP/2 connection opened now, used again after the renewal: it
	// must survive it.
	var reused bool
	keptTransport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer keptTransport.CloseIdleConnections()
	kept := &http.Client{Timeout: time.Minute, Transport: keptTransport}
	keptGet := func(t *testing.T) *http.Response {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", base+"/v2/", nil)
		resp, err := kept.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := keptGet(t); resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1001 {
		t.Fatalf("GET /v2/ from Go: %d over %s, serial %d; want 200 over HTTP/2, serial 1001",
			resp.StatusCode, resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber)
	}

	var digest string // of shell/hello:latest's OCI manifest
	t.Run("curl", func(t *testing.T) {
		if v := curlTLS(t, ca.File, nil, "--http2", "-w", "%{http_version}", base+"/v2/"); v != "2" {
			t.Errorf("curl --http2 /v2/: HTTP version %q, want 2", v)
		}
		if v := curlTLS(t, ca.File, nil, "--http1.1", "-w", "%{http_version}", base+"/v2/"); v != "1.1" {
			t.Errorf("curl --http1.1 /v2/: HTTP version %q, want 1.1", v)
		}
		headers := map[string]string{}
		got := curlTLS(t, ca.File, headers, "--http2", "-H", "Accept: "+v1.MediaTypeImageManifest,
			"-w", "%{http_code} %{http_version}", base+"/v2/shell/hello/manifests/latest")
		digest = headers["docker-content-digest"]
		if got != "200 2" || !strings.HasPrefix(digest, "sha256:") || headers["content-type"] != v1.MediaTypeImageManifest {
			t.Fatalf("curl manifest by tag: %q (status, HTTP version), headers %v; want 200 over HTTP/2 with Docker-Content-Digest", got, headers)
		}
	})
	if digest == "" {
		t.Fatal("no manifest digest: cannot check the other clients")
	}

	t.Run("crane", func(t *testing.T) {
		got, err := runCrane("digest", ref)
		if err != nil || got != digest {
			t.Errorf("crane digest: %q %v, want %s", got, err, digest)
		}
		m, err := runCrane("manifest", ref)
		if err != nil || !strings.Contains(m, `"layers"`) {
			t.Errorf("crane manifest: %v\n%s", err, m)
		}
		// Without the CA, crane must refuse the server: the check above
		// verified the certificate.
		cmd := exec.Command(crane, "digest", ref)
		cmd.Env = envWithout("SSL_CERT_FILE", "SSL_CERT_DIR")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate signed by unknown authority") {
			t.Errorf("crane without the CA: %v\n%s\nwant an unknown authority error", err, out)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		layout := filepath.Join(t.TempDir(), "layout")
		if err := skopeoCopy(s.addr, "shell/hello:latest", layout, "--src-cert-dir", ca.Dir); err != nil {
			t.Fatal(err)
		}
		checkLayout(t, layout, digest)
	})

	t.Run("plain HTTP refused", func(t *testing.T) {
		resp, err := http.Get("http://" + s.addr + "/v2/")
		if err != nil {
			return // not served: fine
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || resp.Header.Get("Docker-Distribution-API-Version") != "" {
			t.Errorf("plain HTTP to the TLS port: %d %v %s", resp.StatusCode, resp.Header, body)
		}
	})

	t.Run("renewal that does not load", func(t *testing.T) {
		s.drainLogs()
		bad, _ := ca.Issue(t, 1002, time.Now().Add(24*time.Hour))
		testkit.Replace(t, certFile, bad) // without its key: the pair does not match
		s.awaitTLSLog(t, ca.Pool, "renewed TLS certificate does not load; keeping the certificate in use", 0)
		if serial, err := servedSerial(s.addr, ca.Pool); err != nil || serial != 1001 {
			t.Errorf("after a renewal that does not load, a new connection got serial %d (%v), want 1001", serial, err)
		}
	})

	t.Run("renewal during pulls", func(t *testing.T) {
		// Each pull is a skopeo copy (manifest and every blob) and a crane
		// manifest: new processes, so new connections and handshakes.
		// Pulls go on, one after another, until the test has seen what it
		// needs: however long the renewal takes to be noticed on a busy
		// machine, pulls after it come.
		base := t.TempDir()
		layoutOf := func(i int) string { return filepath.Join(base, fmt.Sprintf("layout%d", i)) }
		results := make(chan error, 256)
		stop := make(chan struct{})
		go func() {
			defer close(results)
			for i := 0; i < cap(results); i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := skopeoCopy(s.addr, "shell/hello:latest", layoutOf(i), "--src-cert-dir", ca.Dir)
				if err == nil {
					_, err = runCrane("manifest", ref)
				}
				results <- err
			}
		}()
		pulls := 0
		var pulled []string // layouts of the pulls that succeeded
		collect := func(err error) {
			if err != nil {
				t.Errorf("pull %d: %v", pulls+1, err)
			} else {
				pulled = append(pulled, layoutOf(pulls))
			}
			pulls++
		}
		defer func() {
			close(stop)
			for err := range results {
				collect(err)
			}
			for _, layout := range pulled {
				checkLayout(t, layout, digest)
			}
		}()

		if err, ok := <-results; !ok {
			t.Fatal("pull loop ended before its first pull")
		} else {
			collect(err)
		}
		// The second pull is under way: renew now, key then certificate,
		// each renamed over the old file.
		s.drainLogs()
		newCert, newKey := ca.Issue(t, 1003, time.Now().Add(24*time.Hour))
		testkit.Replace(t, keyFile, newKey)
		testkit.Replace(t, certFile, newCert)
		s.awaitTLSLog(t, ca.Pool, "TLS certificate loaded", 1003)
		before := pulls + len(results) // finished when the new certificate was seen
		if serial, err := servedSerial(s.addr, ca.Pool); err != nil || serial != 1003 {
			t.Errorf("after the renewal loaded, a new connection got serial %d (%v), want 1003", serial, err)
		}
		// The pull under way then, and two started after the new
		// certificate was in use.
		for pulls < before+3 {
			err, ok := <-results
			if !ok {
				t.Fatalf("pull loop ended after %d pulls: too few after the renewal", pulls)
			}
			collect(err)
		}
		t.Logf("%d pulls, %d of them finished before the new certificate was seen", pulls, before)

		// The connection opened before the renewal is still open and
		// serves, with the certificate it was opened with.
		resp := keptGet(t)
		if !reused || resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1001 {
			t.Errorf("connection opened before the renewal: reused %v, status %d, serial %d; want reused, 200, 1001",
				reused, resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber)
		}
	})

	s.stop(t)
}

// checkLayout checks that an OCI layout holds the image with manifest
// digest want, and every blob it names.
func checkLayout(t *testing.T, layout, want string) {
	t.Helper()
	var index v1.Index
	testkit.ReadJSON(t, filepath.Join(layout, "index.json"), &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest.String() != want {
		t.Fatalf("layout %s: index %+v, want one manifest %s", layout, index.Manifests, want)
	}
	m := readLayout(t, layout)
	if len(m.Layers) < 2 {
		t.Errorf("layout %s: %d layers", layout, len(m.Layers))
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if fi, err := os.Stat(blobPath(layout, d.Digest.String())); err != nil || fi.Size() != d.Size {
			t.Errorf("layout %s: blob %s: %v", layout, d.Digest, err)
		}
	}
}
