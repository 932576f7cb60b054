package web

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/nixport/nixport/manifest"
	"github.com/nixport/nixport/storage"
)

// The fast path of Server: reading a request head, deciding whether it is
// one the fast path answers, and answering it. Anything it does not fully
// understand goes to net/http untouched; see Server.

// headBufSize bounds a request head the fast path reads. A longer one goes
// to net/http, which takes up to its MaxHeaderBytes.
const headBufSize = 8 << 10

// maxFastHeaderValues bounds the Accept and If-None-Match lines a fast
// request may carry; a request with more goes to net/http. Docker's client
// sends one Accept line per manifest type it knows, six today.
const maxFastHeaderValues = 16

// WarmImages is implemented by Images that can answer ManifestByTag from
// memory alone (the builder does). The fast path needs it to answer a tag;
// without it, tags go through net/http.
type WarmImages interface {
	// WarmManifestByTag returns what ManifestByTag would, or false, without
	// waiting or doing I/O, if that is not already known.
	WarmManifestByTag(name, tag string, format manifest.Format) (storage.BlobInfo, bool)
}

// fastConn is one connection on the fast path.
type fastConn struct {
	s    *Server
	c    net.Conn
	idle atomic.Bool // waiting for a request: Shutdown may wake it
}

// errNotFast says the request at the front of the connection is one for
// net/http.
var errNotFast = errors.New("not a fast-path request")

func (fc *fastConn) serve() {
	s, c := fc.s, fc.c
	handedOff := false
	defer func() {
		if p := recover(); p != nil {
			s.h.log.WithError(fmt.Errorf("panic: %v\n%s", p, debug.Stack())).Error("fast path: connection closed")
		}
		if !handedOff {
			c.Close()
		}
		s.forget(fc)
	}()

	br := bufio.NewReaderSize(c, headBufSize)
	remote := c.RemoteAddr().String()
	var out []byte
	var req fastRequest
	// As in net/http, a new connection has the header timeout to send its
	// first request, and only later ones the idle timeout.
	wait := s.readHeaderTimeout()
	for {
		if br.Buffered() == 0 {
			// Idle first, then the check: Shutdown sets the flag before it
			// wakes idle connections, so one of the two catches this one.
			fc.idle.Store(true)
			if s.shutting.Load() {
				return
			}
			c.SetReadDeadline(deadline(wait))
			_, err := br.Peek(1)
			fc.idle.Store(false)
			if err != nil {
				return // closed, timed out or woken by Shutdown
			}
		}
		c.SetReadDeadline(deadline(s.readHeaderTimeout()))
		head, err := readHead(br)
		if errors.Is(err, errNotFast) {
			break
		}
		if err != nil {
			return // the client went away or stalled mid-head
		}
		if !parseHead(head, &req) {
			break
		}
		start := time.Now()
		a, ok := s.h.answerFast(&req)
		if !ok {
			break
		}
		// During Shutdown, say this is the last answer, as net/http does.
		closing := s.shutting.Load()
		var tail []byte
		var n int
		out, tail, n = appendResponse(out[:0], &a, req.head, closing, start)
		if d := s.http.WriteTimeout; d > 0 {
			c.SetWriteDeadline(start.Add(d))
		}
		// Logged before the response goes out, as the net/http path does.
		s.h.logFast(&req, &a, remote, int64(n), start)
		s.served.Add(1)
		var werr error
		if len(tail) > 0 {
			bufs := net.Buffers{out, tail}
			_, werr = bufs.WriteTo(c)
		} else {
			_, werr = c.Write(out)
		}
		br.Discard(len(head))
		if werr != nil || closing {
			return
		}
		wait = s.idleTimeout()
	}
	// net/http takes the connection, with the request not yet consumed;
	// during Shutdown too, which stops net/http only once every fast
	// connection is done.
	c.SetReadDeadline(time.Time{})
	handedOff = s.handoff.give(&handedOffConn{Conn: c, r: br})
}

// deadline is now+d, or no deadline for d <= 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// The timeouts net/http would apply to the same connection.
func (s *Server) idleTimeout() time.Duration {
	if s.http.IdleTimeout != 0 {
		return s.http.IdleTimeout
	}
	return s.http.ReadTimeout
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.http.ReadHeaderTimeout != 0 {
		return s.http.ReadHeaderTimeout
	}
	return s.http.ReadTimeout
}

// readHead returns the request head at the front of br, up to and
// including the empty line that ends it, without consuming it. A head that
// does not fit the buffer, or has a line not ended by CRLF, is errNotFast.
func readHead(br *bufio.Reader) ([]byte, error) {
	lineStart := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		for {
			i := bytes.IndexByte(buf[lineStart:], '\n')
			if i < 0 {
				break
			}
			end := lineStart + i + 1
			if end-lineStart < 2 || buf[end-2] != '\r' {
				return nil, errNotFast // a bare LF: net/http's tolerance, not ours
			}
			if end-lineStart == 2 {
				return buf[:end], nil
			}
			lineStart = end
		}
		if len(buf) >= br.Size() {
			return nil, errNotFast
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// fastRequest is a request head the fast path understood.
type fastRequest struct {
	head        bool // HEAD, else GET
	path        string
	accept      []string
	ifNoneMatch []string

	acceptBuf, inmBuf [maxFastHeaderValues]string
}

// parseHead parses head (as readHead returns it) into req, and reports
// whether the fast path may answer it: GET or HEAD, an origin-form target
// under /v2 of plain characters (no escapes, no query), HTTP/1.1, one
// well-formed Host, and no header that could mean a body or a connection
// option. Everything else is net/http's to parse, accept or reject, which
// is why this is strict rather than forgiving.
func parseHead(head []byte, req *fastRequest) bool {
	req.accept, req.ifNoneMatch = req.acceptBuf[:0], req.inmBuf[:0]
	line, rest, _ := bytes.Cut(head, crlf)
	method, line, ok1 := bytes.Cut(line, space)
	target, proto, ok2 := bytes.Cut(line, space)
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" {
		return false
	}
	switch string(method) {
	case "GET":
		req.head = false
	case "HEAD":
		req.head = true
	default:
		return false
	}
	if !plainTarget(target) {
		return false
	}
	hosts := 0
	for {
		line, rest, _ = bytes.Cut(rest, crlf)
		if len(line) == 0 {
			break // the empty line ending the head
		}
		name, value, ok := bytes.Cut(line, colon)
		if !ok || !isToken(name) {
			return false
		}
		value = bytes.Trim(value, " \t")
		if !plainValue(value) {
			return false
		}
		switch {
		case asciiEqualFold(name, "host"):
			hosts++
			if len(value) == 0 || !plainHost(value) {
				return false
			}
		case asciiEqualFold(name, "accept"):
			if len(req.accept) == maxFastHeaderValues {
				return false
			}
			req.accept = append(req.accept, string(value))
		case asciiEqualFold(name, "if-none-match"):
			if len(req.ifNoneMatch) == maxFastHeaderValues {
				return false
			}
			req.ifNoneMatch = append(req.ifNoneMatch, string(value))
		case asciiEqualFold(name, "connection"):
			if !asciiEqualFold(value, "keep-alive") {
				return false
			}
		case asciiEqualFold(name, "content-length"), asciiEqualFold(name, "transfer-encoding"),
			asciiEqualFold(name, "expect"), asciiEqualFold(name, "upgrade"), asciiEqualFold(name, "trailer"):
			return false
		}
	}
	if hosts != 1 {
		return false
	}
	req.path = string(target)
	return true
}

var (
	crlf  = []byte("\r\n")
	space = []byte(" ")
	colon = []byte(":")
)

// plainTarget reports whether target is /v2 or under /v2/, made of the
// characters names, tags and digests use: what net/http would take as the
// path exactly as written.
func plainTarget(t []byte) bool {
	if !(string(t) == "/v2" || bytes.HasPrefix(t, []byte("/v2/"))) {
		return false
	}
	for _, c := range t {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '/' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 9110 token, as a header name must be.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar [256]bool

func init() {
	for c := '0'; c <= '9'; c++ {
		tokenChar[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		tokenChar[c] = true
		tokenChar[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tokenChar[c] = true
	}
}

// plainValue reports whether a header value is printable ASCII, spaces and
// tabs only.
func plainValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// plainHost reports whether a Host value is a host name or address with an
// optional port, in characters net/http accepts.
func plainHost(v []byte) bool {
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// asciiEqualFold compares b to lower, an ASCII lower-case string, ignoring
// case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// fastAnswer is what the fast path answers a request with.
type fastAnswer struct {
	entry       *manifestEntry // nil: the base endpoint
	image, tag  string
	digest      digest.Digest
	immutable   bool // by digest: Cache-Control
	notModified bool
}

// answerFast decides the answer to req if it can be given from memory, the
// same answer serveRegistry would give; false sends req to net/http.
func (h *handler) answerFast(req *fastRequest) (fastAnswer, bool) {
	rt, err := parseRoute(req.path)
	if err != nil {
		return fastAnswer{}, false
	}
	switch rt.kind {
	case routeBase:
		return fastAnswer{}, true
	case routeManifest:
	default:
		return fastAnswer{}, false
	}
	var e *manifestEntry
	var ok bool
	if rt.digest != "" {
		e, ok = h.manifests.get(rt.digest)
	} else if warm, isWarm := h.images.(WarmImages); isWarm {
		var info storage.BlobInfo
		if info, ok = warm.WarmManifestByTag(rt.name, rt.tag, manifest.Negotiate(req.accept)); ok {
			e, ok = h.manifests.get(info.Digest)
		}
	}
	if !ok {
		return fastAnswer{}, false
	}
	return fastAnswer{
		entry:       e,
		image:       rt.name,
		tag:         rt.tag,
		digest:      e.digest,
		immutable:   rt.digest != "",
		notModified: len(req.ifNoneMatch) > 0 && etagMatches(req.ifNoneMatch, e.etag[0]),
	}, true
}

// appendResponse appends a's status line and headers to out, as net/http
// writes them (sorted by name, then Date, then Connection: close if
// closing). A small body is appended too,
// so the response goes in one write; a large one is returned as tail, to
// be written after out without a copy. n is the body's length.
func appendResponse(out []byte, a *fastAnswer, head, closing bool, now time.Time) (_ []byte, tail []byte, n int) {
	e := a.entry
	var body []byte
	switch {
	case e == nil:
		out = append(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n"...)
		body = baseBody
	case a.notModified:
		out = append(out, "HTTP/1.1 304 Not Modified\r\n"...)
	default:
		out = append(out, "HTTP/1.1 200 OK\r\n"...)
		body = e.body
	}
	if e != nil {
		if a.immutable {
			out = append(out, "Cache-Control: "...)
			out = append(out, immutable[0]...)
			out = append(out, "\r\n"...)
		}
		if !a.notModified {
			out = append(out, "Content-Length: "...)
			out = append(out, e.length[0]...)
			out = append(out, "\r\nContent-Type: "...)
			out = append(out, e.contentType[0]...)
			out = append(out, "\r\n"...)
		}
		out = append(out, "Docker-Content-Digest: "...)
		out = append(out, e.digestValue[0]...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Docker-Distribution-Api-Version: registry/2.0\r\n"...)
	if e != nil {
		out = append(out, "Etag: "...)
		out = append(out, e.etag[0]...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Date: "...)
	out = now.UTC().AppendFormat(out, http.TimeFormat)
	if closing {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	if head {
		body = nil
	}
	if len(body) <= 16<<10 {
		return append(out, body...), nil, len(body)
	}
	return out, body, len(body)
}

// logFast writes the request line of a request answered on the fast path:
// the line serveRegistry's would be.
func (h *handler) logFast(req *fastRequest, a *fastAnswer, remote string, bodyBytes int64, start time.Time) {
	if !h.logEnabled(logrus.InfoLevel) {
		return
	}
	status := http.StatusOK
	if a.notModified {
		status = http.StatusNotModified
	}
	method := http.MethodGet
	if req.head {
		method = http.MethodHead
	}
	line := requestLine{
		method: method,
		path:   req.path,
		remote: remote,
		image:  a.image,
		tag:    a.tag,
		digest: string(a.digest),
		status: status,
		bytes:  bodyBytes,
	}
	h.writeLine(logrus.InfoLevel, &line, start)
}
