// Package auth checks registry credentials: HTTP Basic authentication
// against an htpasswd file of bcrypt entries, the format distribution
// and zot read and `htpasswd -B` writes, so that docker login and the
// credential helpers of docker, podman, skopeo and crane work as with any
// registry.
//
// It exists apart from web because the rules are security rules with
// tests of their own: the header parser is fuzzed, a wrong password costs
// what a right one costs (one bcrypt comparison, even for an unknown
// user), user names are compared in constant time, and the file is read
// again when it changes, so users are added or removed without a restart.
package auth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
)

// Mode says which requests need credentials (NIXPORT_AUTH_REQUIRED).
type Mode string

const (
	// None: nobody needs credentials (open, as Nixery is).
	None Mode = "none"
	// Builds: anyone may pull what is built; starting a build needs
	// credentials.
	Builds Mode = "builds"
	// All: every registry and build API request needs credentials.
	All Mode = "all"
)

// ParseMode parses a NIXPORT_AUTH_REQUIRED value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case None, Builds, All:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (none, builds or all)", s)
}

// maxHeader bounds the Authorization value parsed: a user name and a
// password of sane length, base64 encoded.
const maxHeader = 4096

// ParseBasic parses an Authorization header value of the Basic scheme
// (RFC 7617): the scheme, case-insensitive, then the base64 of
// "user:password". ok is false for any other scheme or a malformed value.
// A user name cannot hold a colon; the password may.
func ParseBasic(header string) (user, password string, ok bool) {
	if len(header) > maxHeader {
		return "", "", false
	}
	scheme, rest, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	rest = strings.TrimLeft(rest, " ")
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", "", false
	}
	user, password, found = strings.Cut(string(raw), ":")
	if !found || strings.ContainsAny(user, "\x00\r\n") || strings.ContainsAny(password, "\x00\r\n") {
		return "", "", false
	}
	return user, password, true
}

// entry is one line of the file: a user and the bcrypt hash of its
// password.
type entry struct {
	user string
	hash []byte
}

// parseHtpasswd reads an htpasswd file: "user:hash" lines, blank lines
// and # comments ignored. Only bcrypt hashes ($2y$, $2a$, $2b$) are
// accepted: the others htpasswd can write (MD5-crypt, SHA-1, crypt, plain)
// are weak, and a file holding one is refused as a whole, naming the line,
// rather than locking that user out silently.
func parseHtpasswd(data []byte) ([]entry, error) {
	var out []entry
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: not user:hash", n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d (user %q): not a bcrypt hash (make entries with htpasswd -B)", n, user)
		}
		if seen[user] {
			return nil, fmt.Errorf("line %d: user %q appears twice", n, user)
		}
		seen[user] = true
		out = append(out, entry{user: user, hash: []byte(hash)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// compareHash is bcrypt's comparison; a variable so that tests can count
// the comparisons made.
var compareHash = bcrypt.CompareHashAndPassword

// ErrBadCredentials is what Verify returns for a wrong user or password.
var ErrBadCredentials = errors.New("wrong user name or password")

// recheckEvery bounds how often the file is looked at for changes.
const recheckEvery = time.Second

// verifiedTTL is how long a verified user and password are known good
// without bcrypt: a docker pull sends them with every request, and bcrypt
// costs tens of milliseconds by design.
const verifiedTTL = 5 * time.Minute

// Htpasswd verifies credentials against an htpasswd file, reading it again
// when it changes. Safe for concurrent use.
type Htpasswd struct {
	path string
	log  logrus.FieldLogger
	// dummy is compared against when a user is unknown, so an unknown
	// user costs what a known one does.
	dummy []byte

	mu      sync.Mutex
	entries []entry
	stamp   fileStamp
	checked time.Time

	// verified remembers good credentials by an HMAC of them under a key
	// made at start, never the password itself; emptied when the file
	// changes.
	verified *lru.Cache[[sha256.Size]byte, time.Time]
	macKey   []byte
	// secret signs tokens (token.go); guarded by mu.
	secret []byte
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	size    int64
	modTime time.Time
	ino     uint64
}

// OpenHtpasswd reads the file at path; it must exist and hold valid
// bcrypt entries.
func OpenHtpasswd(path string, log logrus.FieldLogger) (*Htpasswd, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("nixport dummy password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	verified, err := lru.New[[sha256.Size]byte, time.Time](1024)
	if err != nil {
		return nil, err
	}
	h := &Htpasswd{path: path, log: log, dummy: dummy, verified: verified, macKey: make([]byte, 32)}
	rand.Read(h.macKey)
	h.secret = make([]byte, TokenSecretSize)
	rand.Read(h.secret)
	if err := h.reload(time.Now()); err != nil {
		return nil, err
	}
	return h, nil
}

// reload reads the file again if it changed. Called with mu held, or
// before h is shared.
func (h *Htpasswd) reload(now time.Time) error {
	h.checked = now
	st, err := stampOf(h.path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", h.path, err)
	}
	if h.entries != nil && st == h.stamp {
		return nil
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", h.path, err)
	}
	entries, err := parseHtpasswd(data)
	if err != nil {
		return fmt.Errorf("%s: %w", h.path, err)
	}
	if h.entries != nil {
		h.log.WithFields(logrus.Fields{"file": h.path, "users": len(entries)}).Info("htpasswd file changed: read again")
	}
	h.entries, h.stamp = entries, st
	h.verified.Purge()
	return nil
}

// current returns the entries, reading the file again if it changed. A
// file that became unreadable or invalid keeps the last good entries, and
// says so in the log.
func (h *Htpasswd) current(now time.Time) []entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.checked) >= recheckEvery {
		if err := h.reload(now); err != nil {
			h.log.WithError(err).Error("htpasswd file: keeping the users last read")
		}
	}
	return h.entries
}

// Verify checks user and password. A wrong password and an unknown user
// cost the same: one bcrypt comparison, after a constant-time search of
// the user names.
func (h *Htpasswd) Verify(user, password string) error {
	now := time.Now()
	entries := h.current(now)
	mac := h.mac(user, password)
	if at, ok := h.verified.Get(mac); ok && now.Sub(at) < verifiedTTL {
		return nil
	}
	hash, found := lookup(entries, user)
	if !found {
		hash = h.dummy
	}
	err := compareHash(hash, []byte(password))
	if err != nil || !found {
		return ErrBadCredentials
	}
	h.verified.Add(mac, now)
	return nil
}

func (h *Htpasswd) mac(user, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, h.macKey)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}
