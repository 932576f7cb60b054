package web

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Timeouts bound every phase of a connection, so that no client can hold
// one (and its file descriptor) by going quiet.
type Timeouts struct {
	// Header bounds reading a request's headers.
	Header time.Duration
	// BodyIdle ends a request whose body stalls: no byte for this long.
	BodyIdle time.Duration
	// Write bounds each write of an answer, not the whole answer: a blob
	// of any size streams to a slow but live client, and one that stops
	// reading is let go after this long.
	Write time.Duration
	// Idle bounds the wait for the next request on a kept-alive
	// connection.
	Idle time.Duration
}

// DefaultTimeouts are the bounds used where Timeouts leaves a zero.
var DefaultTimeouts = Timeouts{
	Header:   10 * time.Second,
	BodyIdle: 30 * time.Second,
	Write:    60 * time.Second,
	Idle:     2 * time.Minute,
}

func (t Timeouts) withDefaults() Timeouts {
	pick := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	return Timeouts{
		Header:   pick(t.Header, DefaultTimeouts.Header),
		BodyIdle: pick(t.BodyIdle, DefaultTimeouts.BodyIdle),
		Write:    pick(t.Write, DefaultTimeouts.Write),
		Idle:     pick(t.Idle, DefaultTimeouts.Idle),
	}
}

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Handler serves every request (New's handler).
	Handler http.Handler
	// Timeouts bound every phase of a connection; zero fields take
	// DefaultTimeouts' values. New's handler applies the body and write
	// bounds to the requests this server passes it.
	Timeouts Timeouts
	// MaxHeaderBytes bounds a request's head. Zero: DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxConnsPerClient bounds the connections one client address holds
	// at once; more are closed as they arrive. Zero: no bound.
	MaxConnsPerClient int
	// TLSCert and TLSKey name PEM files; with both, the server speaks
	// HTTPS (HTTP/2 and HTTP/1.1) and picks up renewed files by itself.
	TLSCert, TLSKey string
	// Log receives the server's own errors (TLS handshakes, refused
	// connections). Nil discards.
	Log logrus.FieldLogger
}

// DefaultMaxHeaderBytes leaves room for large bearer tokens while keeping
// a flood of headers from costing memory.
const DefaultMaxHeaderBytes = 64 << 10

// Server is nixport's one HTTP server: net/http serves every connection,
// with every phase bounded, and TLS with HTTP/2 when a certificate is
// configured.
type Server struct {
	http  *http.Server
	certs *certReloader // nil: plain HTTP
	max   int
	log   logrus.FieldLogger
}

// NewServer returns a Server; with TLS configured it loads the
// certificate now, so a bad one stops start-up.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("web: server without a handler")
	}
	logger := orDiscard(opts.Log)
	t := opts.Timeouts.withDefaults()
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	s := &Server{
		http: &http.Server{
			Handler:           opts.Handler,
			ReadHeaderTimeout: t.Header,
			// Each write extends the deadline (see responseWriter); this
			// is the deadline a request starts with, which also resets
			// what the previous request on the connection left.
			WriteTimeout:   t.Write,
			IdleTimeout:    t.Idle,
			MaxHeaderBytes: maxHeader,
			ErrorLog:       log.New(logWriter{logger}, "", 0),
			// The handler's bounds on bodies and writes come from here:
			// one value per connection, read by withBounds.
			ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
				return context.WithValue(ctx, timeoutsKey{}, &t)
			},
		},
		max: opts.MaxConnsPerClient,
		log: logger,
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	if opts.TLSCert != "" {
		certs, err := newCertReloader(opts.TLSCert, opts.TLSKey, logger)
		if err != nil {
			return nil, err
		}
		s.certs = certs
		s.http.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.GetCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	return s, nil
}

// TLS reports whether the server speaks HTTPS.
func (s *Server) TLS() bool { return s.certs != nil }

// Serve accepts connections on ln until Shutdown or Close, and then
// returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	if s.max > 0 {
		ln = newClientLimitListener(ln, s.max, s.log)
	}
	if s.certs != nil {
		return s.http.ServeTLS(ln, "", "")
	}
	return s.http.Serve(ln)
}

// Shutdown stops accepting, lets requests in flight finish and closes idle
// connections, until ctx ends.
// A handler made by New answers /readyz with 503 from the start of it.
func (s *Server) Shutdown(ctx context.Context) error {
	if d, ok := s.http.Handler.(interface{ drain() }); ok {
		d.drain()
	}
	return s.http.Shutdown(ctx)
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.http.Close() }

// logWriter puts net/http's own messages into the structured log. A failed
// TLS handshake is the client's (a scanner, a health check that only
// connects, plain HTTP to the TLS port): debug, not warning.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	entry := w.log.WithField("component", "http")
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		entry.Debug(msg)
	} else {
		entry.Warn(msg)
	}
	return len(p), nil
}
