package web

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// clientLimitListener bounds the connections one client address holds at
// once: a connection over the bound is closed as it arrives, so one client
// cannot take every file descriptor the server has. Refusals are logged at
// most once a minute per burst, so a flood cannot flood the log too.
type clientLimitListener struct {
	net.Listener
	max int
	log logrus.FieldLogger

	mu         sync.Mutex
	conns      map[string]int
	refused    int
	lastLogged time.Time
}

func newClientLimitListener(ln net.Listener, max int, log logrus.FieldLogger) *clientLimitListener {
	return &clientLimitListener{Listener: ln, max: max, log: log, conns: map[string]int{}}
}

func (l *clientLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr())
		if l.admit(host) {
			return &limitedConn{Conn: c, l: l, host: host}, nil
		}
		c.Close()
	}
}

func (l *clientLimitListener) admit(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[host] < l.max {
		l.conns[host]++
		return true
	}
	l.refused++
	if now := time.Now(); now.Sub(l.lastLogged) >= time.Minute {
		l.log.WithFields(logrus.Fields{"remote": host, "limit": l.max, "refused": l.refused}).
			Warn("connection refused: client holds the most connections allowed (NIXPORT_MAX_CONNS_PER_CLIENT)")
		l.lastLogged, l.refused = now, 0
	}
	return false
}

func (l *clientLimitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[host] <= 1 {
		delete(l.conns, host)
	} else {
		l.conns[host]--
	}
}

func clientHost(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn gives its client's slot back once, when closed.
type limitedConn struct {
	net.Conn
	l    *clientLimitListener
	host string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
	return err
}

// ReadFrom keeps sendfile: net/http hands files to its connection's
// ReadFrom, which for TCP is sendfile(2).
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite lets net/http half-close, as it does on a TCP connection
// before closing one it answered with an error.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
