package web

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// certCheckInterval is how often, at most, a handshake looks at the
// certificate files for a renewal.
const certCheckInterval = time.Second

// certReloader serves a certificate and key from PEM files and picks up
// renewed files (replaced in place, renamed over, or a symlink swapped, as
// certbot and cert-manager do) without a restart: a handshake that comes
// more than certCheckInterval after the last look stats both files and
// loads them again if either changed. A pair that does not load (a
// renewal half written, a key that does not match) is logged and the
// certificate in use kept, and tried again on the next look; connections
// already open are never touched. An expired certificate is refused the
// same way: at start-up, and as a renewal.
type certReloader struct {
	certFile, keyFile string
	log               logrus.FieldLogger
	interval          time.Duration // certCheckInterval; tests set 0

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds

	mu     sync.Mutex // one look at the files at a time
	loaded fileStamp  // of the pair in use
	failed fileStamp  // of the last pair that did not load: not tried again
}

// fileStamp tells two versions of the pair of files apart.
type fileStamp struct {
	cert, key fileID
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func newCertReloader(certFile, keyFile string, log logrus.FieldLogger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, interval: certCheckInterval}
	stamp, err := r.stamp()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	r.nextCheck.Store(time.Now().Add(r.interval).UnixNano())
	return r, nil
}

// GetCertificate is tls.Config's hook.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if now := time.Now(); now.UnixNano() >= r.nextCheck.Load() {
		r.check(now)
	}
	return r.cert.Load(), nil
}

// check loads the files again if they changed since the pair in use.
func (r *certReloader) check(now time.Time) {
	if !r.mu.TryLock() {
		return // another handshake is looking: serve what is in use
	}
	defer r.mu.Unlock()
	r.nextCheck.Store(now.Add(r.interval).UnixNano())
	stamp, err := r.stamp()
	if err != nil {
		r.log.WithError(err).Warn("TLS certificate files unreadable; keeping the certificate in use")
		return
	}
	if stamp == r.loaded || stamp == r.failed {
		return
	}
	if err := r.load(stamp); err != nil {
		r.failed = stamp
		r.log.WithError(err).Warn("renewed TLS certificate does not load; keeping the certificate in use")
	}
}

// load reads the pair and, if it is sound, puts it in use.
func (r *certReloader) load(stamp fileStamp) error {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("parsing TLS certificate %s: %w", r.certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return fmt.Errorf("TLS certificate %s (%s) expired at %s", r.certFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	pair.Leaf = leaf
	r.cert.Store(&pair)
	r.loaded = stamp
	r.log.WithFields(logrus.Fields{
		"cert":      r.certFile,
		"subject":   leaf.Subject.String(),
		"not_after": leaf.NotAfter.UTC().Format(time.RFC3339),
	}).Info("TLS certificate loaded")
	return nil
}

func (r *certReloader) stamp() (fileStamp, error) {
	c, err := statID(r.certFile)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := statID(r.keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{cert: c, key: k}, nil
}

// statID follows symlinks: a swapped link is a changed file.
func statID(name string) (fileID, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileID{}, fmt.Errorf("TLS file: %w", err)
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}
