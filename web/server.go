package web

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves the handler from New over HTTP/1.1, with a fast path in
// front of net/http.
//
// A warm manifest GET is a few microseconds of nixport's own work, and
// net/http's per-request machinery (header maps, a background reader
// goroutine per request, contexts, three deadline changes) costs several
// times that: measured, net/http alone caps such requests at about 0.8x
// what nginx serves from static files. Yet those requests are most of a
// registry's traffic, since every pull, and every CI job's re-pull of an
// image it already has, starts with one. So each connection is first read
// here: a request that is GET or HEAD of /v2/ or of a manifest already in
// memory, in the plainest form of HTTP/1.1 (no body, no escapes, no
// connection options), is answered directly, with the bytes, headers and
// log line net/http would give. The first request that is anything else
// hands the connection, with everything read so far, to net/http, which
// keeps it for the rest of its life. net/http thus parses every request
// the fast path does not fully understand, and the tests hold the two
// paths' answers equal byte for byte.
type Server struct {
	http *http.Server
	h    *handler // nil: no fast path, every connection goes to net/http

	handoff  *handoffListener
	shutting atomic.Bool
	served   atomic.Int64 // requests answered on the fast path

	mu    sync.Mutex
	ln    net.Listener
	conns map[*fastConn]struct{}
	wg    sync.WaitGroup // fast connections' goroutines
}

// NewServer returns a Server for srv: its Handler, timeouts and error log
// serve the connections net/http takes. The fast path is on when
// srv.Handler was made by New.
func NewServer(srv *http.Server) *Server {
	s := &Server{http: srv, conns: map[*fastConn]struct{}{}}
	if h, ok := srv.Handler.(*handler); ok {
		s.h = h
	}
	return s
}

// Serve accepts connections on ln until Shutdown or Close, and then
// returns http.ErrServerClosed, as http.Server.Serve does.
func (s *Server) Serve(ln net.Listener) error {
	if s.h == nil {
		return s.http.Serve(ln)
	}
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.handoff = newHandoffListener(ln.Addr())
	s.mu.Unlock()

	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Serve(s.handoff) }()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				<-httpDone // Shutdown or Close stops it
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				s.handoff.Close()
				s.http.Close()
				<-httpDone
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.h.log.WithError(err).Warnf("accepting a connection; retrying in %v", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		fc := &fastConn{s: s, c: c}
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[fc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go fc.serve()
	}
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked Read at once.
var aLongTimeAgo = time.Unix(1, 0)

// Shutdown stops accepting, lets every request in flight finish and closes
// idle connections, on both paths, until ctx ends; then it closes what is
// left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.h == nil {
		return s.http.Shutdown(ctx)
	}
	s.stopAccepting()
	poll := time.Millisecond
	for {
		s.mu.Lock()
		left := len(s.conns)
		for fc := range s.conns {
			if fc.idle.Load() {
				fc.c.SetReadDeadline(aLongTimeAgo)
			}
		}
		s.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.closeFast()
			s.http.Close()
			return ctx.Err()
		case <-time.After(poll):
			poll = min(2*poll, 100*time.Millisecond)
		}
	}
	s.wg.Wait()
	// The fast connections are done, so no more hand-offs can come.
	return s.http.Shutdown(ctx)
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	if s.h == nil {
		return s.http.Close()
	}
	s.stopAccepting()
	s.closeFast()
	s.wg.Wait()
	return s.http.Close()
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutting.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
}

func (s *Server) closeFast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fc := range s.conns {
		fc.c.Close()
	}
}

func (s *Server) forget(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// handoffListener is how net/http receives the connections the fast path
// gives up.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give passes c to net/http; false if net/http has stopped.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// handedOffConn is a connection given to net/http: reads first drain what
// the fast path had already read.
type handedOffConn struct {
	net.Conn
	r *bufio.Reader // nil once drained
}

func (c *handedOffConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile for blobs: net/http hands files to its
// connection's ReadFrom, which for TCP is sendfile(2).
func (c *handedOffConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite lets net/http half-close, as it does on a TCP connection
// before closing one it answered with an error.
func (c *handedOffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
