// Package faultproxy is an HTTP proxy for the tests of storage backends
// that talk to a server (the GCS emulator, an S3 gateway): it passes
// requests on, and breaks a deterministic selection of them the ways a
// network and an overloaded service do (503, 429, a connection cut before
// or after the server acted, a truncated answer). A backend that retries
// and tells a lost answer from a refused write passes the storage suite
// through it; the tests of every such backend share this one proxy.
package faultproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults say which requests a Proxy breaks, by their sequence number n
// (1, 2, 3, ... in the order the proxy receives them): every n divisible by
// a non-zero field breaks that way. The first matching field wins, in the
// order listed. The pattern is deterministic in n; which operation gets
// which n depends on how concurrent requests interleave.
type Faults struct {
	// Unavailable answers 503 without passing the request on.
	Unavailable int
	// TooManyRequests answers 429 without passing the request on.
	TooManyRequests int
	// NotImplemented answers 501 without passing the request on, as a
	// server does that lacks a feature the request uses.
	NotImplemented int
	// CutBefore closes the connection without passing the request on.
	CutBefore int
	// CutAfter passes the request on, so the server acts on it, and then
	// closes the connection instead of answering: the response is lost.
	CutAfter int
	// Truncate passes the request on and answers with the response's
	// headers but only half of its body, then closes the connection. Only
	// answers of more than 1 KiB can be cut so, and they are counted on
	// their own: every Truncate-th of them (among the requests faults
	// apply to, and not broken otherwise) is truncated, however rare
	// they are among all requests.
	Truncate int

	// Match, if set, limits faults to the requests it accepts; n then
	// counts only those.
	Match func(RequestRecord) bool
	// Limit, if positive, bounds the number of faults injected in all.
	Limit int64
}

// Stats count what a Proxy did.
type Stats struct {
	Requests, Unavailable, TooManyRequests, NotImplemented, CutBefore, CutAfter, Truncated int64
}

// RequestRecord describes one request a Proxy received.
type RequestRecord struct {
	Method   string
	Path     string      // URL path
	Query    string      // raw query
	Header   http.Header // request headers
	BodySize int         // bytes of request body
}

// Options say what a Proxy stands in front of.
type Options struct {
	// Target is the server's base URL, "http://127.0.0.1:port".
	Target string
	// Signed says that the server checks signatures over the requests'
	// headers (S3's SigV4): requests pass on with their headers exactly as
	// sent, Host included. Otherwise they carry the target's host, and no
	// Accept-Encoding (bodies pass through as they are).
	Signed bool
	// ErrorBody returns the Content-Type and body of an injected error
	// status, in the dialect of the server behind (so that its client
	// parses it as that server's own); nil: plain text.
	ErrorBody func(status int) (contentType string, body []byte)
}

// Proxy is an HTTP proxy on 127.0.0.1 in front of a server that can break
// requests (see Faults). It rewrites the server's address to its own in
// Location headers, so that sessions the server hands out (GCS resumable
// uploads) also go through it.
type Proxy struct {
	// Host is the proxy's "127.0.0.1:port" and URL "http://" + Host.
	Host string
	URL  string

	opts      Options
	faults    Faults
	server    *httptest.Server
	transport *http.Transport
	requests  atomic.Int64 // every request
	n         atomic.Int64 // requests that faults may apply to
	large     atomic.Int64 // of those, answers that Truncate may cut
	stats     struct{ unavailable, tooMany, notImplemented, cutBefore, cutAfter, truncated atomic.Int64 }

	mu      sync.Mutex
	records []RequestRecord
}

// Start starts a proxy in front of opts.Target, stopped when the test
// ends.
func Start(t testing.TB, opts Options, faults Faults) *Proxy {
	t.Helper()
	p := &Proxy{
		opts:   opts,
		faults: faults,
		// Its own connections to the server, so that cutting one client
		// connection never disturbs another request.
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
		},
	}
	p.server = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.server.URL
	p.Host = strings.TrimPrefix(p.URL, "http://")
	t.Cleanup(func() {
		p.server.Close()
		p.transport.CloseIdleConnections()
	})
	return p
}

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests:        p.requests.Load(),
		Unavailable:     p.stats.unavailable.Load(),
		TooManyRequests: p.stats.tooMany.Load(),
		NotImplemented:  p.stats.notImplemented.Load(),
		CutBefore:       p.stats.cutBefore.Load(),
		CutAfter:        p.stats.cutAfter.Load(),
		Truncated:       p.stats.truncated.Load(),
	}
}

// Records returns every request received so far.
func (p *Proxy) Records() []RequestRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RequestRecord(nil), p.records...)
}

func every(k int, n int64) bool { return k > 0 && n > 0 && n%int64(k) == 0 }

func (p *Proxy) faultCount() int64 {
	return p.stats.unavailable.Load() + p.stats.tooMany.Load() + p.stats.notImplemented.Load() + p.stats.cutBefore.Load() + p.stats.cutAfter.Load() + p.stats.truncated.Load()
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	// Read the whole request first: a fault never leaves the client
	// blocked on a body nobody reads.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		cut(w)
		return
	}
	rec := RequestRecord{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), BodySize: len(body)}
	p.mu.Lock()
	p.records = append(p.records, rec)
	p.mu.Unlock()

	// n numbers the requests faults may apply to; 0 spares this one.
	var n int64
	if p.faults.Match == nil || p.faults.Match(rec) {
		n = p.n.Add(1)
	}
	if n > 0 && p.faults.Limit > 0 && p.faultCount() >= p.faults.Limit {
		n = 0
	}

	switch {
	case every(p.faults.Unavailable, n):
		p.stats.unavailable.Add(1)
		p.injectStatus(w, http.StatusServiceUnavailable)
		return
	case every(p.faults.TooManyRequests, n):
		p.stats.tooMany.Add(1)
		p.injectStatus(w, http.StatusTooManyRequests)
		return
	case every(p.faults.NotImplemented, n):
		p.stats.notImplemented.Add(1)
		p.injectStatus(w, http.StatusNotImplemented)
		return
	case every(p.faults.CutBefore, n):
		p.stats.cutBefore.Add(1)
		cut(w)
		return
	}

	resp, respBody, err := p.forward(r, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	switch {
	case every(p.faults.CutAfter, n):
		p.stats.cutAfter.Add(1)
		cut(w)
		return
	case n > 0 && p.faults.Truncate > 0 && len(respBody) > 1024 && every(p.faults.Truncate, p.large.Add(1)):
		p.stats.truncated.Add(1)
		copyHeader(w.Header(), resp.Header, p)
		w.Header().Set("Content-Length", strconv.Itoa(len(respBody)))
		w.WriteHeader(resp.StatusCode)
		w.Write(respBody[:len(respBody)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		cut(w)
		return
	}
	copyHeader(w.Header(), resp.Header, p)
	if r.Method == http.MethodHead {
		if cl := resp.Header.Get("Content-Length"); cl != "" {
			w.Header().Set("Content-Length", cl)
		}
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(respBody)))
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(respBody)
}

// forward sends the request to the server and reads the whole response.
func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, r.Method, p.opts.Target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	out.Header = r.Header.Clone()
	if p.opts.Signed {
		out.Host = r.Host
	} else {
		out.Header.Del("Accept-Encoding") // pass bodies through as they are
	}
	out.ContentLength = int64(len(body))
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, respBody, nil
}

// copyHeader copies a response's headers, pointing the server's URLs
// (upload sessions) at the proxy.
func copyHeader(dst, src http.Header, p *Proxy) {
	for k, vs := range src {
		if k == "Content-Length" {
			continue // set by the caller: the body was read whole
		}
		for _, v := range vs {
			if k == "Location" {
				v = strings.Replace(v, p.opts.Target, p.URL, 1)
			}
			dst.Add(k, v)
		}
	}
}

// injectStatus answers with an error status and the server's kind of
// error body.
func (p *Proxy) injectStatus(w http.ResponseWriter, status int) {
	contentType, body := "text/plain; charset=utf-8", []byte("injected by the test proxy\n")
	if p.opts.ErrorBody != nil {
		contentType, body = p.opts.ErrorBody(status)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(body)
}

// cut closes the client's connection without a (further) response.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // net/http then closes the connection
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0) // a reset, as a dying peer or middlebox sends
	}
	conn.Close()
}
