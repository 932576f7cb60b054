package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
	"github.com/nixport/nixport/testkit"
)

// startServer serves h on 127.0.0.1 through a Server made with opts, and
// stops it when the test ends.
func startServer(t *testing.T, h http.Handler, opts ServerOptions) (*Server, string) {
	t.Helper()
	opts.Handler = h
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// rawRequest writes req on a new connection and returns the connection
// and a reader of its answers.
func rawRequest(t *testing.T, addr, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// TestServerBoundsEveryPhase sends what a slow or hostile client would and
// checks the server answers or lets go within its bound. The bounds are
// short here; the test's own deadline (10 s on each connection) is what
// fails it if a bound is not applied.
func TestServerBoundsEveryPhase(t *testing.T) {
	f := newFixture(t)
	timeouts := Timeouts{Header: 300 * time.Millisecond, BodyIdle: 300 * time.Millisecond, Write: time.Second, Idle: time.Second}
	// net/http allows 4 KiB over MaxHeaderBytes.
	_, addr := startServer(t, f.handler, ServerOptions{Timeouts: timeouts, MaxHeaderBytes: 1024})
	big := "X-Big: " + strings.Repeat("a", 6<<10) + "\r\n"
	tests := []struct {
		name       string
		req        string
		wantStatus int // 0: the connection is closed without an answer
	}{
		{"plain", "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"6 KB header over MaxHeaderBytes", "GET /v2/ HTTP/1.1\r\nHost: x\r\n" + big + "\r\n", 431},
		{"head never finished", "GET /v2/ HTTP/1.1\r\nHost: x\r\n", 0},
		{"declared body never sent", "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 200},
		{"body stalls half way", "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := rawRequest(t, addr, tt.req)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(r, nil)
			if tt.wantStatus == 0 {
				if err == nil {
					t.Fatalf("answered %s, want the connection closed", resp.Status)
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server held the connection")
				}
				return
			}
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			// Whatever the answer, the connection is not held after it
			// beyond the idle bound.
			if _, err := io.Copy(io.Discard, r); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server held the connection after answering")
				}
			}
		})
	}
}

// TestServerLetsAStalledReaderGo requests a blob larger than every buffer
// on the way and never reads it: the write bound must end the request,
// while a reader that is slow but reading gets the whole blob.
func TestServerLetsAStalledReaderGo(t *testing.T) {
	f := newFixture(t)
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	info := put(t, f.store, "application/octet-stream", blob)
	done := make(chan logrus.Fields, 16)
	log := logrus.New()
	log.Out = io.Discard
	log.AddHook(requestHook(done))
	f.handler.(*handler).setLog(log)
	// Each write must finish within this; the blob takes several.
	const writeTimeout = 2 * time.Second
	_, addr := startServer(t, f.handler, ServerOptions{Timeouts: Timeouts{Write: writeTimeout}})
	path := "/v2/hello/blobs/" + info.Digest.String()

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	select {
	case line := <-done:
		if n := line["bytes"].(int64); n >= int64(len(blob)) {
			t.Errorf("the stalled reader was sent all %d bytes", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request to a reader that stopped never ended")
	}

	// A slow reader that keeps reading gets every byte: each write has its
	// own deadline, the whole answer none. It pauses after every chunk the
	// server writes under one deadline, so the answer takes longer than
	// one deadline in all; reading a chunk itself is quick, so a loaded
	// machine does not make it miss one.
	c2, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c2, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := io.Copy(io.Discard, &slowReader{r: resp.Body, pause: writeTimeout / 8})
	if err != nil || n != int64(len(blob)) {
		t.Errorf("slow reader got %d bytes, %v; want %d", n, err, len(blob))
	}
	if took := time.Since(start); took < writeTimeout {
		t.Errorf("the slow reader took %s, less than one write deadline: the test proves nothing", took)
	}
	<-done
}

// slowReader pauses after every streamChunk bytes it reads, so that a
// whole blob takes several write deadlines to arrive.
type slowReader struct {
	r     io.Reader
	pause time.Duration
	since int // bytes read since the last pause
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.since >= streamChunk {
		time.Sleep(s.pause)
		s.since = 0
	}
	n, err := s.r.Read(p[:min(len(p), streamChunk-s.since)])
	s.since += n
	return n, err
}

// warningHook sends the fields of every warning to ch.
type warningHook chan logrus.Fields

func (warningHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }
func (h warningHook) Fire(e *logrus.Entry) error {
	h <- e.Data
	return nil
}

// requestHook sends every request line's fields to ch.
type requestHook chan logrus.Fields

func (requestHook) Levels() []logrus.Level { return logrus.AllLevels }
func (h requestHook) Fire(e *logrus.Entry) error {
	if e.Message == "request" {
		h <- e.Data
	}
	return nil
}

func TestServerBoundsConnectionsPerClient(t *testing.T) {
	f := newFixture(t)
	_, addr := startServer(t, f.handler, ServerOptions{MaxConnsPerClient: 2})
	get := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := get(c); err != nil {
			t.Fatalf("connection within the bound: %v", err)
		}
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if err := get(extra); err == nil {
		t.Fatal("a third connection was served")
	}
	held[0].Close()
	// The slot comes back once the server sees the close; a new
	// connection is admitted then.
	for attempt := 0; ; attempt++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		err = get(c)
		c.Close()
		if err == nil {
			break
		}
		if attempt == 1000 {
			t.Fatal("the slot of a closed connection never came back")
		}
	}
}

// issueUntil writes a certificate for 127.0.0.1 with the given serial,
// valid until notAfter, and its key to certFile and keyFile, each
// replaced by a rename as certbot does.
func issueUntil(t *testing.T, ca *testkit.CA, serial int64, certFile, keyFile string, notAfter time.Time) {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, serial, notAfter)
	testkit.Replace(t, certFile, certPEM)
	testkit.Replace(t, keyFile, keyPEM)
}

// issue is issueUntil for a certificate valid for an hour.
func issue(t *testing.T, ca *testkit.CA, serial int64, certFile, keyFile string) {
	t.Helper()
	issueUntil(t, ca, serial, certFile, keyFile, time.Now().Add(time.Hour))
}

// servedSerial makes a new TLS connection and returns the serial of the
// certificate the server presents, and the HTTP version of a GET on it.
func servedSerial(t *testing.T, ca *testkit.CA, addr string, h2 bool) (int64, int, error) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/v2/hello/manifests/latest")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != 200 {
		return 0, 0, fmt.Errorf("status %s", resp.Status)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), resp.ProtoMajor, nil
}

// awaitSerial makes new connections until one is served the certificate
// with serial want, or 100 have not been: a handshake while another one is
// loading renewed files gets the certificate in use.
func awaitSerial(t *testing.T, ca *testkit.CA, addr string, want int64) (int64, error) {
	var got int64
	var err error
	for attempt := 0; attempt < 100 && got != want && err == nil; attempt++ {
		got, _, err = servedSerial(t, ca, addr, true)
	}
	return got, err
}

func TestServerTLS(t *testing.T) {
	f := newFixture(t)
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	issue(t, ca, 100, certFile, keyFile)
	warnings := make(chan logrus.Fields, 100)
	log := logrus.New()
	log.Out = io.Discard
	log.AddHook(warningHook(warnings))
	s, addr := startServer(t, f.handler, ServerOptions{TLSCert: certFile, TLSKey: keyFile, Log: log})
	if !s.TLS() {
		t.Fatal("TLS() = false")
	}
	s.certs.interval = 0 // look at the files on every handshake
	s.certs.nextCheck.Store(0)

	for _, tt := range []struct {
		h2    bool
		proto int
	}{{true, 2}, {false, 1}} {
		serial, proto, err := servedSerial(t, ca, addr, tt.h2)
		if err != nil || serial != 100 || proto != tt.proto {
			t.Errorf("h2 offered %v: serial %d, HTTP/%d, %v; want 100, HTTP/%d", tt.h2, serial, proto, err, tt.proto)
		}
	}

	// Plain HTTP to the TLS port is refused, not served.
	c, r := rawRequest(t, addr, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(r, nil); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP served on the TLS port")
	}

	// Renewals while pulls go on: no pull fails, and a new connection
	// after a renewal sees the new certificate.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := servedSerial(t, ca, addr, true); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for serial := int64(101); serial <= 105; serial++ {
		issue(t, ca, serial, certFile, keyFile)
		// A handshake while another one is loading the files gets the
		// certificate in use; the next ones get the new one.
		if got, err := awaitSerial(t, ca, addr, serial); err != nil || got != serial {
			t.Errorf("after renewal %d: serial %d, %v", serial, got, err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a pull failed during renewals: %v", err)
	}

	// A renewal that does not load keeps the certificate in use, and is
	// reported once, not at every handshake. (The renewals above may have
	// been caught half way, the certificate replaced and not yet the key.)
	for len(warnings) > 0 {
		<-warnings
	}
	testkit.Replace(t, keyFile, []byte("not a key"))
	for range 3 {
		if got, _, err := servedSerial(t, ca, addr, true); err != nil || got != 105 {
			t.Errorf("after a broken renewal: serial %d, %v; want 105 kept", got, err)
		}
	}
	if n := len(warnings); n != 1 {
		t.Errorf("%d warnings for one broken renewal, want 1", n)
	}
	<-warnings
	// So is an expired one.
	issueUntil(t, ca, 200, certFile, keyFile, time.Now().Add(-time.Minute))
	if got, _, err := servedSerial(t, ca, addr, true); err != nil || got != 105 {
		t.Errorf("after an expired renewal: serial %d, %v; want 105 kept", got, err)
	}
	if w := <-warnings; !strings.Contains(fmt.Sprint(w[logrus.ErrorKey]), "expired") {
		t.Errorf("warning %v does not say the certificate expired", w)
	}
	issue(t, ca, 106, certFile, keyFile)
	if got, err := awaitSerial(t, ca, addr, 106); err != nil || got != 106 {
		t.Errorf("after a repaired renewal: serial %d, %v; want 106", got, err)
	}
}

func TestNewServerRefusesBadTLS(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("junk"), 0o600)
	expiredCert, expiredKey := filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired-key.pem")
	issueUntil(t, testkit.NewCA(t), 1, expiredCert, expiredKey, time.Now().Add(-time.Hour))
	h := http.NotFoundHandler()
	for _, opts := range []ServerOptions{
		{Handler: h, TLSCert: bad},
		{Handler: h, TLSCert: bad, TLSKey: bad},
		{Handler: h, TLSCert: filepath.Join(dir, "missing"), TLSKey: bad},
		{Handler: h, TLSCert: expiredCert, TLSKey: expiredKey},
	} {
		if _, err := NewServer(opts); err == nil {
			t.Errorf("NewServer(%+v) accepted", opts)
		}
	}
}

// slowImages answers after a while, as a build does.
type slowImages struct {
	Images
	wait time.Duration
}

func (s slowImages) ManifestByTag(ctx context.Context, name, tag string, f manifest.Format) (storage.BlobInfo, time.Time, error) {
	<-time.After(s.wait)
	return s.Images.ManifestByTag(ctx, name, tag, f)
}

// TestHTTP2LongWait checks that a request whose answer takes longer than
// the write bound to start (a pull waiting on a build) is answered over
// HTTP/2: the bound is on writes, and nothing is written while waiting.
func TestHTTP2LongWait(t *testing.T) {
	f := newFixture(t)
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	issue(t, ca, 1, certFile, keyFile)
	const write = 200 * time.Millisecond
	f.handler.(*handler).images = slowImages{f.images, 3 * write} // the wait outlasts the bound
	_, addr := startServer(t, f.handler, ServerOptions{TLSCert: certFile, TLSKey: keyFile, Timeouts: Timeouts{Write: write}})
	if _, proto, err := servedSerial(t, ca, addr, true); err != nil || proto != 2 {
		t.Errorf("HTTP/%d, %v; want an HTTP/2 answer", proto, err)
	}
}

// TestServerShutdown checks that a request in flight is answered and the
// server then stops.
func TestServerShutdown(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	started := make(chan struct{})
	blocking := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		f.handler.ServeHTTP(w, r)
	})
	s, addr := startServer(t, blocking, ServerOptions{})
	answered := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("request in flight: %v", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
