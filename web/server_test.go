package web

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixport/nixport/manifest"
)

// servers is the fixture's handler behind a Server (fast path in front)
// and behind a plain http.Server, each on its own port of 127.0.0.1.
type servers struct {
	fast       *Server
	fastAddr   string
	plainAddr  string
	shutdowned bool
}

func newServers(t testing.TB, f *fixture) *servers {
	t.Helper()
	conf := func() *http.Server {
		return &http.Server{Handler: f.handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	}
	fastLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &servers{fast: NewServer(conf()), fastAddr: fastLn.Addr().String(), plainAddr: plainLn.Addr().String()}
	if s.fast.h == nil {
		t.Fatal("the fast path is off for a handler from New")
	}
	plain := conf()
	fastDone, plainDone := make(chan error, 1), make(chan error, 1)
	go func() { fastDone <- s.fast.Serve(fastLn) }()
	go func() { plainDone <- plain.Serve(plainLn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.fast.Shutdown(ctx); err != nil {
			t.Errorf("fast Shutdown: %v", err)
		}
		plain.Shutdown(ctx)
		if err := <-fastDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("fast Serve returned %v, want ErrServerClosed", err)
		}
		<-plainDone
	})
	return s
}

// exchange writes raw to a new connection to addr and reads one response
// for each of methods (the request methods, so HEAD answers are read
// without a body). It returns every byte the server sent.
func exchange(t *testing.T, addr, raw string, methods []string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &got))
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("reading the answer to %q: %v (read so far: %q)", raw, err, got.String())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return got.Bytes()
}

var dateLine = regexp.MustCompile(`\r\nDate: [^\r]*\r\n`)

// TestFastPathAnswersAsNetHTTP sends the same bytes to both servers and
// requires the same bytes back (Date aside) and the same log lines, while
// counting which requests the fast path answered itself.
func TestFastPathAnswersAsNetHTTP(t *testing.T) {
	f := newFixture(t)
	s := newServers(t, f)
	oci, docker := f.built.OCI.Digest.String(), f.built.Docker.Digest.String()
	layer := f.layerDigest.String()

	// Warm the caches as a first pull does (through net/http).
	for _, accept := range []string{v1Manifest, manifest.DockerManifest} {
		exchange(t, s.plainAddr, "GET /v2/hello/manifests/latest HTTP/1.1\r\nHost: x\r\nAccept: "+accept+"\r\n\r\n", []string{"GET"})
	}

	get := func(target string, headers ...string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: registry.test:5000\r\n" + strings.Join(headers, "") + "\r\n"
	}
	head := func(target string, headers ...string) string {
		return "HEAD " + target + " HTTP/1.1\r\nHost: registry.test\r\n" + strings.Join(headers, "") + "\r\n"
	}
	big := "X-Filler: " + strings.Repeat("f", headBufSize) + "\r\n"
	cases := []struct {
		name    string
		raw     string
		methods []string
		fast    int64 // requests the fast path must answer
	}{
		{"base", get("/v2/"), []string{"GET"}, 1},
		{"base without slash", get("/v2"), []string{"GET"}, 1},
		{"base HEAD", head("/v2/"), []string{"HEAD"}, 1},
		{"tag", get("/v2/hello/manifests/latest"), []string{"GET"}, 1},
		{"tag HEAD", head("/v2/hello/manifests/latest"), []string{"HEAD"}, 1},
		{"tag Docker", get("/v2/hello/manifests/latest", "Accept: "+manifest.DockerManifest+"\r\n"), []string{"GET"}, 1},
		{"tag Accept in two lines", get("/v2/hello/manifests/latest", "Accept: "+manifest.DockerManifest+"\r\n", "accept:\t"+v1Manifest+";q=0.5 \r\n"), []string{"GET"}, 1},
		{"tag as Docker's client asks, a line per type", get("/v2/hello/manifests/latest",
			"Accept: application/vnd.docker.distribution.manifest.v2+json\r\n",
			"Accept: application/vnd.docker.distribution.manifest.list.v2+json\r\n",
			"Accept: application/vnd.oci.image.index.v1+json\r\n",
			"Accept: application/vnd.oci.image.manifest.v1+json\r\n",
			"Accept: application/vnd.docker.distribution.manifest.v1+prettyjws\r\n",
			"Accept: application/json\r\n"), []string{"GET"}, 1},
		{"tag Docker with wildcard", get("/v2/hello/manifests/latest", "Accept: "+manifest.DockerManifest+", */*\r\n"), []string{"GET"}, 1},
		{"digest", get("/v2/hello/manifests/" + oci), []string{"GET"}, 1},
		{"digest under another name", get("/v2/shell/git/htop/manifests/" + docker), []string{"GET"}, 1},
		{"digest HEAD", head("/v2/hello/manifests/" + docker), []string{"HEAD"}, 1},
		{"If-None-Match hit", get("/v2/hello/manifests/latest", `If-None-Match: "`+oci+`"`+"\r\n"), []string{"GET"}, 1},
		{"If-None-Match weak, in a list", get("/v2/hello/manifests/"+oci, `If-None-Match: "x", W/"`+oci+`"`+"\r\n"), []string{"GET"}, 1},
		{"If-None-Match star", head("/v2/hello/manifests/latest", "If-None-Match: *\r\n"), []string{"HEAD"}, 1},
		{"If-None-Match miss", get("/v2/hello/manifests/latest", `If-None-Match: "sha256:0"`+"\r\n"), []string{"GET"}, 1},
		{"keep-alive said aloud", get("/v2/", "Connection: keep-alive\r\n"), []string{"GET"}, 1},
		{"lower-case names, odd spacing", "GET /v2/ HTTP/1.1\r\nhost:x\r\nuser-agent: \t t \r\n\r\n", []string{"GET"}, 1},
		{"pipelined", get("/v2/") + head("/v2/hello/manifests/latest") + get("/v2/hello/manifests/"+oci), []string{"GET", "HEAD", "GET"}, 3},
		{"fast then blob: handed over mid-stream", get("/v2/hello/manifests/latest") + get("/v2/hello/blobs/"+layer) + get("/v2/"), []string{"GET", "GET", "GET"}, 1},

		// Everything below is net/http's, from its first request on.
		{"cold tag", get("/v2/shell/git/htop/manifests/latest") + get("/v2/"), []string{"GET", "GET"}, 0},
		{"unknown tag", get("/v2/hello/manifests/nope"), []string{"GET"}, 0},
		{"unknown digest", get("/v2/hello/manifests/sha256:" + strings.Repeat("0", 64)), []string{"GET"}, 0},
		{"bad name", get("/v2/Hello/manifests/latest"), []string{"GET"}, 0},
		{"bad digest", get("/v2/hello/manifests/sha256:zz"), []string{"GET"}, 0},
		{"tags list", get("/v2/hello/tags/list"), []string{"GET"}, 0},
		{"blob", get("/v2/hello/blobs/" + layer), []string{"GET"}, 0},
		{"blob range", get("/v2/hello/blobs/"+layer, "Range: bytes=10-20\r\n"), []string{"GET"}, 0},
		{"docs", get("/"), []string{"GET"}, 0},
		{"POST", "POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", []string{"POST"}, 0},
		{"DELETE manifest", "DELETE /v2/hello/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n", []string{"DELETE"}, 0},
		{"HTTP/1.0", "GET /v2/ HTTP/1.0\r\n\r\n", []string{"GET"}, 0},
		{"Connection: close", get("/v2/", "Connection: close\r\n"), []string{"GET"}, 0},
		{"query", get("/v2/?x=1"), []string{"GET"}, 0},
		{"escaped path", get("/v2/hell%6f/manifests/latest"), []string{"GET"}, 0},
		{"missing Host", "GET /v2/ HTTP/1.1\r\n\r\n", []string{"GET"}, 0},
		{"two Hosts", get("/v2/", "Host: y\r\n"), []string{"GET"}, 0},
		{"bad Host", get("/v2/", "Host: a b\r\n"), []string{"GET"}, 0},
		{"Content-Length on a GET", get("/v2/", "Content-Length: 0\r\n"), []string{"GET"}, 0},
		{"chunked GET", get("/v2/", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n", []string{"GET"}, 0},
		{"Expect", get("/v2/", "Expect: 100-continue\r\n"), []string{"GET"}, 0},
		{"bare LF", "GET /v2/ HTTP/1.1\nHost: x\n\n", []string{"GET"}, 0},
		{"folded header", get("/v2/", "X-A: b\r\n c\r\n"), []string{"GET"}, 0},
		{"space before colon", get("/v2/", "Accept : */*\r\n"), []string{"GET"}, 0},
		{"control byte in a value", get("/v2/", "X-A: b\x01c\r\n"), []string{"GET"}, 0},
		{"head larger than the fast buffer", get("/v2/", big), []string{"GET"}, 0},
		{"absolute form", "GET http://x/v2/ HTTP/1.1\r\nHost: x\r\n\r\n", []string{"GET"}, 0},
		{"lower-case method", "get /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", []string{"GET"}, 0},
		{"too many Accept lines", get("/v2/", strings.Repeat("Accept: */*\r\n", maxFastHeaderValues+1)), []string{"GET"}, 0},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", []string{"GET"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			linesBefore := len(f.logs.lines(t))
			servedBefore := s.fast.served.Load()
			viaFast := exchange(t, s.fastAddr, tc.raw, tc.methods)
			fastLines := f.logs.lines(t)[linesBefore:]
			served := s.fast.served.Load() - servedBefore

			viaPlain := exchange(t, s.plainAddr, tc.raw, tc.methods)
			plainLines := f.logs.lines(t)[linesBefore+len(fastLines):]

			a, b := dateLine.ReplaceAll(viaFast, []byte("\r\nDate: *\r\n")), dateLine.ReplaceAll(viaPlain, []byte("\r\nDate: *\r\n"))
			if !bytes.Equal(a, b) {
				t.Errorf("answers differ:\nfast path: %q\nnet/http:  %q", a, b)
			}
			if served != tc.fast {
				t.Errorf("fast path answered %d requests, want %d", served, tc.fast)
			}
			if len(fastLines) != len(plainLines) {
				t.Fatalf("%d log lines through the fast path, %d through net/http", len(fastLines), len(plainLines))
			}
			for i := range fastLines {
				for _, l := range []map[string]any{fastLines[i], plainLines[i]} {
					delete(l, "time")
					delete(l, "duration_ms")
					delete(l, "remote")
				}
				if !equalJSON(fastLines[i], plainLines[i]) {
					t.Errorf("log lines differ:\nfast path: %v\nnet/http:  %v", fastLines[i], plainLines[i])
				}
			}
		})
	}
}

const v1Manifest = "application/vnd.oci.image.manifest.v1+json"

func equalJSON(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFastPathShutdown: Shutdown closes idle connections on both paths,
// lets a request in flight on a handed-over connection finish, and makes
// Serve return ErrServerClosed.
func TestFastPathShutdown(t *testing.T) {
	f := newFixture(t)
	srv := NewServer(&http.Server{Handler: f.handler, IdleTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	roundTrip := func(c net.Conn, br *bufio.Reader, raw string) int {
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// An idle fast connection and an idle handed-over one.
	fastC, fastR := dial()
	roundTrip(fastC, fastR, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
	slowC, slowR := dial()
	roundTrip(slowC, slowR, "GET /v2/hello/tags/list HTTP/1.1\r\nHost: x\r\n\r\n")
	// A request in flight on a handed-over connection: half a head sent.
	busyC, busyR := dial()
	io.WriteString(busyC, "GET /v2/hello/tags/list HTTP/1.1\r\nHost: x\r\n")
	time.Sleep(50 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- srv.Shutdown(ctx) }()

	time.Sleep(50 * time.Millisecond)
	if _, err := fastR.ReadByte(); err != io.EOF {
		t.Errorf("idle fast connection: read %v, want EOF", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("a new connection was accepted after Shutdown")
	}
	// The request in flight still gets its answer once its head is done.
	io.WriteString(busyC, "\r\n")
	resp, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatalf("request in flight at Shutdown: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("request in flight at Shutdown: %s", resp.Status)
	}
	if _, err := slowR.ReadByte(); err != io.EOF {
		t.Errorf("idle handed-over connection: read %v, want EOF", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
}

// TestServerWithoutFastPath: a handler not from New is served by net/http
// alone.
func TestServerWithoutFastPath(t *testing.T) {
	srv := NewServer(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain")
	})})
	if srv.h != nil {
		t.Fatal("fast path on for a foreign handler")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "plain" {
		t.Fatalf("body %q", body)
	}
	srv.Close()
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestFastPathConcurrentClients runs many keep-alive clients at once, each
// mixing fast answers with requests that hand their connection over, and
// checks every answer (under -race in scripts/test).
func TestFastPathConcurrentClients(t *testing.T) {
	f := newFixture(t)
	s := newServers(t, f)
	oci := f.built.OCI
	base := "http://" + s.fastAddr
	// Warm the tag through the fast server itself.
	if resp, err := http.Get(base + "/v2/hello/manifests/latest"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	servedBefore := s.fast.served.Load()

	const clients, rounds = 16, 50
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for r := range rounds {
				path, want := "/v2/hello/manifests/latest", oci.Bytes
				switch (i + r) % 4 {
				case 1:
					path = "/v2/hello/manifests/" + oci.Digest.String()
				case 2:
					path, want = "/v2/hello/blobs/"+f.layerDigest.String(), f.layer
				case 3:
					path, want = "/v2/", []byte("{}")
				}
				resp, err := client.Get(base + path)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
					t.Errorf("GET %s: %s, %d bytes, %v", path, resp.Status, len(body), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.fast.served.Load() == servedBefore {
		t.Error("no request was answered on the fast path")
	}
}

// BenchmarkServerManifestGet is a warm manifest GET by tag over loopback
// TCP, one keep-alive connection, through the fast path and through plain
// net/http with the same handler, logging to /dev/null; time and
// allocations include the client's side:
//
//	go test ./web -run '^$' -bench ServerManifestGet -benchmem
//
// bench/serve.sh compares the whole binary with nginx under load.
func BenchmarkServerManifestGet(b *testing.B) {
	f := newFixture(b)
	f.handler.(*handler).log = jsonLogger(openDevNull(b))
	s := newServers(b, f)
	req := "GET /v2/hello/manifests/latest HTTP/1.1\r\nHost: x\r\nAccept: " + v1Manifest + "\r\n\r\n"
	// Warm on a connection of its own: a cold request hands its
	// connection to net/http for good.
	if resp, err := http.Get("http://" + s.plainAddr + "/v2/hello/manifests/latest"); err != nil {
		b.Fatal(err)
	} else {
		resp.Body.Close()
	}
	for _, c := range []struct{ name, addr string }{{"fast", s.fastAddr}, {"net-http", s.plainAddr}} {
		b.Run(c.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			roundTrip := func() {
				if _, err := io.WriteString(conn, req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}

// TestFastPathTimeouts: the fast path cuts connections as net/http would,
// since it waits for requests itself: a new connection that sends nothing
// and a stalled request head after ReadHeaderTimeout, a quiet keep-alive
// connection after IdleTimeout.
func TestFastPathTimeouts(t *testing.T) {
	const header, idle = 200 * time.Millisecond, 600 * time.Millisecond
	f := newFixture(t)
	srv := NewServer(&http.Server{Handler: f.handler, ReadHeaderTimeout: header, IdleTimeout: idle})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	tests := []struct {
		name     string
		send     string // then silence
		answers  int    // responses to read first
		min, max time.Duration
	}{
		{"nothing sent", "", 0, header, 2 * header},
		{"head stalled", "GET /v2/ HTTP/1.1\r\nHost: x\r\n", 0, header, 2 * header},
		{"idle after an answer", "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 1, idle, 3 * idle},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.send)
			br := bufio.NewReader(c)
			for range tc.answers {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			start := time.Now()
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("read %v, want the server to close", err)
			}
			// Timers are not exact; the bounds only tell the two timeouts
			// apart.
			if d := time.Since(start); d < tc.min*8/10 || d > tc.max {
				t.Errorf("closed after %v, want between %v and %v", d, tc.min, tc.max)
			}
		})
	}
}

// TestFastAnswerDuringShutdown: an answer the fast path gives while
// shutting down says it is the connection's last, as net/http's do.
func TestFastAnswerDuringShutdown(t *testing.T) {
	now := time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)
	out, _, n := appendResponse(nil, &fastAnswer{}, false, true, now)
	want := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n" +
		"Docker-Distribution-Api-Version: registry/2.0\r\nDate: Tue, 24 Nov 2026 18:00:00 GMT\r\nConnection: close\r\n\r\n{}"
	if string(out) != want || n != 2 {
		t.Errorf("got %q (%d body bytes), want %q", out, n, want)
	}
}
